//! The floating-IP pair (DESIGN.md "A floating-IP pair", issue 16 item 6) fails over, with real keepalived.
//!
//! Three network namespaces are the machines: `a` (198.18.0.1) and `b` (198.18.0.2), each with an instance on
//! its loopback, an elbe whose node listens on the floating IP 198.18.0.100 with `freebind`, and keepalived
//! running `examples/keepalived/` (templated with these addresses and paths); and `c` (198.18.0.3), the client,
//! whose bridge joins the three. 198.18.0.0/15 is RFC 2544's benchmarking range: no real network uses it. The
//! client loops requests to the VIP; each answer names the machine whose instance made it. Shown: the VIP serves
//! through the master; stopping the master's instance (its `/healthz` fails) and `kill -9` of its elbe each move
//! the VIP to the standby, which answers within 10 s; the failed requests of each failover all fall inside that
//! window, at most one per client interval of it, and are printed.

mod failover_support;
mod netns;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use failover_support::{get, network, Machine};
use netns::Netns;
use tokio::time::Instant;

const VIP: &str = "198.18.0.100";
/// Where the example files say the pair lives, and where the test puts it (the examples must keep these).
const EXAMPLE_MASTER: &str = "10.0.0.11";
const EXAMPLE_BACKUP: &str = "10.0.0.12";
const EXAMPLE_VIP: &str = "10.0.0.100";
/// What the standby must do within, after the master fails (the bound).
const FAILOVER: Duration = Duration::from_secs(10);
/// The client starts a request this often.
const PACE: Duration = Duration::from_millis(50);

/// One client request's outcome: which machine's instance answered, or why it failed.
type Outcome = Result<String, String>;

/// The client in namespace `c`: a request to the VIP every [`PACE`] until `stop`, each outcome sent with the time
/// it ended.
fn client(
    c: &Netns,
    stop: Arc<AtomicBool>,
) -> (
    mpsc::Receiver<(Instant, Outcome)>,
    std::thread::JoinHandle<()>,
) {
    let (send, receive) = mpsc::channel();
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let handle = c.thread(move || {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let outcome = get(vip, "/").map(|(_, body)| body);
            if send.send((Instant::now(), outcome)).is_err() {
                return;
            }
            // Pacing, not waiting for something: one request per PACE, so failures count time, not retries.
            if let Some(rest) = PACE.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    });
    (receive, handle)
}

/// What the client saw from `since` until `machine` answered: the failures, and when it answered.
struct Failover {
    failed: Vec<String>,
    took: Duration,
}

/// Reads the client's outcomes until `machine` answers (within `within` of `since`), then checks that the next
/// `settle` requests all succeed through it.
async fn until_served_by(
    outcomes: &mpsc::Receiver<(Instant, Outcome)>,
    machine: &str,
    since: Instant,
    within: Duration,
    pair: &[&Machine],
) -> Failover {
    let mut failed = Vec::new();
    let took = loop {
        let (at, outcome) = next(outcomes, since + within, pair).await;
        match outcome {
            Ok(answer) if answer == machine => break at - since,
            Ok(_) => {}
            Err(why) => failed.push(why),
        }
    };
    for n in 0..20 {
        let (_, outcome) = next(outcomes, Instant::now() + FAILOVER, pair).await;
        assert_eq!(
            outcome.as_deref(),
            Ok(machine),
            "request {n} after {machine} took over{}",
            dump(pair)
        );
    }
    Failover { failed, took }
}

/// The client's next outcome, polled until `deadline`.
async fn next(
    outcomes: &mpsc::Receiver<(Instant, Outcome)>,
    deadline: Instant,
    pair: &[&Machine],
) -> (Instant, Outcome) {
    loop {
        match outcomes.try_recv() {
            Ok(seen) => {
                assert!(
                    seen.0 <= deadline,
                    "no answer from the expected machine in time{}",
                    dump(pair)
                );
                return seen;
            }
            Err(mpsc::TryRecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "the client stopped answering{}",
                    dump(pair)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                panic!("the client thread ended{}", dump(pair))
            }
        }
    }
}

/// Polls `check` every 50 ms until it holds or `within` passes.
async fn eventually(
    what: &str,
    within: Duration,
    pair: &[&Machine],
    mut check: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}{}",
            dump(pair)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dump(pair: &[&Machine]) -> String {
    let states: Vec<String> = pair
        .iter()
        .map(|m| format!("{}: {:?}", m.name, m.vrrp_state()))
        .collect();
    let logs: Vec<String> = pair.iter().map(|m| m.logs()).collect();
    format!("\nvrrp states {states:?}\n{}", logs.join("\n"))
}

