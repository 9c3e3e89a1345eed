//! DescribeInstanceHealth's states: what the API reports for one instance, with ELB's exact strings.
//!
//! The rule is ELB-SPEC §2.2: every state is a (State, ReasonCode, Description) triple and the strings are ELB's own,
//! byte for byte, because tools (CLI waiters, dashboards) match on them. Trade-off: the states are constants of one
//! plain struct of `&'static str`s rather than an enum, so the API serialises them as they are and a state that
//! health checks never produce (ZONE_NOT_ENABLED, NOT_REGISTERED) costs nothing to add.

/// DescribeInstanceHealth's view of one instance (ELB-SPEC §2.2), with ELB's exact strings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceHealth {
    pub state: &'static str,
    pub reason_code: &'static str,
    pub description: &'static str,
}

impl InstanceHealth {
    /// Passed its checks: gets traffic.
    pub const IN_SERVICE: InstanceHealth = InstanceHealth {
        state: "InService",
        reason_code: "N/A",
        description: "N/A",
    };
    /// Just registered, no verdict yet (DESIGN.md "A new instance").
    pub const REGISTRATION_IN_PROGRESS: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "ELB",
        description: "Instance registration is still in progress.",
    };
    /// Failed `UnhealthyThreshold` checks in a row and has passed none since.
    pub const FAILED_UNHEALTHY_THRESHOLD: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "Instance",
        description: "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.",
    };
    /// Out of service and passing again, but not yet `HealthyThreshold` times in a row.
    pub const NOT_YET_HEALTHY_THRESHOLD: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "Instance",
        description: "Instance has not passed the configured HealthyThreshold number of health checks consecutively.",
    };
    /// The instance's zone is not enabled on the load balancer; it gets no traffic (DESIGN.md).
    pub const ZONE_NOT_ENABLED: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "ELB",
        description: "Instance is in the EC2 Availability Zone for which LoadBalancer is not configured to route \
                      traffic to.",
    };
    /// Deregistered with connection draining on, while its requests finish (ELB-SPEC §5: it still reports
    /// InService, but gets no new requests).
    pub const DEREGISTRATION_IN_PROGRESS: InstanceHealth = InstanceHealth {
        state: "InService",
        reason_code: "N/A",
        description: "Instance deregistration currently in progress.",
    };
    /// Asked about by id but not registered.
    pub const NOT_REGISTERED: InstanceHealth = InstanceHealth {
        state: "OutOfService",
        reason_code: "Instance",
        description: "Instance is not currently registered with the LoadBalancer.",
    };

    /// Whether the instance may get traffic.
    pub fn in_service(&self) -> bool {
        self.state == "InService"
    }
}
