//! Cluster mode end to end (issue 16 items 1, 2 and 5's write refusal; DESIGN.md "The state store"): real
//! `elbe run` processes with `[cluster]` on one real etcd (`tests/etcd_support`, Debian's `etcd-server`; a
//! missing etcd fails the test, saying what to install). Each process runs its own zone's node on its own
//! 127.x address; a change made through one process reaches the other through etcd's watch, and two processes
//! writing at once lose nothing (compare-and-swap). etcd paused: traffic keeps flowing, a write answers 503.
#![cfg(feature = "cluster")]
#![allow(clippy::disallowed_methods)]

mod common;
mod etcd_support;
mod run_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Behaviour};
use etcd_support::Etcd;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long one step may take (a debug build on two busy cores).
use run_support::{Admin, Elbe, STEP};

/// One process's file on `etcd` (`run_support::cluster_file`): load balancer "web" with zones `zone-a` and
/// `zone-b`; this process runs `zone`.
fn config(dir: &Path, etcd: &Etcd, net: &str, zone: &str) -> PathBuf {
    run_support::cluster_file(dir, &etcd.endpoint(), net, zone)
}

impl Elbe {
    /// `/status`'s entry for load balancer `name`, if it runs here.
    async fn load_balancer(&self, name: &str) -> Option<serde_json::Value> {
        let reply = common::get(self.admin, "/status").await;
        assert_eq!(reply.status, 200);
        let status = reply.json();
        status["load_balancers"]
            .as_array()?
            .iter()
            .find(|lb| lb["name"] == name)
            .cloned()
    }