/// The failures of one failover are bounded by its window: at most one per client interval, plus the one in
/// flight when it began.
fn assert_bounded(what: &str, failover: &Failover) {
    let bound = (failover.took.as_secs_f64() / PACE.as_secs_f64()).ceil() as usize + 1;
    assert!(
        failover.took <= FAILOVER,
        "{what}: the standby answered after {:?}",
        failover.took
    );
    assert!(
        failover.failed.len() <= bound,
        "{what}: {} failed requests in a {:?} window (at most {bound}): {:?}",
        failover.failed.len(),
        failover.took,
        failover.failed
    );
    println!(
        "{what}: the standby answered {:.2} s after; {} client requests failed: {}",
        failover.took.as_secs_f64(),
        failover.failed.len(),
        reasons(&failover.failed)
    );
}

/// "27 x 503, 2 x connect: connection timed out": each reason once, with how often, in order of first sight.
fn reasons(failed: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for why in failed {
        match counted.iter_mut().find(|(seen, _)| *seen == why.as_str()) {
            Some((_, n)) => *n += 1,
            None => counted.push((why, 1)),
        }
    }
    let parts: Vec<String> = counted
        .iter()
        .map(|(why, n)| format!("{n} x {}", why.trim()))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn preflight() {
    netns::require_root();
    for (program, package) in [
        ("ip", "iproute2"),
        ("keepalived", "keepalived"),
        ("curl", "curl"),
    ] {
        assert!(
            netns::find(program).is_some(),
            "{program} is missing: apt-get install {package} (./test.sh installs it)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_the_floating_ip_when_the_master_cannot_serve() {
    preflight();
    // keepalived runs these scripts as root only from folders no one else may write: not /tmp.
    let dir = tempfile::Builder::new()
        .prefix("failover-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let (mut a, mut b, c) = network(&format!("elbe-vip{}", std::process::id()), dir.path());

    for machine in [&mut a, &mut b] {
        machine.start_instance();
        machine.start_elbe();
    }
    for machine in [&a, &b] {
        eventually("/healthz 200", Duration::from_secs(20), &[&a, &b], || {
            machine.healthz().is_ok()
        })
        .await;
    }
    // The standby listens on the VIP before it holds it: freebind.
    assert!(!b.ns.holds(VIP) && !a.ns.holds(VIP));
    a.start_keepalived("keepalived-master.conf", b.address);
    b.start_keepalived("keepalived-backup.conf", a.address);
    eventually(
        "a MASTER, b BACKUP",
        Duration::from_secs(20),
        &[&a, &b],
        || a.vrrp_state() == "MASTER" && b.vrrp_state() == "BACKUP",
    )
    .await;
    assert!(
        a.ns.holds(VIP) && !b.ns.holds(VIP),
        "the master holds the VIP{}",
        dump(&[&a, &b])
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, client) = client(&c, stop.clone());
    until_served_by(
        &outcomes,
        "a",
        Instant::now(),
        Duration::from_secs(20),
        &[&a, &b],
    )
    .await;

    // 1. The master's instance stops: its elbe answers 503, its /healthz fails, keepalived gives up the VIP.
    let since = Instant::now();
    a.stop_instance();
    let failover = until_served_by(&outcomes, "b", since, FAILOVER, &[&a, &b]).await;
    assert_bounded("instance stopped on the master", &failover);
    assert_eq!(
        (a.vrrp_state(), b.vrrp_state()),
        ("FAULT".to_owned(), "MASTER".to_owned())
    );
    assert!(b.ns.holds(VIP) && !a.ns.holds(VIP));
    let reason = a.healthz().unwrap_err();
    assert!(
        reason.contains("503") && reason.contains("no InService instance"),
        "{reason}"
    );

    // The instance comes back: the master is healthy again and takes the VIP back (it has the higher priority).
    let since = Instant::now();
    a.start_instance();
    let back = until_served_by(&outcomes, "a", since, Duration::from_secs(20), &[&a, &b]).await;
    println!(
        "the master back: it answered {:.2} s after its instance returned; {} client requests failed: {}",
        back.took.as_secs_f64(),
        back.failed.len(),
        reasons(&back.failed)
    );

    // 2. kill -9 of the master's elbe: nothing answers /healthz there, keepalived gives up the VIP.
    let since = Instant::now();
    if let Some(elbe) = a.elbe.as_mut() {
        elbe.kill().unwrap();
        elbe.wait().unwrap();
    }
    let failover = until_served_by(&outcomes, "b", since, FAILOVER, &[&a, &b]).await;
    assert_bounded("kill -9 of the master's elbe", &failover);
    assert_eq!(
        (a.vrrp_state(), b.vrrp_state()),
        ("FAULT".to_owned(), "MASTER".to_owned())
    );

    stop.store(true, Ordering::Relaxed);
    drop(outcomes);
    client.join().unwrap();
}

/// The pair's elbe file is valid as shipped, and its node listens on the floating IP with freebind (what lets the
/// backup serve the moment the address arrives). Needs no root: `elbe check` only reads it.
#[test]
fn the_example_elbe_file_listens_on_the_floating_ip_with_freebind() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keepalived/elbe.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_elbe"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("node = \"{EXAMPLE_VIP}\"")));
    assert!(text.contains("freebind = true"));
    assert!(
        text.contains("listen = \"127.0.0.1:9900\""),
        "where elbe-healthz.sh looks"
    );
}
