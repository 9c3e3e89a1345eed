//! Cluster mode through etcd outages (issue 16 item 5; DESIGN.md "The state store"): real `elbe run` processes
//! with `[cluster]` on a real etcd (`tests/etcd_support`, Debian's `etcd-server`; a missing etcd fails the test,
//! saying what to install).
//!
//! - A process restarted while etcd is stopped serves its local copy of the last state, and converges once etcd
//!   is back, with no restart.
//! - Whether etcd answers is a gauge, `/status`'s `store` and one log line per change, paused or stopped.
//! - An outage longer than etcd's history (compacted past the process's revision while it was cut off) ends in a
//!   reload of everything, and convergence.
//! - The local copy is crash-safe: `kill -9` in the middle of a burst of changes leaves a whole copy.
#![cfg(feature = "cluster")]
#![allow(clippy::disallowed_methods)]

mod common;
mod etcd_support;
mod run_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Backend, Behaviour};
use etcd_support::Etcd;
use http::{Method, StatusCode};
use run_support::{cluster_file as config, register, registered, Admin, Elbe, STEP};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

fn state_dir(dir: &Path, zone: &str) -> PathBuf {
    run_support::cluster_state_dir(dir, zone)
}

/// The local copy a process of `zone` keeps, as text (empty while there is none).
fn local_copy(dir: &Path, zone: &str) -> String {
    std::fs::read_to_string(state_dir(dir, zone).join("cluster-copy.json")).unwrap_or_default()
}

/// Polls `check` every 20 ms until it holds, or fails saying `what` and `log()`.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    log: impl Fn() -> String,
    mut check: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < STEP,
            "{what} not within {STEP:?}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// `/status` of `elbe`.
async fn status(elbe: &Elbe) -> serde_json::Value {
    let reply = common::get(elbe.admin, "/status").await;
    assert_eq!(reply.status, 200);
    reply.json()
}

/// `elbe_state_store_reachable` on `/metrics`, if it is there.
async fn reachable_gauge(elbe: &Elbe) -> Option<i64> {
    let reply = common::get(elbe.admin, "/metrics").await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("elbe_state_store_reachable "))
        .and_then(|value| value.trim().parse().ok())
}

/// Whether the gauge and `/status` both say `reachable`.
async fn says_reachable(elbe: &Elbe, reachable: bool) -> bool {
    let store = status(elbe).await["store"].clone();
    assert_eq!(store["kind"], "etcd", "{store}");
    store["reachable"] == reachable && reachable_gauge(elbe).await == Some(i64::from(reachable))
}

