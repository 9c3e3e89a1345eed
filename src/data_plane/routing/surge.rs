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

/// The surge queue on tokio's paused clock, without sockets: instances whose pools are never used, requests held
/// outstanding by `Outstanding` guards the test drops, and exact times.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use http::StatusCode;
    use tokio::task::JoinHandle;

    use crate::data_plane::snapshot::NodeSnapshot;
    use crate::observability::metrics::Metrics;

    const IDLE_TIMEOUT: Duration = Duration::from_millis(300);

    /// An instance to hand out; nothing is ever sent to it.
    fn instance(id: &str) -> Arc<Target> {
        Target::stand_in(id, "127.0.0.1:9".parse().unwrap())
    }

    /// One node's queue, routes and metrics.
    struct Node {
        queue: Arc<SurgeQueue>,
        routes: SharedNodeSnapshot,
        metrics: Arc<ZoneMetrics>,
    }

    /// A queued request's outcome: the request outstanding on the instance it got (held until dropped), or ELB's
    /// response; and when it came.
    type Queued = JoinHandle<(Result<Outstanding, ElbResponse>, Instant)>;

    impl Node {
        fn new(limit: usize, capacity: usize, candidates: Vec<Arc<Target>>) -> Self {
            let snapshot = NodeSnapshot {
                candidates,
                idle_timeout: IDLE_TIMEOUT,
                ..NodeSnapshot::default()
            };
            Node {
                queue: Arc::new(SurgeQueue::new(limit, capacity)),
                routes: Arc::new(ArcSwap::from_pointee(snapshot)),
                metrics: Arc::new(Metrics::new().zone("web", "zone-a")),
            }
        }

        /// Queues a request on its own task as Forward does: deadline one idle timeout on, and the request begun
        /// on its instance in the same poll that got it (so the next waiter sees the instance busy again).
        fn queue(&self) -> Queued {
            let (queue, routes, metrics) = (
                self.queue.clone(),
                self.routes.clone(),
                self.metrics.clone(),
            );
            let deadline = Instant::now() + IDLE_TIMEOUT;
            tokio::spawn(async move {
                let got = queue.wait_for_instance(&routes, &metrics, deadline).await;
                (got.map(Outstanding::begin), Instant::now())
            })
        }

        fn queue_length(&self) -> i64 {
            self.metrics.surge_queue_length.get()
        }

        fn spillover(&self) -> u64 {
            self.metrics.spillover.get()
        }

        /// Lets the queued tasks run (no time passes) until `length` requests wait.
        async fn until_queued(&self, length: i64) {
            for _ in 0..100 {
                if self.queue_length() == length {
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("{} queued, not {length}", self.queue_length());
        }
    }

    fn instance_of(queued: &Result<Outstanding, ElbResponse>) -> &str {
        match queued {
            Ok(outstanding) => &outstanding.target().instance_id,
            Err(kind) => panic!("ELB's {} instead of an instance", kind.status()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_request_gets_an_instance_the_moment_one_of_its_requests_ends() {
        let (a, b) = (instance("i-a"), instance("i-b"));
        let node = Node::new(1, 4, vec![a.clone(), b.clone()]);
        let (_on_a, on_b) = (Outstanding::begin(a.clone()), Outstanding::begin(b.clone()));
        assert!(!node.queue.has_room(&a) && !node.queue.has_room(&b));
        let queued = node.queue();
        node.until_queued(1).await;
        tokio::time::sleep(IDLE_TIMEOUT / 3).await;
        assert!(!queued.is_finished(), "every instance is at its limit");

        let freed = Instant::now();
        drop(on_b);
        let (got, at) = queued.await.unwrap();
        assert_eq!(instance_of(&got), "i-b", "the instance that freed up");
        assert_eq!(at, freed);
        assert_eq!((b.outstanding(), node.queue_length()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_spills_over_with_elbs_503() {
        let a = instance("i-a");
        let node = Node::new(1, 1, vec![a.clone()]);
        let busy = Outstanding::begin(a.clone());
        let first = node.queue();
        node.until_queued(1).await;

        let started = Instant::now();
        let deadline = started + IDLE_TIMEOUT;
        let spilled = node
            .queue
            .wait_for_instance(&node.routes, &node.metrics, deadline)
            .await;
        assert_eq!(spilled.unwrap_err(), ElbResponse::NoInstance);
        assert_eq!(
            ElbResponse::NoInstance.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(Instant::now(), started, "spilled over at once, not queued");
        assert_eq!((node.spillover(), node.queue_length()), (1, 1));

        drop(busy);
        let (got, _) = first.await.unwrap();
        assert_eq!(
            instance_of(&got),
            "i-a",
            "the queued request is still served"
        );
        assert_eq!((node.spillover(), node.queue_length()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_queued_past_the_idle_timeout_gets_elbs_504_at_exactly_the_deadline() {
        let a = instance("i-a");
        let node = Node::new(1, 4, vec![a.clone()]);
        let _busy = Outstanding::begin(a.clone());
        let queued_at = Instant::now();
        let queued = node.queue();
        node.until_queued(1).await;
        // Another load balancer's instance frees up meanwhile: the waiter looks again, and keeps its deadline.
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        drop(Outstanding::begin(instance("i-elsewhere")));

        let (got, at) = queued.await.unwrap();
        assert_eq!(got.err(), Some(ElbResponse::GatewayTimeout));
        assert_eq!(
            ElbResponse::GatewayTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(at - queued_at, IDLE_TIMEOUT);
        assert_eq!((a.outstanding(), node.queue_length()), (1, 0));
        assert_eq!(node.spillover(), 0, "timed out, not spilled over");
    }

    #[tokio::test(start_paused = true)]
    async fn the_surge_queue_length_goes_up_with_each_queued_request_and_back_down_as_each_gets_the_instance(
    ) {
        let a = instance("i-a");
        let node = Node::new(1, 8, vec![a.clone()]);
        let mut busy = Outstanding::begin(a.clone());
        let mut queued = Vec::new();
        for length in 1..=3 {
            queued.push(node.queue());
            node.until_queued(length).await;
        }
        for length in (0..3).rev() {
            drop(busy);
            // One waiter gets the instance (and begins its request on it); the others find it busy again.
            let mut got = None;
            for _ in 0..100 {
                if let Some(i) = queued.iter().position(JoinHandle::is_finished) {
                    got = Some(queued.swap_remove(i));
                    break;
                }
                tokio::task::yield_now().await;
            }
            let (outstanding, _) = got.expect("a waiter got the instance").await.unwrap();
            busy = outstanding.unwrap();
            assert_eq!(node.queue_length(), length);
            assert_eq!(a.outstanding(), 1, "one request at a time on the instance");
        }
        assert_eq!(node.spillover(), 0);
    }
}
