//! Cluster membership and health per node end to end (issue 16 items 3 and 4; DESIGN.md "The state store"): real
//! `elbe run` processes with `[cluster]` on one real etcd (`tests/etcd_support`; a missing etcd fails the test,
//! saying what to install), each running its own zone's node on its own 127.x address and its own DNS responder,
//! asked with `dig` (dnsutils). A member's nodes are in everyone's answers while its lease lives: `kill -9` takes
//! them out within the lease TTL, SIGTERM at once (then it serves on for `dns_drain` and exits by itself), a new
//! process adds its own. DescribeInstanceHealth says the worst state among live members, naming the member, and
//! the health views in etcd are written on changes only.
#![cfg(feature = "cluster")]
#![allow(clippy::disallowed_methods)]

mod common;
mod etcd_support;
mod run_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Behaviour};
use etcd_support::Etcd;
use http::{Method, Request};
use http_body_util::Full;
use run_support::{Admin, Elbe, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What differs between the tests' configurations.
struct Settings {
    lease_ttl: Duration,
    dns_drain: &'static str,
    /// Health checks: interval and healthy threshold.
    interval: &'static str,
    healthy: u32,
    /// The health check's target.
    target: &'static str,
    /// The one instance, `i-1` in zone-a, when there is one.
    instance: Option<SocketAddr>,
}

const SETTINGS: Settings = Settings {
    lease_ttl: Duration::from_secs(2),
    dns_drain: "4s",
    interval: "500ms",
    healthy: 2,
    target: "HTTP:8000/",
    instance: None,
};

/// Process `me`'s file (`me` is a, b, c or d): load balancer "web" with zones zone-a to zone-d, whose nodes are
/// `{net}.1` to `{net}.4`, listener on port 0; this process is node `lb-{me}` and runs `zone-{me}`, its DNS
/// responder on a free port.
fn config(dir: &Path, etcd: &Etcd, net: &str, me: char, settings: &Settings) -> PathBuf {
    let zones: String = ('a'..='d')
        .zip(1..)
        .map(|(zone, host)| {
            format!("[[load_balancer.availability_zone]]\nname = \"zone-{zone}\"\nnode = \"{net}.{host}\"\n")
        })
        .collect();
    let instance = settings.instance.map_or(String::new(), |address| {
        format!("[[load_balancer.instance]]\nid = \"i-1\"\nzone = \"zone-a\"\naddress = \"{address}\"\n")
    });
    let text = format!(
        r#"state_dir = "{state}"
[cluster]
etcd = ["{endpoint}"]
node_id = "lb-{me}"
zones = ["zone-{me}"]
lease_ttl = "{ttl}s"
dns_drain = "{drain}"
[dns]
listen = "127.0.0.1:0"
domain = "elb.localhost"
[admin]
listen = "127.0.0.1:0"
[limits]
shutdown_grace = "1s"
[[load_balancer]]
name = "web"
[load_balancer.health_check]
target = "{target}"
interval = "{interval}"
timeout = "400ms"
healthy_threshold = {healthy}
unhealthy_threshold = 2
{zones}
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 0
instance_protocol = "HTTP"
instance_port = 8000
{instance}"#,
        state = dir.join(format!("state-{me}")).display(),
        endpoint = etcd.endpoint(),
        ttl = settings.lease_ttl.as_secs(),
        drain = settings.dns_drain,
        interval = settings.interval,
        healthy = settings.healthy,
        target = settings.target,
    );
    let path = dir.join(format!("elbe-{me}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(dir: &Path, etcd: &Etcd, net: &str, me: char, settings: &Settings) -> Elbe {
    Elbe::start(&config(dir, etcd, net, me, settings)).await
}

impl Elbe {
    async fn status(&self) -> serde_json::Value {
        let reply = common::get(self.admin, "/status").await;
        assert_eq!(reply.status, 200);
        reply.json()
    }

    /// The DNS responder's address and the load balancer's name, from `/status`.
    async fn dns(&self) -> (SocketAddr, String) {
        let status = self.status().await;
        let address = status["dns"]["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no DNS address in {status}"));
        let name = status["load_balancers"][0]["dns_name"]
            .as_str()
            .unwrap_or_else(|| panic!("no DNS name in {status}"))
            .to_owned();
        (address, name)
    }

    /// Every node `all.<name>` answers here now, sorted.
    async fn answers(&self) -> Vec<String> {
        let (server, name) = self.dns().await;
        let output = tokio::process::Command::new("dig")
            .arg(format!("@{}", server.ip()))
            .args([
                "-p",
                &server.port().to_string(),
                "+tries=1",
                "+time=2",
                "+short",
            ])
            .arg(format!("all.{name}"))
            .arg("A")
            .output()
            .await
            .expect("dig is installed (Debian's dnsutils; ./test.sh installs it)");
        assert!(output.status.success(), "dig failed: {output:?}");
        let mut nodes: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        nodes.sort();
        nodes
    }

    /// Polls this process's answers until they are `want`; how long that took.
    async fn wait_answers(&self, want: &[String], within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let now = self.answers().await;
            if now == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{} answers {now:?}, not {want:?}, after {within:?}:\n{}",
                self.admin,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The address of this process's own node listener.
    async fn node(&self) -> SocketAddr {
        let deadline = Instant::now() + STEP;
        loop {
            let status = self.status().await;
            let bound = status["load_balancers"][0]["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|node| node["listeners"][0]["address"].as_str()?.parse().ok());
            if let Some(bound) = bound {
                return bound;
            }
            assert!(Instant::now() < deadline, "no node bound:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `/status`'s members: node id and whether it is this process.
    async fn members(&self) -> Vec<(String, bool)> {
        let status = self.status().await;
        status["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["node_id"].as_str().unwrap_or_default().to_owned(),
                    m["this"] == true,
                )
            })
            .collect()
    }

    /// DescribeInstanceHealth for `i-1` through this process (a raw Query POST): State and Description.
    async fn describe(&self) -> (String, String) {
        let body = "Action=DescribeInstanceHealth&LoadBalancerName=web&Version=2012-06-01";
        let (status, xml) = Admin::connect(self.admin)
            .await
            .exchange(Method::POST, "/", body.into())
            .await
            .expect("elbe answers DescribeInstanceHealth");
        assert_eq!(status, 200, "{xml}");
        (element(&xml, "State"), element(&xml, "Description"))
    }

    /// Polls DescribeInstanceHealth until `wanted` holds; how long that took.
    async fn wait_describe(&self, what: &str, wanted: impl Fn(&str, &str) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            let (state, description) = self.describe().await;
            if wanted(&state, &description) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < STEP,
                "DescribeInstanceHealth never said {what}: {state} {description:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, as systemd's stop sends it.
    fn terminate(&self) {
        let pid = self.child.id().expect("elbe is running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
}

/// The text of the first `<name>` element.
fn element(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
        .map_or_else(
            || panic!("no <{name}> in {xml}"),
            |(text, _)| text.to_owned(),
        )
}

fn nodes(net: &str, hosts: &[u8]) -> Vec<String> {
    let mut nodes: Vec<String> = hosts.iter().map(|h| format!("{net}.{h}")).collect();
    nodes.sort();
    nodes
}

/// Slack over the lease TTL for a dead member's keys to go: etcd checks expiries every 500 ms, and the machine
/// is busy.
const SLACK: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_answers_the_live_members_nodes_a_dead_one_leaves_within_the_lease_ttl_and_a_new_one_joins(
) {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let net = "127.84.1";
    let mut members = Vec::new();
    for me in ['a', 'b', 'c'] {
        members.push(start(dir.path(), &etcd, net, me, &SETTINGS).await);
    }
    let three = nodes(net, &[1, 2, 3]);
    for member in &members {
        member.wait_answers(&three, STEP).await;
    }
    assert_eq!(
        members[0].members().await,
        [
            ("lb-a".to_owned(), true),
            ("lb-b".to_owned(), false),
            ("lb-c".to_owned(), false)
        ]
    );

    let c = members.pop().unwrap();
    c.kill_9().await;
    let two = nodes(net, &[1, 2]);
    let within = SETTINGS.lease_ttl + SLACK;
    let took = members[0].wait_answers(&two, within).await;
    members[1].wait_answers(&two, within).await;
    println!(
        "kill -9 of lb-c: its node left the others' answers after {took:?} (lease TTL {:?})",
        SETTINGS.lease_ttl
    );

    let d = start(dir.path(), &etcd, net, 'd', &SETTINGS).await;
    let joined = nodes(net, &[1, 2, 4]);
    let started = Instant::now();
    for member in [&members[0], &members[1], &d] {
        member.wait_answers(&joined, STEP).await;
    }
    println!(
        "lb-d joined everyone's answers {:?} after it started",
        started.elapsed()
    );
    let listed = members[0].members().await;
    assert_eq!(
        listed,
        [
            ("lb-a".to_owned(), true),
            ("lb-b".to_owned(), false),
            ("lb-d".to_owned(), false)
        ],
        "{}",
        members[0].status().await
    );
    let status = d.status().await;
    let own = &status["members"][0];
    assert_eq!(own["node_id"], "lb-d");
    assert_eq!(own["zones"], serde_json::json!(["zone-d"]));
    assert_eq!(own["nodes"][0]["address"], format!("{net}.4"));
    assert_eq!(own["nodes"][0]["load_balancer"], "web");
}

/// A request through `node` on a fresh connection: its status, or `None` when the node does not accept.
async fn try_get(node: SocketAddr) -> Option<u16> {
    TcpStream::connect(node).await.ok()?;
    Some(common::get(node, "/").await.status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_takes_a_members_node_out_of_every_answer_at_once_then_it_serves_for_dns_drain_and_exits(
) {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let net = "127.84.2";
    let backend = Backend::start(Behaviour::Echo).await;
    // A long lease: leaving at once is told apart from expiring.
    let settings = Settings {
        lease_ttl: Duration::from_secs(10),
        instance: Some(backend.address),
        ..SETTINGS
    };
    let a = start(dir.path(), &etcd, net, 'a', &settings).await;
    let mut b = start(dir.path(), &etcd, net, 'b', &settings).await;
    let both = nodes(net, &[1, 2]);
    a.wait_answers(&both, STEP).await;
    b.wait_answers(&both, STEP).await;
    let node_b = b.node().await;
    let deadline = Instant::now() + STEP;
    while try_get(node_b).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "B's node never served:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    b.terminate();
    let signalled = Instant::now();
    let only_a = nodes(net, &[1]);
    let took = a.wait_answers(&only_a, Duration::from_secs(3)).await;
    println!("SIGTERM of lb-b: its node left A's answers after {took:?} (lease TTL 10 s)");
    b.wait_answers(&only_a, Duration::from_secs(3)).await;
    // During dns_drain B still serves through its node.
    let (mut served, mut failed) = (0, 0);
    while signalled.elapsed() < Duration::from_secs(3) {
        match try_get(node_b).await {
            Some(200) => served += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("during dns_drain: {served} requests through B's node served, {failed} failed");
    assert!(
        served > 0 && failed == 0,
        "{served} served, {failed} failed:\n{}",
        b.log()
    );

    let exited = tokio::time::timeout(STEP, b.child.wait())
        .await
        .expect("B exits by itself after dns_drain")
        .unwrap();
    assert!(exited.success(), "{exited}:\n{}", b.log());
    let ran = signalled.elapsed();
    println!("B exited {ran:?} after SIGTERM (dns_drain 4 s, shutdown_grace 1 s)");
    assert!(
        ran >= Duration::from_secs(4),
        "B left before dns_drain was over: {ran:?}"
    );
    let log = b.log();
    for phase in [
        "lease revoked",
        "serving for dns_drain",
        "dns_drain over",
        "shutting down",
    ] {
        assert!(log.contains(phase), "no {phase:?} in B's log:\n{log}");
    }
}

/// The mod revisions of every health view in etcd, by key (through etcd's JSON gateway).
async fn health_revisions(etcd: &Etcd) -> BTreeMap<String, u64> {
    let b64 = |bytes: &[u8]| data_encoding::BASE64.encode(bytes);
    let prefix = b"/elbe/health/";
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = serde_json::json!({"key": b64(prefix), "range_end": b64(&end)});
    let request = Request::post("/v3/kv/range")
        .header("host", "etcd")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let reply = common::request(etcd.address(), request).await;
    assert_eq!(reply.status, 200, "etcd's range answer");
    let json = reply.json();
    json["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let key = data_encoding::BASE64
                .decode(kv["key"].as_str().unwrap_or_default().as_bytes())
                .unwrap();
            let revision = kv["mod_revision"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            (String::from_utf8_lossy(&key).into_owned(), revision)
        })
        .collect()
}

/// An instance whose health checks pass (200) or fail (503) as the test says, counting them.
struct Instance {
    address: SocketAddr,
    failing: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
}

impl Instance {
    async fn start() -> Instance {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicUsize::new(0));
        let (fail, count) = (failing.clone(), checks.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (fail, count) = (fail.clone(), count.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let status = if fail.load(Ordering::SeqCst) {
                        "503 Service Unavailable"
                    } else {
                        "200 OK"
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Instance {
            address,
            failing,
            checks,
        }
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

/// How two members come to disagree with nothing but real checks: the instance fails and comes back; a member
/// that saw it fail takes it back only after HealthyThreshold passing checks (10 x 500 ms here), while one that
/// joins meanwhile takes the newly seen instance in at its first pass (ELB-SPEC §2.1). A member that cannot reach
/// the instance at all (its file checks a closed port: a partition between that node and the instance) says
/// OutOfService until it dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_instance_health_is_the_worst_state_among_live_members_and_views_are_written_on_changes_only(
) {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let net = "127.84.3";
    let instance = Instance::start().await;
    let settings = Settings {
        healthy: 10,
        instance: Some(instance.address),
        ..SETTINGS
    };
    let a = start(dir.path(), &etcd, net, 'a', &settings).await;
    a.wait_describe("InService", |state, _| state == "InService")
        .await;
    instance.fail(true);
    a.wait_describe("OutOfService in A's own words", |state, description| {
        state == "OutOfService"
            && description == "Instance has failed at least the UnhealthyThreshold number of health checks consecutively."
    })
    .await;
    instance.fail(false);
    let b = start(dir.path(), &etcd, net, 'b', &settings).await;
    let naming_a = |state: &str, description: &str| {
        state == "OutOfService" && description.ends_with("(node lb-a).")
    };
    b.wait_describe("OutOfService naming lb-a", naming_a).await;
    let (_, description) = b.describe().await;
    println!("through lb-b while lb-a disagrees: {description:?}");
    let status = b.status().await;
    let reported = &status["load_balancers"][0]["instances"][0];
    assert_eq!(reported["state"], "OutOfService", "{reported}");
    assert_eq!(
        reported["views"],
        serde_json::json!({"lb-a": "OutOfService", "lb-b": "InService"}),
        "{reported}"
    );
    assert_eq!(reported["member"], "lb-a");
    let took = b
        .wait_describe("InService once both agree", |state, _| state == "InService")
        .await;
    println!("lb-b reported InService {took:?} after it first named lb-a");
    let cli = common::aws::aws_at(
        &format!("http://{}/", a.admin),
        "AKIDANY",
        "any-secret",
        &["describe-instance-health", "--load-balancer-name", "web"],
    )
    .await;
    assert!(cli.success, "aws: {}", cli.stderr);
    let states = serde_json::from_str::<serde_json::Value>(&cli.stdout).unwrap();
    assert_eq!(
        states["InstanceStates"][0]["State"], "InService",
        "{states}"
    );

    // Nothing changes now: over several check intervals (the instance counts them), no view is written again.
    let before = health_revisions(&etcd).await;
    assert_eq!(before.len(), 2, "one view per member: {before:?}");
    let checks = instance.checks();
    let started = Instant::now();
    while instance.checks() < checks + 12 {
        assert!(started.elapsed() < STEP, "the checks stopped");
        assert_eq!(
            health_revisions(&etcd).await,
            before,
            "a view was written again with no change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health_revisions(&etcd).await, before);
    println!(
        "{} health checks over {:?}: no health view written again",
        instance.checks() - checks,
        started.elapsed()
    );

    let unreachable = Settings {
        target: "TCP:9",
        ..settings
    };
    let c = start(dir.path(), &etcd, net, 'c', &unreachable).await;
    a.wait_describe("OutOfService naming lb-c", |state, description| {
        state == "OutOfService" && description.ends_with("(node lb-c).")
    })
    .await;
    let status = a.status().await;
    assert_eq!(
        status["load_balancers"][0]["instances"][0]["views"],
        serde_json::json!({"lb-a": "InService", "lb-b": "InService", "lb-c": "OutOfService"})
    );
    c.kill_9().await;
    let took = a
        .wait_describe("InService after lb-c died", |state, _| state == "InService")
        .await;
    println!("kill -9 of lb-c (OutOfService view): InService again after {took:?} (lease TTL 2 s)");
    assert!(took < SETTINGS.lease_ttl + SLACK, "{took:?}");
    let status = a.status().await;
    assert_eq!(
        status["load_balancers"][0]["instances"][0]["views"],
        serde_json::json!({"lb-a": "InService", "lb-b": "InService"})
    );
}

/// etcd stopped (SIGSTOP) for longer than the lease TTL: meanwhile every member keeps answering the last known
/// members' nodes; when etcd resumes it expires the leases it could not renew, and each member is granted a new
/// one and writes its key again, so the answers hold every node again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_while_etcd_was_stopped_is_granted_again_and_the_answers_keep_the_last_members_meanwhile(
) {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let net = "127.84.4";
    let a = start(dir.path(), &etcd, net, 'a', &SETTINGS).await;
    let b = start(dir.path(), &etcd, net, 'b', &SETTINGS).await;
    let both = nodes(net, &[1, 2]);
    a.wait_answers(&both, STEP).await;
    b.wait_answers(&both, STEP).await;

    etcd.pause();
    let paused = Instant::now();
    while paused.elapsed() < SETTINGS.lease_ttl + Duration::from_secs(1) {
        assert_eq!(
            a.answers().await,
            both,
            "A forgot a member while etcd was stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    etcd.resume();
    let resumed = Instant::now();
    let deadline = Instant::now() + STEP;
    for member in [&a, &b] {
        while !member.log().contains("granting a new one") {
            assert!(
                Instant::now() < deadline,
                "no new lease after etcd resumed:\n{}",
                member.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!("new leases {:?} after etcd resumed", resumed.elapsed());
    a.wait_answers(&both, STEP).await;
    b.wait_answers(&both, STEP).await;
    assert_eq!(
        a.members().await,
        [("lb-a".to_owned(), true), ("lb-b".to_owned(), false)]
    );
}
