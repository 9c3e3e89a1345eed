//! The state store's own series (cluster mode, issue 16 item 5): whether etcd answers, and how many calls to it
//! failed. No CloudWatch metric stands for them (ELB's store is AWS's), so they are `elbe_*` names.
//!
//! Rule: the store owns its series from the moment it is made, before the registry exists (cluster mode
//! connects to etcd, and may find it down, before the server is built), and the registry takes them once the
//! server runs ([`Metrics::register_store`]); so no call's outcome is lost. Without `[cluster]` there is no
//! remote store and no series.

use prometheus::{IntCounter, IntGauge};

use super::{register, Metrics};

/// The state store's series, unregistered until [`Metrics::register_store`]. Cloning shares them.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    /// 1 while the store answers, 0 from the first call it did not answer until the next one it does.
    pub(crate) reachable: IntGauge,
    /// Calls to the store that got no answer (timed out, refused, the connection broken).
    pub(crate) failed_calls: IntCounter,
}

impl StoreMetrics {
    /// The series, with the store taken as reachable until a call says otherwise.
    pub(crate) fn new() -> StoreMetrics {
        let reachable = IntGauge::new(
            "elbe_state_store_reachable",
            "1 while the cluster's state store (etcd) answers, 0 while it does not (elbe's own).",
        )
        .expect("static metric definition");
        reachable.set(1);
        let failed_calls = IntCounter::new(
            "elbe_state_store_failed_calls_total",
            "Calls to the cluster's state store (etcd) that got no answer: timed out, refused, connection lost (elbe's own).",
        )
        .expect("static metric definition");
        StoreMetrics {
            reachable,
            failed_calls,
        }
    }
}

impl Metrics {
    /// Exposes the state store's series on `/metrics` from now on.
    pub(crate) fn register_store(&self, store: &StoreMetrics) {
        register(&self.registry, store.reachable.clone());
        register(&self.registry, store.failed_calls.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_series_appear_once_registered_and_say_what_the_store_set() {
        let metrics = Metrics::new();
        let store = StoreMetrics::new();
        store.failed_calls.inc();
        assert!(!metrics.encode().contains("elbe_state_store"));
        metrics.register_store(&store);
        store.reachable.set(0);
        let text = metrics.encode();
        assert!(
            text.lines().any(|l| l == "elbe_state_store_reachable 0"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "elbe_state_store_failed_calls_total 1"),
            "{text}"
        );
    }
}