/// The bound address of load balancer `name`'s listener on this process's node, once it listens.
async fn node(elbe: &Elbe, name: &str) -> SocketAddr {
    let started = Instant::now();
    loop {
        let status = status(elbe).await;
        let address = status["load_balancers"].as_array().and_then(|lbs| {
            let lb = lbs.iter().find(|lb| lb["name"] == name)?;
            lb["nodes"].as_array()?.iter().find_map(|node| {
                node["listeners"][0]["address"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
            })
        });
        if let Some(address) = address {
            return address;
        }
        assert!(
            started.elapsed() < STEP,
            "{name} has no node here:\n{}",
            elbe.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends requests to `node` until one more reaches `backend` (its instance may still be in its first checks).
async fn served(elbe: &Elbe, node: SocketAddr, backend: &Backend) {
    let before = backend.requests();
    eventually(
        &format!("a request through {node} to {}", backend.address),
        || elbe.log(),
        || async move {
            if TcpStream::connect(node).await.is_ok() {
                common::get(node, "/").await;
            }
            backend.requests() > before
        },
    )
    .await;
}

/// An ELB API call (a raw unsigned form POST, as `[api]` without keys takes it).
async fn elb(admin: SocketAddr, form: &str) -> (StatusCode, String) {
    Admin::connect(admin)
        .await
        .exchange(Method::POST, "/", format!("{form}&Version=2012-06-01"))
        .await
        .expect("elbe answers on its admin listener")
}

/// An ELB API write that must be made: a 503 (etcd slower than the two-second bound, as on a loaded machine)
/// is sent again; since a write that was not confirmed may still land, a retry that finds it made (`Duplicate`)
/// counts too. Anything else fails the test.
async fn confirmed(admin: SocketAddr, form: &str) {
    let started = Instant::now();
    let mut retried = false;
    loop {
        let (status, text) = elb(admin, form).await;
        if status == StatusCode::OK || (retried && text.contains("<Code>Duplicate")) {
            return;
        }
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE && started.elapsed() < STEP,
            "{form}: {status} {text}"
        );
        retried = true;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether load balancer `name` has instance `id` on `elbe`.
async fn has_instance(elbe: &Elbe, name: &str, id: &str) -> bool {
    let status = status(elbe).await;
    status["load_balancers"].as_array().is_some_and(|lbs| {
        lbs.iter().filter(|lb| lb["name"] == name).any(|lb| {
            lb["instances"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i["instance_id"] == id))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_restarted_while_etcd_is_stopped_serves_its_local_copy_then_converges_when_etcd_is_back(
) {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (config_a, config_b) = (
        config(dir.path(), &etcd.endpoint(), "127.84.1", "zone-a"),
        config(dir.path(), &etcd.endpoint(), "127.84.1", "zone-b"),
    );
    let a = Elbe::start(&config_a).await;
    let b = Elbe::start(&config_b).await;
    confirmed(
        a.admin,
        "Action=CreateLoadBalancer&LoadBalancerName=made\
         &Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort=8080\
         &Listeners.member.1.InstancePort=8000\
         &AvailabilityZones.member.1=zone-a&AvailabilityZones.member.2=zone-b",
    )
    .await;
    let first = Backend::start(Behaviour::Echo).await;
    registered(a.admin, "made", "i-first", "zone-a", first.address).await;
    let made_a = node(&a, "made").await;
    served(&a, made_a, &first).await;
    let path = dir.path();
    eventually(
        "the local copy holding i-first",
        || a.log(),
        || async move { local_copy(path, "zone-a").contains("\"i-first\"") },
    )
    .await;

    // etcd stops (killed, its data directory kept); A is killed and started again while it is down.
    etcd.kill();
    a.kill_9().await;
    let a = Elbe::start(&config_a).await;
    let log = a.log();
    let line = log
        .lines()
        .find(|line| line.contains("serving from the local copy of revision"))
        .unwrap_or_else(|| panic!("no line says where the state comes from:\n{log}"));
    println!("{line}");
    let again = node(&a, "made").await;
    assert_eq!(again, made_a, "the same node as before the restart");
    served(&a, again, &first).await;
    assert_eq!(status_store(&a).await["reachable"], false);
    let (status, text) = elb(
        a.admin,
        "Action=AddTags&LoadBalancerNames.member.1=made&Tags.member.1.Key=k&Tags.member.1.Value=v",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a write while etcd is down: {text}"
    );

    // etcd again on the same data directory and ports: a write on B reaches the restarted A, no restart.
    etcd.restart();
    let second = Backend::start(Behaviour::Echo).await;
    let (admin_b, address) = (b.admin, second.address);
    eventually(
        "B registering i-second",
        || b.log(),
        || async move {
            register(admin_b, "made", "i-second", "zone-a", address)
                .await
                .is_success()
        },
    )
    .await;
    let took = eventually(
        "i-second on the restarted A",
        || a.log(),
        || has_instance(&a, "made", "i-second"),
    )
    .await;
    println!(
        "after etcd came back, B's write reached the restarted A in {took:?} (from B's answer)"
    );
    served(&a, again, &second).await;
    assert_eq!(status_store(&a).await["reachable"], true);
}

async fn status_store(elbe: &Elbe) -> serde_json::Value {
    status(elbe).await["store"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauge_status_and_log_say_when_etcd_stops_answering_and_when_it_answers_again_once_each(
) {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let a = Elbe::start(&config(dir.path(), &etcd.endpoint(), "127.84.2", "zone-a")).await;
    let backend = Backend::start(Behaviour::Echo).await;
    registered(a.admin, "web", "i-1", "zone-a", backend.address).await;
    let healthz = |a: SocketAddr| async move { common::get(a, "/healthz").await.status };
    let admin = a.admin;
    eventually(
        "/healthz 200",
        || a.log(),
        || async move { healthz(admin).await == 200 },
    )
    .await;
    assert!(says_reachable(&a, true).await, "{}", status_store(&a).await);

    // Paused (SIGSTOP: connections open, no answer), then stopped (connections refused).
    for round in 0..2 {
        if round == 0 {
            etcd.pause();
        } else {
            etcd.kill();
        }
        let took = eventually("unreachable", || a.log(), || says_reachable(&a, false)).await;
        println!("round {round}: etcd unreachable noticed in {took:?}");
        assert_eq!(
            healthz(a.admin).await,
            200,
            "/healthz stays 200 while instances are healthy"
        );
        if round == 0 {
            etcd.resume();
        } else {
            etcd.restart();
        }
        let took = eventually("reachable again", || a.log(), || says_reachable(&a, true)).await;
        println!("round {round}: etcd reachable again noticed in {took:?}");
    }
    let log = a.log();
    assert_eq!(log.matches("state store unreachable").count(), 2, "{log}");
    assert_eq!(
        log.matches("state store reachable again").count(),
        2,
        "{log}"
    );
    let metrics =
        String::from_utf8_lossy(&common::get(a.admin, "/metrics").await.body).into_owned();
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("elbe_state_store_failed_calls_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no failed-calls counter:\n{metrics}"));
    assert!(failed >= 2, "{failed} failed calls counted");
}

/// A TCP forwarder between one process and etcd that the test can cut (every connection closed, new ones
/// closed as soon as accepted) and heal: a network partition of that process alone, while the others and the
/// test still reach etcd.
struct Partition {
    address: SocketAddr,
    open: watch::Sender<bool>,
}

impl Partition {
    async fn start(to: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (open, watching) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut open = watching.clone();
                if !*open.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = open.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Partition { address, open }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn heal(&self) {
        self.open.send_replace(true);
    }
}

/// How to be cut off for longer than etcd's history: A reaches etcd through a [`Partition`], B directly. With A
/// cut off (and knowing it: its `/status` says unreachable), B registers an instance and creates a policy, then
/// etcd's history is compacted up to now (`etcdctl compact`'s request, physical). Healed, A's watch asks to
/// resume after its last revision, which etcd no longer has: etcd answers "compacted", A reloads everything, and
/// routes to B's instance through its own node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_etcd_compacted_past_a_cut_off_process_it_reloads_everything_and_converges() {
    let etcd = Etcd::start();
    let partition = Partition::start(etcd.address()).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Elbe::start(&config(
        dir.path(),
        &partition.endpoint(),
        "127.84.3",
        "zone-a",
    ))
    .await;
    let b = Elbe::start(&config(dir.path(), &etcd.endpoint(), "127.84.3", "zone-b")).await;
    let node_a = node(&a, "web").await;

    partition.cut();
    eventually("A cut off", || a.log(), || says_reachable(&a, false)).await;
    let backend = Backend::start(Behaviour::Echo).await;
    registered(b.admin, "web", "i-late", "zone-a", backend.address).await;
    confirmed(
        b.admin,
        "Action=CreateLBCookieStickinessPolicy&LoadBalancerName=web&PolicyName=late",
    )
    .await;
    let compacted = etcd.compact();
    assert!(!has_instance(&a, "web", "i-late").await, "A was cut off");

    partition.heal();
    let took = eventually(
        "i-late on A",
        || a.log(),
        || has_instance(&a, "web", "i-late"),
    )
    .await;
    println!("etcd compacted to {compacted}; A converged {took:?} after the partition healed");
    let log = a.log();
    assert!(log.contains("etcd compacted its history"), "{log}");
    assert!(log.contains("state store reloaded"), "{log}");
    served(&a, node_a, &backend).await;
    let (_, policies) = elb(
        a.admin,
        "Action=DescribeLoadBalancerPolicies&LoadBalancerName=web",
    )
    .await;
    assert!(
        policies.contains("<PolicyName>late</PolicyName>"),
        "{policies}"
    );
    let store = status_store(&a).await;
    assert!(store["revision"].as_u64().unwrap() >= compacted, "{store}");
}

/// The policies `p-N` a DescribeLoadBalancerPolicies answer names, by N, sorted.
fn policy_numbers(answer: &str) -> Vec<u32> {
    let mut numbers: Vec<u32> = answer
        .split("<PolicyName>p-")
        .skip(1)
        .filter_map(|rest| rest.split('<').next()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

/// The policies `p-N` a copy of the state holds, by N, sorted; panics unless the copy is whole JSON.
fn copy_numbers(copy: &str) -> (u64, Vec<u32>) {
    let copy: serde_json::Value =
        serde_json::from_str(copy).unwrap_or_else(|e| panic!("not a whole copy ({e}): {copy}"));
    let mut numbers: Vec<u32> = copy["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|record| record["name"].as_str()?.strip_prefix("p-")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    (copy["revision"].as_u64().expect("a revision"), numbers)
}

/// `0..n`: one state of a burst that wrote `p-0`, `p-1`, ... in order.
fn prefix_of_burst(n: usize) -> Vec<u32> {
    (0..n as u32).collect()
}

/// kill -9 while the copy is rewritten at every change of a burst (three times: a quarter, half and three
/// quarters of the way through), then a start with etcd down: each copy left is whole JSON and one state of the
/// burst (policies `p-0` to `p-(k-1)`, none missing between, at least as many as seen in it before the kill),
/// and the last one is what the process serves when it starts with etcd down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_changes_leaves_a_whole_local_copy_to_start_from() {
    const BURST: u32 = 240;
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let config_a = config(dir.path(), &etcd.endpoint(), "127.84.4", "zone-a");
    let b = Elbe::start(&config(dir.path(), &etcd.endpoint(), "127.84.4", "zone-b")).await;
    // One at a time, each confirmed before the next: the burst's states are p-0..p-k in order.
    let writer = tokio::spawn({
        let admin = b.admin;
        async move {
            for n in 0..BURST {
                let form = format!(
                    "Action=CreateLBCookieStickinessPolicy&LoadBalancerName=web&PolicyName=p-{n}"
                );
                confirmed(admin, &form).await;
            }
        }
    });
    let path = dir.path();
    for quarter in 1..=3 {
        let a = Elbe::start(&config_a).await;
        let mut before = 0;
        eventually(
            &format!("{quarter} quarters of the burst in A's copy"),
            || a.log(),
            || {
                before = local_copy(path, "zone-a").matches("\"name\":\"p-").count();
                let seen = before;
                async move { seen >= BURST as usize * quarter / 4 }
            },
        )
        .await;
        a.kill_9().await;
        let (revision, numbers) = copy_numbers(&local_copy(path, "zone-a"));
        println!(
            "kill {quarter}: {before} policies seen in the copy; left at revision {revision} with {}",
            numbers.len()
        );
        assert!(numbers.len() >= before, "{} < {before}", numbers.len());
        assert_eq!(
            numbers,
            prefix_of_burst(numbers.len()),
            "one state of the burst, none missing"
        );
    }
    writer.await.unwrap();
    etcd.kill();

    let (revision, kept) = copy_numbers(&local_copy(path, "zone-a"));
    let a = Elbe::start(&config_a).await;
    assert!(
        a.log().contains(&format!(
            "serving from the local copy of revision {revision}"
        )),
        "{}",
        a.log()
    );
    let (status, answer) = elb(
        a.admin,
        "Action=DescribeLoadBalancerPolicies&LoadBalancerName=web",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(policy_numbers(&answer), kept, "A serves the copy it left");
}

/// With etcd down and no usable copy the start fails as before, saying why etcd and why the copy could not
/// serve: first with no copy at all, then with a copy made under another prefix (never used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_and_no_usable_local_copy_fails_the_start_saying_both() {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let config_a = config(dir.path(), &etcd.endpoint(), "127.84.5", "zone-a");
    etcd.kill();
    let Err(why) = Elbe::try_start(&config_a).await else {
        panic!("elbe started with its etcd down and no copy");
    };
    println!("no copy: {why}");
    assert!(
        why.contains("[cluster]: cannot load the cluster's state from etcd at")
            && why.contains(&etcd.endpoint()),
        "{why}"
    );
    assert!(
        why.contains("and there is no local copy of the last state to start from"),
        "{why}"
    );

    etcd.restart();
    let a = Elbe::start(&config_a).await;
    let path = dir.path();
    eventually(
        "a local copy",
        || a.log(),
        || async move { !local_copy(path, "zone-a").is_empty() },
    )
    .await;
    a.kill_9().await;
    etcd.kill();
    let text = std::fs::read_to_string(&config_a)
        .unwrap()
        .replace("[cluster]\n", "[cluster]\nprefix = \"/other\"\n");
    std::fs::write(&config_a, text).unwrap();
    let Err(why) = Elbe::try_start(&config_a).await else {
        panic!("elbe started from another prefix's copy");
    };
    println!("another prefix's copy: {why}");
    assert!(
        why.contains("under prefix \"/elbe\", not this process's: not used"),
        "{why}"
    );
}