    /// The bound address of `name`'s listener on this process's node, once it listens.
    async fn node(&self, name: &str) -> SocketAddr {
        let deadline = Instant::now() + STEP;
        loop {
            let address = self.load_balancer(name).await.and_then(|lb| {
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
                Instant::now() < deadline,
                "{name} has no node here:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The instance ids `name` has here.
    async fn instances(&self, name: &str) -> Vec<String> {
        let Some(lb) = self.load_balancer(name).await else {
            return Vec::new();
        };
        lb["instances"]
            .as_array()
            .map(|instances| {
                instances
                    .iter()
                    .filter_map(|i| i["instance_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls until `name` has instance `id` here; returns how long that took.
    async fn wait_instance(&self, name: &str, id: &str) -> Duration {
        let started = Instant::now();
        while !self.instances(name).await.iter().any(|i| i == id) {
            assert!(
                started.elapsed() < STEP,
                "{id} never reached {name} here:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    }
}

impl Admin {
    /// Sends one request: its status and body.
    async fn send(&mut self, method: Method, path: &str, body: String) -> (StatusCode, String) {
        self.exchange(method, path, body)
            .await
            .expect("elbe answers on its admin listener")
    }

    /// An ELB API call (a raw unsigned form POST, as `[api]` without keys takes it).
    async fn elb(&mut self, form: &str) -> (StatusCode, String) {
        self.send(Method::POST, "/", format!("{form}&Version=2012-06-01"))
            .await
    }

    /// Registers `id` at `address` in `zone` with load balancer `name` through the JSON admin API.
    async fn register(&mut self, name: &str, id: &str, zone: &str, address: SocketAddr) {
        let body =
            serde_json::json!({"instance_id": id, "zone": zone, "address": address.to_string()});
        let (status, text) = self
            .send(
                Method::POST,
                &format!("/load_balancers/{name}/instances"),
                body.to_string(),
            )
            .await;
        assert!(status.is_success(), "registering {id}: {status} {text}");
    }
}

/// Sends requests to `node` until one more reaches `backend`: the node may not listen yet, or its instance may
/// still be in its first check (503), for a little while.
async fn served(node: SocketAddr, backend: &Backend) {
    let before = backend.requests();
    let deadline = Instant::now() + STEP;
    while backend.requests() == before {
        assert!(
            Instant::now() < deadline,
            "no request reached {} through {node}",
            backend.address
        );
        if TcpStream::connect(node).await.is_ok() {
            common::get(node, "/").await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many keys etcd holds under `prefix`, asked through its JSON gateway (`/v3/kv/range`).
async fn etcd_count(etcd: &Etcd, prefix: &str) -> u64 {
    let b64 = |bytes: &[u8]| data_encoding::BASE64.encode(bytes);
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end), "count_only": true});
    let request = Request::post("/v3/kv/range")
        .header("host", "etcd")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let reply = common::request(etcd.address(), request).await;
    assert_eq!(reply.status, 200, "etcd's range answer");
    let count = &reply.json()["count"];
    // The gateway writes 64-bit integers as strings, and leaves out a zero.
    count
        .as_str()
        .and_then(|c| c.parse().ok())
        .or(count.as_u64())
        .unwrap_or(0)
}

/// Two processes, A (zone-a on `{net}.1`) and B (zone-b on `{net}.2`), on one etcd.
async fn pair(dir: &Path, etcd: &Etcd, net: &str) -> (Elbe, Elbe) {
    let a = Elbe::start(&config(dir, etcd, net, "zone-a")).await;
    let b = Elbe::start(&config(dir, etcd, net, "zone-b")).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_on_one_process_reaches_the_other_within_a_second_and_routes_through_its_node(
) {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), &etcd, "127.83.1").await;
    let (node_a, node_b) = (a.node("web").await, b.node("web").await);
    assert_eq!(
        node_a.ip().to_string(),
        "127.83.1.1",
        "A runs zone-a's node"
    );
    assert_eq!(
        node_b.ip().to_string(),
        "127.83.1.2",
        "B runs zone-b's node only"
    );
    let nodes = b.load_balancer("web").await.unwrap()["nodes"].clone();
    let zone_a = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["zone"] == "zone-a")
        .unwrap_or_else(|| panic!("zone-a in {nodes}"));
    assert_eq!(
        zone_a["listeners"].as_array().map(Vec::len),
        Some(0),
        "B binds no node of zone-a: {nodes}"
    );

    let backend = Backend::start(Behaviour::Echo).await;
    Admin::connect(a.admin)
        .await
        .register("web", "i-b1", "zone-b", backend.address)
        .await;
    let took = b.wait_instance("web", "i-b1").await;
    println!("a registration on A reached B in {took:?}");
    assert!(took < Duration::from_secs(1), "reached B in {took:?}");
    served(node_b, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_created_on_one_process_is_bound_and_served_by_the_other_in_its_zone() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), &etcd, "127.83.2").await;
    let (status, text) = Admin::connect(a.admin)
        .await
        .elb(
            "Action=CreateLoadBalancer&LoadBalancerName=made\
             &Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort=8080\
             &Listeners.member.1.InstancePort=8000\
             &AvailabilityZones.member.1=zone-a&AvailabilityZones.member.2=zone-b",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "CreateLoadBalancer: {text}");
    let node_b = b.node("made").await;
    assert_eq!(node_b.port(), 8080);
    assert!(
        node_b.ip().to_string().starts_with("127.83.2.1"),
        "B's node comes from zone-b's pool: {node_b}"
    );
    let node_a = a.node("made").await;
    assert_ne!(node_a.ip(), node_b.ip(), "each process its own zone's node");

    let backend = Backend::start(Behaviour::Echo).await;
    Admin::connect(a.admin)
        .await
        .register("made", "i-made", "zone-b", backend.address)
        .await;
    b.wait_instance("made", "i-made").await;
    served(node_b, &backend).await;
}

/// Sends `calls` on one connection to `admin`, asserting each answers 200.
async fn burst(admin: SocketAddr, calls: Vec<String>) {
    let mut connection = Admin::connect(admin).await;
    for call in calls {
        let (status, text) = connection.elb(&call).await;
        assert_eq!(status, StatusCode::OK, "{call}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_api_writes_on_two_processes_all_survive() {
    const EACH: usize = 20;
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), &etcd, "127.83.3").await;
    let policies = |who: &str| {
        (0..EACH)
            .map(|n| {
                format!(
                    "Action=CreateLBCookieStickinessPolicy&LoadBalancerName=web&PolicyName={who}-{n}\
                     &CookieExpirationPeriod={}",
                    100 + n
                )
            })
            .collect::<Vec<_>>()
    };
    // Tags are one record per load balancer: two processes adding tags at once write the same key, and only
    // compare-and-swap keeps both (ELB allows 10 tags).
    let tags = |who: &str| {
        (0..5)
            .map(|n| format!("Action=AddTags&LoadBalancerNames.member.1=web&Tags.member.1.Key={who}-{n}&Tags.member.1.Value=v"))
            .collect::<Vec<_>>()
    };
    tokio::join!(
        burst(a.admin, policies("a")),
        burst(b.admin, policies("b")),
        burst(a.admin, tags("a")),
        burst(b.admin, tags("b")),
    );

    assert_eq!(
        etcd_count(&etcd, "/elbe/policies/web/").await,
        2 * EACH as u64
    );
    let replanned = [&a, &b]
        .iter()
        .map(|elbe| elbe.log().matches("planning it again").count())
        .sum::<usize>();
    println!("{replanned} API changes met the other process's write and were planned again");
    let deadline = Instant::now() + STEP;
    for elbe in [&a, &b] {
        let mut admin = Admin::connect(elbe.admin).await;
        loop {
            let (_, policies) = admin
                .elb("Action=DescribeLoadBalancerPolicies&LoadBalancerName=web")
                .await;
            let (_, tags) = admin
                .elb("Action=DescribeTags&LoadBalancerNames.member.1=web")
                .await;
            let missing: Vec<String> = ["a", "b"]
                .iter()
                .flat_map(|who| {
                    let policies =
                        (0..EACH).map(move |n| format!("<PolicyName>{who}-{n}</PolicyName>"));
                    let tags = (0..5).map(move |n| format!("<Key>{who}-{n}</Key>"));
                    policies.chain(tags)
                })
                .filter(|wanted| !policies.contains(wanted) && !tags.contains(wanted))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "missing on {}: {missing:?}\n{}",
                elbe.admin,
                elbe.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_paused_traffic_flows_and_writes_answer_503_then_converge_after_it_resumes() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), &etcd, "127.83.4").await;
    let backend = Backend::start(Behaviour::Echo).await;
    Admin::connect(a.admin)
        .await
        .register("web", "i-b1", "zone-b", backend.address)
        .await;
    let node_b = b.node("web").await;
    served(node_b, &backend).await;

    etcd.pause();
    let mut admin = Admin::connect(a.admin).await;
    let (status, text) = admin
        .elb("Action=CreateLBCookieStickinessPolicy&LoadBalancerName=web&PolicyName=while-down")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("ServiceUnavailable"), "{text}");
    // A bounded client loop through B's node while etcd stays paused: not one request fails.
    let (mut sent, mut failed) = (0, 0);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && sent < 2_000 {
        sent += 1;
        if common::get(node_b, "/").await.status != 200 {
            failed += 1;
        }
    }
    println!("etcd paused: {sent} requests through B's node, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {sent} failed while etcd was paused");

    etcd.resume();
    let deadline = Instant::now() + STEP;
    loop {
        let (status, text) = admin
            .elb("Action=CreateLBCookieStickinessPolicy&LoadBalancerName=web&PolicyName=after")
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write after SIGCONT: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut other = Admin::connect(b.admin).await;
    loop {
        let (_, text) = other
            .elb("Action=DescribeLoadBalancerPolicies&LoadBalancerName=web")
            .await;
        // (`while-down` may be there too: a write that timed out was sent, and etcd may apply it when it resumes.)
        if text.contains("<PolicyName>after</PolicyName>") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the write never reached B:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cluster_process_whose_etcd_does_not_answer_at_start_fails_saying_so() {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &etcd, "127.83.5", "zone-a");
    etcd.kill();
    let Err(why) = Elbe::try_start(&config).await else {
        panic!("elbe started with its etcd down");
    };
    assert!(
        why.contains("[cluster]: cannot load the cluster's state from etcd at")
            && why.contains(&etcd.endpoint()),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_this_process_cannot_bind_is_kept_and_applied_at_the_next_batch() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), &etcd, "127.83.6").await;
    // zone-b's first free pool address, where CreateLoadBalancer puts made's zone-b node: taken here, so B
    // cannot bind it.
    let squatter = std::net::TcpListener::bind("127.83.6.17:8080").unwrap();
    let mut admin = Admin::connect(a.admin).await;
    let (status, text) = admin
        .elb(
            "Action=CreateLoadBalancer&LoadBalancerName=made\
             &Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort=8080\
             &Listeners.member.1.InstancePort=8000\
             &AvailabilityZones.member.1=zone-a&AvailabilityZones.member.2=zone-b",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "A binds its own node: {text}");
    let deadline = Instant::now() + STEP;
    loop {
        let reply = common::get(b.admin, "/status").await;
        let error = reply.json()["config"]["last_reload_error"].clone();
        if let Some(error) = error.as_str() {
            assert!(
                error.starts_with("state store revision ") && error.contains("127.83.6.17:8080"),
                "{error}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B reported no failed apply:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        b.load_balancer("made").await.is_none(),
        "B runs nothing of made yet"
    );

    // The address is free again; the next change of the cluster (anyone's) has B apply what it kept.
    drop(squatter);
    let (status, text) = admin
        .elb("Action=AddTags&LoadBalancerNames.member.1=web&Tags.member.1.Key=k&Tags.member.1.Value=v")
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let node_b = b.node("made").await;
    assert_eq!(node_b.to_string(), "127.83.6.17:8080");
    let backend = Backend::start(Behaviour::Echo).await;
    admin
        .register("made", "i-made", "zone-b", backend.address)
        .await;
    served(node_b, &backend).await;
}

/// A request through `node` with `cookie` (if any): which backend answered, and the AWSELB cookie it set.
async fn sticky_get(
    node: SocketAddr,
    cookie: Option<&str>,
    backends: &[&Backend],
) -> (usize, Option<String>) {
    let before: Vec<usize> = backends.iter().map(|b| b.requests()).collect();
    let mut request = Request::get("/").header("host", "web");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let reply = common::request(node, request.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(reply.status, 200);
    let answered = backends
        .iter()
        .zip(before)
        .position(|(backend, before)| backend.requests() > before)
        .expect("one backend answered");
    let set = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("AWSELB="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned());
    (answered, set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awselb_cookie_issued_through_one_process_is_honoured_by_the_other() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    // Both processes' files: cross-zone on, and an LB cookie policy on the listener.
    let sticky = |zone: &str| {
        let path = config(dir.path(), &etcd, "127.83.7", zone);
        let text = std::fs::read_to_string(&path).unwrap().replacen(
            "name = \"web\"\n",
            "name = \"web\"\ncross_zone_load_balancing = true\n",
            1,
        );
        std::fs::write(
            &path,
            format!("{text}policy_names = [\"sticky\"]\n[[load_balancer.policy]]\nname = \"sticky\"\ntype = \"LBCookieStickinessPolicyType\"\n"),
        )
        .unwrap();
        path
    };
    let a = Elbe::start(&sticky("zone-a")).await;
    let b = Elbe::start(&sticky("zone-b")).await;
    let (node_a, node_b) = (a.node("web").await, b.node("web").await);
    let (one, two) = (
        Backend::start(Behaviour::Echo).await,
        Backend::start(Behaviour::Echo).await,
    );
    let mut admin = Admin::connect(a.admin).await;
    admin.register("web", "i-1", "zone-a", one.address).await;
    admin.register("web", "i-2", "zone-b", two.address).await;
    served(node_b, &two).await;
    served(node_b, &one).await;

    let (first, cookie) = sticky_get(node_a, None, &[&one, &two]).await;
    let cookie = cookie.expect("A's node sets AWSELB on a request without one");
    for _ in 0..20 {
        let (answered, again) = sticky_get(node_b, Some(&cookie), &[&one, &two]).await;
        assert_eq!(
            answered, first,
            "B's node routes A's cookie to its instance"
        );
        assert_eq!(again, None, "B honours A's cookie: no new cookie");
    }
}
