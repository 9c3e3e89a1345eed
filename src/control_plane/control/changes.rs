//! Recent instance state changes: a small bounded ring the status page shows, newest first.
//!
//! Every health transition the control plane applies (a checker's verdict, a passive failure, a forced flip) is
//! recorded here under the control plane's lock, so nothing on the request path ever touches it. The ring keeps
//! the last [`RECENT_CHANGES`]; older ones are dropped. The trade-off: the history is lost on restart and capped,
//! which is right for a page that says "what just happened" (the logs keep everything).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::InstanceHealth;

/// How many state changes the ring keeps.
pub(crate) const RECENT_CHANGES: usize = 20;

/// The last [`RECENT_CHANGES`] instance state changes, oldest at the front.
#[derive(Debug, Default)]
pub(crate) struct Changes(VecDeque<StateChange>);

impl Changes {
    /// Records a transition of `instance` from `from` to `to`, unless nothing visible changed.
    pub(crate) fn record(
        &mut self,
        load_balancer: &str,
        instance: &Arc<str>,
        from: &InstanceHealth,
        to: &InstanceHealth,
    ) {
        if from == to {
            return;
        }
        if self.0.len() == RECENT_CHANGES {
            self.0.pop_front();
        }
        self.0.push_back(StateChange {
            // Wall-clock time, for people: the page shows it in the browser's time zone.
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            load_balancer: load_balancer.to_string(),
            instance_id: instance.to_string(),
            from: from.state,
            to: to.state,
            reason_code: to.reason_code,
            description: to.description,
        });
    }

    /// The recorded changes, newest first.
    pub(crate) fn newest_first(&self) -> Vec<StateChange> {
        self.0.iter().rev().cloned().collect()
    }
}

/// One instance state change, as `/status` lists it under `recent_changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateChange {
    /// When the control plane applied it, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The load balancer the instance is registered with.
    pub load_balancer: String,
    /// The instance.
    pub instance_id: String,
    /// DescribeInstanceHealth's state before (`InService` or `OutOfService`).
    pub from: &'static str,
    /// The state after.
    pub to: &'static str,
    /// The new state's reason code (ELB-SPEC.md §2.2).
    pub reason_code: &'static str,
    /// The new state's description (ELB-SPEC.md §2.2).
    pub description: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_changes_newest_first() {
        let mut changes = Changes::default();
        let up = InstanceHealth::IN_SERVICE;
        let down = InstanceHealth::FAILED_UNHEALTHY_THRESHOLD;
        for i in 0..RECENT_CHANGES + 5 {
            let id: Arc<str> = format!("i-{i}").into();
            changes.record("web", &id, &down, &up);
        }
        let listed = changes.newest_first();
        assert_eq!(listed.len(), RECENT_CHANGES);
        assert_eq!(listed[0].instance_id, format!("i-{}", RECENT_CHANGES + 4));
        assert_eq!(listed[RECENT_CHANGES - 1].instance_id, "i-5");
        assert_eq!(
            (listed[0].from, listed[0].to),
            ("OutOfService", "InService")
        );
    }

    #[test]
    fn a_change_to_the_same_health_is_not_recorded() {
        let mut changes = Changes::default();
        let id: Arc<str> = "i-a".into();
        changes.record(
            "web",
            &id,
            &InstanceHealth::IN_SERVICE,
            &InstanceHealth::IN_SERVICE,
        );
        assert!(changes.newest_first().is_empty());
    }
}
