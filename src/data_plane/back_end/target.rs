//! An instance as one listener reaches it: the unit the balancer picks and the pool belongs to.
//!
//! A target's counters and pool are live state: the control plane carries the same `Arc<Target>` from one snapshot
//! to the next, so a rebuild never loses a count or a pooled connection.
//!
//! Connection draining (ELB-SPEC §5) ends here too. A draining target gets no new requests (the control plane left
//! it out of the snapshot) and says when its last one ends; a target that is cut (deregistered with draining off,
//! or at the end of the drain's timeout) ends the requests still on it at once: each exchange with the instance
//! watches the cut ([`CutWatch`]) and fails, so the client gets ELB's 504. Either way its idle pooled connections
//! close, and connections coming back from requests are closed instead of pooled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::data_plane::back_end::cut::{Cut, CutWatch};
use crate::data_plane::back_end::http1::BackendConnection;
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
    cut: Arc<Cut>,
    /// Connection draining: no new requests come; [`Target::drained`] completes when the last one ends.
    draining: AtomicBool,
    drained: Notify,
}

impl Target {
    /// An instance for tests that never send it anything: `id` in zone-a at `addr`, a pool with room for one.
    #[cfg(test)]
    pub(crate) fn stand_in(id: &str, addr: SocketAddr) -> Arc<Target> {
        let idle = std::time::Duration::from_secs(60);
        let pool = Pool::new(addr, 1, idle, std::time::Duration::from_secs(1));
        Arc::new(Target::new(id.into(), "zone-a".into(), addr, pool))
    }

    pub fn new(instance_id: Arc<str>, zone: Arc<str>, addr: SocketAddr, pool: Pool) -> Self {
        Target {
            instance_id,
            zone,
            addr,
            pool,
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            cut: Arc::default(),
            draining: AtomicBool::new(false),
            drained: Notify::new(),
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
        let before = self.outstanding.fetch_sub(1, Ordering::AcqRel);
        if before == 1 && self.draining.load(Ordering::Acquire) {
            self.drained.notify_waiters();
        }
    }

    /// A watch on this target's cut, for one exchange.
    pub(crate) fn watch_cut(&self) -> CutWatch {
        CutWatch::new(self.cut.clone())
    }

    /// Stops taking connections back and closes the idle ones: the instance is leaving (draining, or gone).
    pub(crate) fn retire(&self) {
        self.draining.store(true, Ordering::Release);
        self.pool.clear();
    }

    /// Whether the target was retired (draining or cut).
    pub(crate) fn is_retired(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Completes when no request is outstanding on a retired target.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.outstanding() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Ends every request still on the target (ELB-SPEC §5: deregistered without draining, or at the end of the
    /// drain), and closes its idle connections.
    pub(crate) fn cut(&self) {
        self.retire();
        self.cut.cut();
    }

    /// A connection whose exchange ended cleanly: pooled, unless the target is retiring (then it closes). The
    /// requests outstanding now (this one still counted) are the demand the pool sizes itself by.
    pub(crate) fn checkin(&self, mut conn: BackendConnection) {
        if !self.draining.load(Ordering::Acquire) {
            conn.trim_for_pool();
            self.pool.checkin(conn, self.outstanding());
        }
    }
}
