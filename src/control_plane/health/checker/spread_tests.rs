//! The checker at scale, on a paused clock with probes that only count (issue 18 item 5): first checks spread
//! evenly over the interval, at start and for a burst of adds, and never more than [`MAX_CHECKS_IN_FLIGHT`]
//! checks at once however many are due or hung.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A probe that records when each check starts, and hangs `hang` (on tokio's clock) before passing; counts the
/// checks in flight and the most there ever were.
struct Counting {
    started: UnboundedSender<(SocketAddr, Instant)>,
    hang: Duration,
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

/// Leaves the in-flight count when the check ends, even when it is cancelled.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Prober for Counting {
    fn check(
        &self,
        _target: &HealthTarget,
        addr: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ProbeFailure>> + Send {
        let _ = self.started.send((addr, Instant::now()));
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.most.fetch_max(now, Ordering::Relaxed);
        let guard = InFlight(self.in_flight.clone());
        let hang = self.hang;
        async move {
            let _guard = guard;
            time::sleep(hang.min(timeout)).await;
            if hang >= timeout {
                Err(ProbeFailure::Timeout)
            } else {
                Ok(())
            }
        }
    }
}

/// A checker at a 1 s interval (so the spread is FIRST_CHECK_SPREAD's full second) over probes hanging `hang`.
struct Many {
    checker: Checker,
    started: UnboundedReceiver<(SocketAddr, Instant)>,
    most: Arc<AtomicUsize>,
    _events: UnboundedReceiver<HealthEvent>,
}

fn many(hang: Duration, timeout: Duration, registered: Vec<(Arc<str>, SocketAddr)>) -> Many {
    let (started_tx, started) = mpsc::unbounded_channel();
    let most = Arc::new(AtomicUsize::new(0));
    let prober = Counting {
        started: started_tx,
        hang,
        in_flight: Arc::new(AtomicUsize::new(0)),
        most: most.clone(),
    };
    let check = HealthCheck {
        target: HealthTarget::Tcp { port: 0 },
        interval: Duration::from_secs(1),
        timeout,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let errors = IntCounter::new("errors", "test").unwrap();
    let checker = Checker::start_with(prober, check, registered, events_tx, errors);
    Many {
        checker,
        started,
        most,
        _events: events,
    }
}

fn instance(n: usize) -> (Arc<str>, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, (n / 250) as u8, (n % 250) as u8 + 1], 80));
    (format!("i-{n:05}").into(), addr)
}

/// The first check of each of `n` instances, as time since `t0`, in the order they started.
async fn first_checks(many: &mut Many, t0: Instant, n: usize) -> Vec<(SocketAddr, Duration)> {
    let mut seen = HashSet::new();
    let mut firsts = Vec::new();
    while firsts.len() < n {
        let (addr, at) = many.started.recv().await.unwrap();
        if seen.insert(addr) {
            firsts.push((addr, at - t0));
        }
    }
    firsts
}

/// How many of `times` fall in each tenth of the second after `t0`.
fn tenths(times: &[(SocketAddr, Duration)]) -> Vec<usize> {
    let mut buckets = vec![0; 10];
    for (_, at) in times {
        buckets[(at.as_millis() / 100).min(9) as usize] += 1;
    }
    buckets
}

/// 1,000 instances given at start: one first check every millisecond of the interval, so each tenth of the
/// second has exactly a hundred; then each keeps its place, one interval later.
#[tokio::test(start_paused = true)]
async fn the_first_checks_of_a_thousand_instances_spread_evenly_over_the_interval() {
    let t0 = Instant::now();
    let registered: Vec<_> = (0..1000).map(instance).collect();
    let mut many = many(
        Duration::ZERO,
        Duration::from_millis(500),
        registered.clone(),
    );
    let firsts = first_checks(&mut many, t0, 1000).await;
    assert_eq!(tenths(&firsts), vec![100; 10]);
    for (n, (id, addr)) in registered.iter().enumerate() {
        let at = firsts.iter().find(|(a, _)| a == addr).map(|(_, at)| *at);
        assert_eq!(at, Some(Duration::from_millis(n as u64)), "{id}");
    }
    // The second round keeps the spread: the same tenths, one interval later.
    let mut second = Vec::new();
    while second.len() < 1000 {
        let (addr, at) = many.started.recv().await.unwrap();
        second.push((addr, at - t0 - Duration::from_secs(1)));
    }
    assert_eq!(tenths(&second), vec![100; 10]);
}

/// A burst of 1,000 adds at run time (a bulk registration) is spread the same way, in the order added, rather
/// than checked all at once and in lockstep every interval after.
#[tokio::test(start_paused = true)]
async fn a_burst_of_adds_is_spread_over_the_interval() {
    let mut many = many(Duration::ZERO, Duration::from_millis(500), Vec::new());
    time::sleep(Duration::from_millis(10)).await;
    let t0 = Instant::now();
    for n in 0..1000 {
        let (id, addr) = instance(n);
        many.checker.add(id, addr);
    }
    let firsts = first_checks(&mut many, t0, 1000).await;
    assert_eq!(tenths(&firsts), vec![100; 10]);
    assert_eq!(firsts[0], (instance(0).1, Duration::ZERO));
    assert_eq!(firsts[999], (instance(999).1, Duration::from_millis(999)));
}

/// 2,000 instances that never answer, each due while 500 ms checks of the others hang: never more than
/// MAX_CHECKS_IN_FLIGHT checks at once (the cap is reached, not passed), and every instance is still checked.
#[tokio::test(start_paused = true)]
async fn no_more_than_the_cap_of_checks_run_at_once() {
    let t0 = Instant::now();
    let registered: Vec<_> = (0..2000).map(instance).collect();
    let hang = Duration::from_secs(3600);
    let mut many = many(hang, Duration::from_millis(500), registered);
    let firsts = time::timeout(Duration::from_secs(10), first_checks(&mut many, t0, 2000))
        .await
        .expect("every instance checked within 10 s");
    assert_eq!(firsts.len(), 2000);
    assert_eq!(many.most.load(Ordering::Relaxed), MAX_CHECKS_IN_FLIGHT);
}

/// A few instances added together are all checked at once, as a lone one is: only a bulk registration is spread.
#[tokio::test(start_paused = true)]
async fn a_few_adds_together_are_all_checked_at_once() {
    let mut many = many(Duration::ZERO, Duration::from_millis(500), Vec::new());
    time::sleep(Duration::from_millis(10)).await;
    let t0 = Instant::now();
    for n in 0..SPREAD_BURSTS_OF_MORE_THAN {
        let (id, addr) = instance(n);
        many.checker.add(id, addr);
    }
    let firsts = first_checks(&mut many, t0, SPREAD_BURSTS_OF_MORE_THAN).await;
    assert!(firsts.iter().all(|(_, at)| at.is_zero()), "{firsts:?}");
}
