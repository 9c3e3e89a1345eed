//! How an ELB API call changes what runs: it hands a [`Plan`] to the server ([`Apply`]), which runs it against
//! what runs now and stages, keeps and commits the changes it returns (`server/reload`).
//!
//! Rule: a plan decides from the [`View`] it is given, inside the server's one-change-at-a-time section, so two
//! calls never decide from the same state (two CreateLoadBalancer of one name: the second sees the first's load
//! balancer). A plan that returns no change changes nothing and writes nothing (the idempotent repeats).
//!
//! Trade-off: the trait lives here and the server implements it, so the API does not know the server (no import
//! cycle) and the test harness's in-process elbe and `elbe run` apply changes the same way.

use std::future::Future;
use std::pin::Pin;

use super::error::ApiError;
use crate::config::{self, Config};
use crate::control_plane::store::{Change, Records};

/// What a plan decides from.
pub(crate) struct View<'a> {
    /// What runs: the file with the store's records on top.
    pub config: &'a Config,
    /// The configuration file as last applied (what a deletion must leave a tombstone for).
    pub file: &'a Config,
    /// The records held, by key.
    pub records: &'a Records,
}

impl View<'_> {
    /// The running load balancer `name`, whatever its case (names are DNS names, which the file keeps unique
    /// regardless of case); ELB's `LoadBalancerNotFound` otherwise. Records are keyed by the name it runs under.
    pub(crate) fn load_balancer(&self, name: &str) -> Result<&config::LoadBalancer, ApiError> {
        self.running(name)
            .ok_or_else(|| ApiError::load_balancer_not_found(name))
    }

    /// The running load balancer `name`, whatever its case.
    pub(crate) fn running(&self, name: &str) -> Option<&config::LoadBalancer> {
        self.config
            .load_balancers
            .iter()
            .find(|lb| lb.name.eq_ignore_ascii_case(name))
    }

    /// Whether the file declares a load balancer `name` that no API record replaced: deleting it, or a part of
    /// it, needs a tombstone.
    pub(crate) fn in_file(&self, name: &str) -> bool {
        self.file.load_balancers.iter().any(|lb| lb.name == name)
    }
}

/// A call's decision: the changes to make, or ELB's error. It owns what it needs (it may run after its caller
/// went away), and may run more than once: in cluster mode a write another process made first (a failed
/// compare-and-swap) has the server plan again against what the store holds now.
pub(crate) type Plan = Box<dyn Fn(&View<'_>) -> Result<Vec<Change>, ApiError> + Send>;

/// Where plans run: the server.
pub(crate) trait Apply: Send + Sync {
    /// Runs `plan` and makes its changes: Ok once they are on disk and serving.
    fn apply(
        self: std::sync::Arc<Self>,
        plan: Plan,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send>>;
}
