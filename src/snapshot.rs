//! The immutable routing state the data plane reads: what one node's listener may send requests to.
//!
//! The control plane builds a new [`NodeSnapshot`] whenever anything changes (config, registrations, health) and
//! publishes it through an `ArcSwap`; a request loads it once (`load()`, no lock) and never sees it change under it.
//! Per-instance live state (outstanding requests, the connection pool) lives in [`Target`]s behind `Arc`s that the
//! control plane carries over from one snapshot to the next, so a rebuild never loses a count or a pooled connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::pool::Pool;

/// One instance as one listener reaches it: an address (the instance's IP and the listener's instance port, or
/// the instance's own port) with its live counters and its pool of idle connections.
#[derive(Debug)]
pub struct Target {
    pub instance_id: Arc<str>,
    pub zone: Arc<str>,
    pub addr: SocketAddr,
    pub pool: Pool,
    outstanding: AtomicUsize,
    requests: AtomicU64,
}

impl Target {
    pub fn new(instance_id: Arc<str>, zone: Arc<str>, addr: SocketAddr, pool: Pool) -> Self {
        Target {
            instance_id,
            zone,
            addr,
            pool,
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Requests dispatched to this target that have not finished yet (the balancer's load measure).
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Requests ever dispatched to this target (for tests and the zone-stickiness harness).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn begin_request(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_request(&self) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one node's listener may route to right now.
#[derive(Debug, Default)]
pub struct NodeSnapshot {
    /// The instances this node may use: `InService` ones in its own zone, or in the other enabled zones when its
    /// own has none, or in all enabled zones with cross-zone load balancing (ELB-SPEC.md §3).
    pub candidates: Vec<Arc<Target>>,
    /// ELB's idle timeout: how long an instance may take to start its response before the client gets a 504.
    pub idle_timeout: Duration,
}

/// The published, swappable handle a node's listener holds.
pub type SharedNodeSnapshot = Arc<ArcSwap<NodeSnapshot>>;
