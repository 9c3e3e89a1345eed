//! An instance as one listener reaches it: the unit the balancer picks and the pool belongs to.
//!
//! A target's counters and pool are live state: the control plane carries the same `Arc<Target>` from one snapshot
//! to the next, so a rebuild never loses a count or a pooled connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::data_plane::back_end::pool::Pool;

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
