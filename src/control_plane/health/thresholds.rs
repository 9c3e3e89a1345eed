//! Threshold counting: consecutive check results in, DescribeInstanceHealth state out. Pure, no I/O, no clock.
//!
//! The rule is ELB-SPEC §2.1 "Timing": an InService instance goes OutOfService after `UnhealthyThreshold`
//! consecutive failures and comes back after `HealthyThreshold` consecutive passes; a new registration is InService
//! after its first pass (DESIGN.md "A new instance", the emulator's reading of §2.1 "New registration"). Trade-off:
//! only the current run of passes or failures is kept, not a history, so one instance costs a few words and a
//! result is counted in constant time; that is all the thresholds need.

use super::states::InstanceHealth;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No check has passed and fewer than `unhealthy` have failed since registration.
    Registering,
    InService,
    OutOfService,
}

/// Threshold counting for one instance: consecutive results in, DescribeInstanceHealth state out. Pure, no I/O.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    healthy: u32,
    unhealthy: u32,
    phase: Phase,
    passes: u32,
    failures: u32,
}

impl Thresholds {
    /// A newly registered instance, REGISTRATION_IN_PROGRESS. A threshold of 0 counts as 1.
    pub(crate) fn new(healthy: u32, unhealthy: u32) -> Self {
        Thresholds {
            healthy: healthy.max(1),
            unhealthy: unhealthy.max(1),
            phase: Phase::Registering,
            passes: 0,
            failures: 0,
        }
    }

    /// Counts one check; returns the new state when the reported state changed.
    pub(crate) fn record(&mut self, passed: bool) -> Option<InstanceHealth> {
        let before = self.health();
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
        }
        self.phase = match self.phase {
            // ELB-SPEC §2.1 "New registration": the first pass puts a new instance in service.
            Phase::Registering if passed => Phase::InService,
            Phase::Registering | Phase::InService if self.failures >= self.unhealthy => {
                Phase::OutOfService
            }
            Phase::OutOfService if self.passes >= self.healthy => Phase::InService,
            unchanged => unchanged,
        };
        let after = self.health();
        (after != before).then_some(after)
    }

    /// The state DescribeInstanceHealth reports now.
    pub(crate) fn health(&self) -> InstanceHealth {
        match self.phase {
            Phase::Registering => InstanceHealth::REGISTRATION_IN_PROGRESS,
            Phase::InService => InstanceHealth::IN_SERVICE,
            Phase::OutOfService if self.passes > 0 => InstanceHealth::NOT_YET_HEALTHY_THRESHOLD,
            Phase::OutOfService => InstanceHealth::FAILED_UNHEALTHY_THRESHOLD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_instance_in_service_on_first_pass() {
        let mut t = Thresholds::new(10, 2);
        assert_eq!(t.health(), InstanceHealth::REGISTRATION_IN_PROGRESS);
        assert_eq!(t.record(true), Some(InstanceHealth::IN_SERVICE));
        assert_eq!(t.record(true), None);
    }

    #[test]
    fn new_instance_fails_after_unhealthy_threshold() {
        let mut t = Thresholds::new(3, 4);
        for _ in 0..3 {
            assert_eq!(t.record(false), None);
            assert_eq!(t.health(), InstanceHealth::REGISTRATION_IN_PROGRESS);
        }
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        // From there, recovery needs the healthy threshold, not one pass.
        assert_eq!(
            t.record(true),
            Some(InstanceHealth::NOT_YET_HEALTHY_THRESHOLD)
        );
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(InstanceHealth::IN_SERVICE));
    }

    #[test]
    fn in_service_tolerates_fewer_than_unhealthy_threshold_failures() {
        let mut t = Thresholds::new(2, 3);
        t.record(true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert!(t.health().in_service());
        // A pass resets the failure count.
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        assert!(!t.health().in_service());
    }

    #[test]
    fn recovery_needs_exactly_healthy_threshold_consecutive_passes() {
        let mut t = Thresholds::new(3, 2);
        t.record(true);
        t.record(false);
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        assert_eq!(
            t.record(true),
            Some(InstanceHealth::NOT_YET_HEALTHY_THRESHOLD)
        );
        assert_eq!(t.record(true), None);
        // A failure in between resets the pass count.
        assert_eq!(
            t.record(false),
            Some(InstanceHealth::FAILED_UNHEALTHY_THRESHOLD)
        );
        assert_eq!(
            t.record(true),
            Some(InstanceHealth::NOT_YET_HEALTHY_THRESHOLD)
        );
        assert_eq!(t.record(true), None);
        assert_eq!(t.health(), InstanceHealth::NOT_YET_HEALTHY_THRESHOLD);
        assert_eq!(t.record(true), Some(InstanceHealth::IN_SERVICE));
    }
}
