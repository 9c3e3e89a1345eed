//! Whether etcd answers (issue 16 item 5): one answer per process, from every call the store makes.
//!
//! Rule: every call to etcd goes through `bounded` (reads, writes, the watch's openings, the probe), and every
//! watch message or broken watch stream is seen here too: a call that got an answer says "reachable", one that
//! got none (timed out, refused, transport broken) says "unreachable". Only a change of state is logged, once
//! (`state store unreachable` / `state store reachable again`), sets the gauge and the time since; every call
//! that got no answer is counted. An answer that refuses the request (etcd said no: too many operations, a
//! compacted revision) is an answer: etcd is reachable.
//!
//! Trade-off: atomics, not a lock: calls land from the API's tasks, the watch and the probe at once, and two
//! racing ones can leave `since` a few microseconds off; the state itself is whatever the last call said.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::super::{Revision, StoreStatus};
use crate::observability::metrics::StoreMetrics;

/// What this process knows of its etcd: shared by every clone of the store.
pub(crate) struct Reach {
    endpoints: String,
    reachable: AtomicBool,
    /// Milliseconds since the Unix epoch of the last change of `reachable` (or of the start).
    since_unix_ms: AtomicU64,
    /// The last revision this process applied (0 before the first).
    applied: AtomicU64,
    metrics: StoreMetrics,
}

impl Reach {
    /// Taken as reachable until a call says otherwise (the first failure at start is then the one logged).
    pub(crate) fn new(endpoints: &str) -> Reach {
        Reach {
            endpoints: endpoints.to_owned(),
            reachable: AtomicBool::new(true),
            since_unix_ms: AtomicU64::new(now_unix_ms()),
            applied: AtomicU64::new(0),
            metrics: StoreMetrics::new(),
        }
    }

    /// etcd answered a call.
    pub(crate) fn answered(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            self.changed(true);
            tracing::info!(etcd = %self.endpoints, applied = self.applied.load(Ordering::Acquire),
                "state store reachable again");
        }
    }

    /// A call got no answer: `error` says why.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        self.metrics.failed_calls.inc();
        if self.reachable.swap(false, Ordering::AcqRel) {
            self.changed(false);
            tracing::warn!(etcd = %self.endpoints, %error, applied = self.applied.load(Ordering::Acquire),
                "state store unreachable: serving the last state; API writes answer 503 until it answers again");
        }
    }

    fn changed(&self, reachable: bool) {
        self.since_unix_ms.store(now_unix_ms(), Ordering::Release);
        self.metrics.reachable.set(i64::from(reachable));
    }

    /// Whether the last call got an answer.
    pub(crate) fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// This process has applied the state at `revision`.
    pub(crate) fn applied(&self, revision: Revision) {
        self.applied.store(revision.0, Ordering::Release);
    }

    /// The series to register.
    pub(crate) fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// What `/status` says of the store.
    pub(crate) fn status(&self) -> StoreStatus {
        StoreStatus {
            kind: "etcd",
            reachable: self.reachable(),
            revision: self.applied.load(Ordering::Acquire),
            since_unix_ms: self.since_unix_ms.load(Ordering::Acquire),
        }
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_of_state_move_the_gauge_and_the_time_and_every_failure_counts() {
        let reach = Reach::new("http://127.0.0.1:1");
        assert!(reach.reachable());
        reach.answered();
        reach.failed(&"refused");
        reach.failed(&"refused");
        assert!(!reach.reachable());
        assert_eq!(reach.metrics().reachable.get(), 0);
        assert_eq!(reach.metrics().failed_calls.get(), 2);
        let since = reach.status().since_unix_ms;
        reach.failed(&"refused");
        assert_eq!(reach.status().since_unix_ms, since, "no change, same since");
        reach.applied(Revision(7));
        reach.answered();
        let status = reach.status();
        assert!(status.reachable && status.revision == 7 && status.kind == "etcd");
        assert_eq!(reach.metrics().reachable.get(), 1);
    }
}
