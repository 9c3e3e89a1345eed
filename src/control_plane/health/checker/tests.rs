//! The checker's schedule on a paused clock, with scripted probes instead of sockets.
use super::*;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

fn http(port: u16) -> HealthTarget {
    HealthTarget::Http {
        port,
        path: "/health".into(),
    }
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], n))
}

/// An instance the tests script: each check takes `delay` on tokio's clock and passes while `status` is 200. A
/// check longer than the timeout times out, as a real probe does.
struct Script {
    status: AtomicU16,
    delay: Duration,
    /// Checks started.
    checks: AtomicUsize,
}

impl Script {
    fn new(status: u16, delay: Duration) -> Arc<Script> {
        Arc::new(Script {
            status: AtomicU16::new(status),
            delay,
            checks: AtomicUsize::new(0),
        })
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::Relaxed)
    }
}

/// Scripted instances by address; an address without a script refuses the connection. Reports when each check
/// starts, on tokio's clock.
struct Scripted {
    instances: HashMap<SocketAddr, Arc<Script>>,
    started: UnboundedSender<(SocketAddr, Instant)>,
}

impl Prober for Scripted {
    fn check(
        &self,
        _target: &HealthTarget,
        addr: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ProbeFailure>> + Send {
        let script = self.instances.get(&addr).cloned();
        let _ = self.started.send((addr, Instant::now()));
        async move {
            let Some(script) = script else {
                return Err(ProbeFailure::Refused);
            };
            script.checks.fetch_add(1, Ordering::Relaxed);
            time::sleep(script.delay.min(timeout)).await;
            if script.delay >= timeout {
                return Err(ProbeFailure::Timeout);
            }
            match script.status.load(Ordering::Relaxed) {
                200 => Ok(()),
                status => Err(ProbeFailure::Status(status)),
            }
        }
    }
}

/// A checker over scripted instances, with what a test watches.
struct Scene {
    checker: Checker,
    events: UnboundedReceiver<HealthEvent>,
    /// When each check started, by address.
    started: UnboundedReceiver<(SocketAddr, Instant)>,
    errors: IntCounter,
}

/// Starts a checker with [`fast_check`] over `scripts`, checking `registered` from the start.
fn scene(scripts: &[(SocketAddr, &Arc<Script>)], registered: Vec<(Arc<str>, SocketAddr)>) -> Scene {
    let (started_tx, started) = mpsc::unbounded_channel();
    let prober = Scripted {
        instances: scripts
            .iter()
            .map(|(addr, script)| (*addr, Arc::clone(script)))
            .collect(),
        started: started_tx,
    };
    let (tx, events) = mpsc::unbounded_channel();
    let errors = IntCounter::new("errors", "test").unwrap();
    let checker = Checker::start_with(prober, fast_check(http(0)), registered, tx, errors.clone());
    Scene {
        checker,
        events,
        started,
        errors,
    }
}

/// The next `n` check starts, as (address, time since `t0`).
async fn starts(scene: &mut Scene, t0: Instant, n: usize) -> HashMap<SocketAddr, Vec<Duration>> {
    let mut starts: HashMap<SocketAddr, Vec<Duration>> = HashMap::new();
    for _ in 0..n {
        let (addr, at) = scene.started.recv().await.unwrap();
        starts.entry(addr).or_default().push(at - t0);
    }
    starts
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fast_check(target: HealthTarget) -> HealthCheck {
    HealthCheck {
        target,
        interval: Duration::from_millis(60),
        timeout: Duration::from_millis(40),
        healthy_threshold: 3,
        unhealthy_threshold: 2,
    }
}

async fn next_event(events: &mut UnboundedReceiver<HealthEvent>) -> HealthEvent {
    time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("no health event within 3 s")
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn checker_follows_the_instance() {
    let instance = Script::new(200, Duration::ZERO);
    let addr = addr(1);
    let id: Arc<str> = "i-0000001".into();
    let Scene {
        checker,
        mut events,
        errors,
        ..
    } = scene(&[(addr, &instance)], vec![(id.clone(), addr)]);

    let event = next_event(&mut events).await;
    assert_eq!(
        event,
        HealthEvent {
            instance_id: id.clone(),
            addr,
            health: InstanceHealth::IN_SERVICE
        }
    );

    instance.status.store(500, Ordering::Relaxed);
    let before = instance.checks();
    assert_eq!(
        next_event(&mut events).await.health,
        InstanceHealth::FAILED_UNHEALTHY_THRESHOLD
    );
    let failed_checks = instance.checks() - before;
    // Two failures, plus at most one check that read the old status.
    assert!((2..=3).contains(&failed_checks), "{failed_checks} checks");

    instance.status.store(200, Ordering::Relaxed);
    let before = instance.checks();
    assert_eq!(
        next_event(&mut events).await.health,
        InstanceHealth::NOT_YET_HEALTHY_THRESHOLD
    );
    assert_eq!(
        next_event(&mut events).await.health,
        InstanceHealth::IN_SERVICE
    );
    let passed_checks = instance.checks() - before;
    assert!((3..=4).contains(&passed_checks), "{passed_checks} checks");
    assert_eq!(errors.get(), 0);

    checker.remove(&id);
    time::sleep(Duration::from_millis(100)).await; // lets a check in flight finish
    let after_remove = instance.checks();
    time::sleep(Duration::from_millis(300)).await; // five intervals
    assert_eq!(
        instance.checks(),
        after_remove,
        "checks continued after remove"
    );
    assert!(events.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn checker_adds_at_run_time_and_counts_connection_errors() {
    let up = Script::new(200, Duration::ZERO);
    let down = addr(2); // no script: refuses
    let Scene {
        checker,
        mut events,
        errors,
        ..
    } = scene(&[(addr(1), &up)], Vec::new());
    checker.add("i-up".into(), addr(1));
    checker.add("i-down".into(), down);
    let mut seen = HashMap::new();
    while seen.len() < 2 {
        let event = next_event(&mut events).await;
        seen.insert(event.instance_id.to_string(), event.health);
    }
    assert_eq!(seen["i-up"], InstanceHealth::IN_SERVICE);
    assert_eq!(seen["i-down"], InstanceHealth::FAILED_UNHEALTHY_THRESHOLD);
    assert!(errors.get() >= 2);

    // Dropping the checker stops every check: the event channel closes once all tasks are gone.
    drop(checker);
    let closed = time::timeout(Duration::from_secs(3), async {
        while events.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "check tasks outlived the checker");
}

/// Instances given at start have their first checks spread over the interval (FIRST_CHECK_SPREAD at most), then
/// each is checked every interval exactly; an instance added later is checked at once.
#[tokio::test(start_paused = true)]
async fn first_checks_spread_then_every_interval() {
    let instance = Script::new(200, ms(5));
    let scripts: Vec<_> = (1..=5).map(|n| (addr(n), &instance)).collect();
    let registered = (1..=4)
        .map(|n| (format!("i-{n}").into(), addr(n)))
        .collect();
    let t0 = Instant::now();
    let mut scene = scene(&scripts, registered);
    let rounds = starts(&mut scene, t0, 12).await;
    for n in 1..=4 {
        let first = ms(15) * u32::from(n - 1);
        assert_eq!(
            rounds[&addr(n)],
            [first, first + ms(60), first + ms(120)],
            "i-{n}"
        );
    }

    let added = Instant::now();
    scene.checker.add("i-5".into(), addr(5));
    let mut later = Vec::new();
    while later.len() < 2 {
        let (which, at) = scene.started.recv().await.unwrap();
        if which == addr(5) {
            later.push(at - added);
        }
    }
    assert_eq!(later, [ms(0), ms(60)]);
}

/// ELB-SPEC §2.1 "Timing": a slow response does not push back the next check, nor anyone else's.
#[tokio::test(start_paused = true)]
async fn a_slow_instance_delays_neither_another_nor_its_own_next_check() {
    let fast = Script::new(200, Duration::ZERO);
    let slow = Script::new(200, ms(35)); // under the 40 ms timeout: passes
    let hung = Script::new(200, Duration::from_secs(3600)); // never answers: times out
    let mut scene = scene(
        &[(addr(1), &fast), (addr(2), &slow), (addr(3), &hung)],
        Vec::new(),
    );
    let t0 = Instant::now();
    for (id, n) in [("i-fast", 1), ("i-slow", 2), ("i-hung", 3)] {
        scene.checker.add(id.into(), addr(n));
    }

    // Each verdict comes when its checks end: the hung instance's second check times out at 60 + 40 ms.
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut scene.events).await;
        verdicts.push((event.instance_id.to_string(), event.health, t0.elapsed()));
    }
    assert_eq!(
        verdicts,
        [
            ("i-fast".to_string(), InstanceHealth::IN_SERVICE, ms(0)),
            ("i-slow".to_string(), InstanceHealth::IN_SERVICE, ms(35)),
            (
                "i-hung".to_string(),
                InstanceHealth::FAILED_UNHEALTHY_THRESHOLD,
                ms(100)
            ),
        ]
    );
    // A timeout after connecting is not a connection error.
    assert_eq!(scene.errors.get(), 0);

    // Every instance's checks started on the same fixed-rate schedule.
    let rounds = starts(&mut scene, t0, 12).await;
    for n in 1..=3 {
        assert_eq!(
            rounds[&addr(n)],
            [ms(0), ms(60), ms(120), ms(180)],
            "instance {n}"
        );
    }
}
