//! ELB's surge queue and spillover (ELB-SPEC.md §8).
//!
//! When every instance a node may use is at its limit (`backend_max_requests` outstanding requests), a request
//! waits in the node's surge queue until one frees up; the queue holds `surge_queue_size` requests (1,024, as
//! ELB); a request that finds it full spills over: ELB's 503. `SurgeQueueLength` and `SpilloverCount` report it.
//!
//! The fast path is untouched: with no limit set, or an instance below it, nothing here runs. Waiting uses one
//! process-wide `Notify`: a request ending wakes the waiters only when some exist (one atomic load otherwise),
//! and every waiter re-checks its own instances, so a wake-up meant for another load balancer costs a re-check,
//! never a lost request. The limit is soft under concurrency (two requests may pass the same check at once).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::data_plane::back_end::target::Target;
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::routing::balancer;
use crate::data_plane::snapshot::SharedNodeSnapshot;
use crate::observability::metrics::ZoneMetrics;

/// Requests waiting in any surge queue of the process, and the signal that an instance freed up.
static WAITING: AtomicUsize = AtomicUsize::new(0);
static FREED: Notify = Notify::const_new();

/// Called when a request leaves an instance: wakes queued requests, if there are any.
pub(crate) fn instance_freed() {
    if WAITING.load(Ordering::Acquire) > 0 {
        FREED.notify_waiters();
    }
}

/// Counts a request as outstanding on its instance until dropped (the balancer reads it); its end wakes the
/// requests queued for an instance.
pub(crate) struct Outstanding(Arc<Target>);

impl Outstanding {
    pub(crate) fn begin(target: Arc<Target>) -> Self {
        target.begin_request();
        Outstanding(target)
    }

    pub(crate) fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.end_request();
        instance_freed();
    }
}

/// One node's surge queue.
#[derive(Debug)]
pub(crate) struct SurgeQueue {
    /// `backend_max_requests`; 0 = no limit (the queue is never used).
    pub limit: usize,
    pub capacity: usize,
    queued: AtomicUsize,
}

impl SurgeQueue {
    pub(crate) fn new(limit: usize, capacity: usize) -> Self {
        SurgeQueue {
            limit,
            capacity,
            queued: AtomicUsize::new(0),
        }
    }

    /// Whether `target` may take one more request now.
    pub(crate) fn has_room(&self, target: &Target) -> bool {
        self.limit == 0 || target.outstanding() < self.limit
    }

    /// Waits until one of the node's instances is below the limit and returns it; ELB's 503 when the queue is
    /// full (spillover) or nothing can take the request, 504 when the idle timeout passes while queued.
    pub(crate) async fn wait_for_instance(
        &self,
        routes: &SharedNodeSnapshot,
        metrics: &ZoneMetrics,
        deadline: Instant,
    ) -> Result<Arc<Target>, ElbResponse> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            metrics.spillover.inc();
            return Err(ElbResponse::NoInstance);
        }
        metrics.surge_queue_length.inc();
        WAITING.fetch_add(1, Ordering::AcqRel);
        let result = self.wait(routes, deadline).await;
        WAITING.fetch_sub(1, Ordering::AcqRel);
        metrics.surge_queue_length.dec();
        self.queued.fetch_sub(1, Ordering::AcqRel);
        result
    }

    async fn wait(
        &self,
        routes: &SharedNodeSnapshot,
        deadline: Instant,
    ) -> Result<Arc<Target>, ElbResponse> {
        loop {
            let freed = FREED.notified();
            tokio::pin!(freed);
            // Registered before the check, so a request ending between the check and the wait is not missed.
            freed.as_mut().enable();
            let candidates = &routes.load().candidates;
            if candidates.is_empty() {
                return Err(ElbResponse::NoInstance);
            }
            if let Some(target) = self.least_loaded_with_room(candidates) {
                return Ok(target);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(ElbResponse::GatewayTimeout);
            }
        }
    }

    /// The least-loaded instance below the limit, if any (a scan: only queued requests come here).
    fn least_loaded_with_room(&self, candidates: &[Arc<Target>]) -> Option<Arc<Target>> {
        if let Some(target) = balancer::pick_least_outstanding(candidates) {
            if self.has_room(target) {
                return Some(target.clone());
            }
        }
        candidates
            .iter()
            .filter(|t| self.has_room(t))
            .min_by_key(|t| t.outstanding())
            .cloned()
    }
}
