//! The state store with real processes (issue 15 items 5 and 6, DESIGN.md "The state store"): the real `elbe run`
//! on a file in a temporary folder, registrations through the admin JSON API, `kill -9` (SIGKILL, no shutdown
//! path runs), and a restart on the same `state_dir`; `elbe state show` and `elbe state reset` as an operator runs
//! them.
mod common;
mod run_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Behaviour};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::Instant;

/// How long one step may take (a debug build on two busy cores).
use run_support::{Admin, Elbe, STEP};

/// The configuration: load balancer "web" on 127.0.0.1 port 0, TCP checks every 200 ms (so a backend's request
/// count is traffic only), `i-file` declared.
fn config(dir: &Path, file_instance: SocketAddr) -> PathBuf {
    config_with(dir, file_instance, "")
}

/// [`config`] with `top` (tables such as `[api]`) after `state_dir`.
fn config_with(dir: &Path, file_instance: SocketAddr, top: &str) -> PathBuf {
    let text = format!(
        r#"state_dir = "{state}"
{top}
[admin]
listen = "127.0.0.1:0"
[limits]
shutdown_grace = "1s"
[[load_balancer]]
name = "web"
[load_balancer.health_check]
target = "TCP:8000"
interval = "200ms"
timeout = "150ms"
healthy_threshold = 2
unhealthy_threshold = 2
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.1"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 0
instance_protocol = "HTTP"
instance_port = 8000
[[load_balancer.instance]]
id = "i-file"
zone = "zone-a"
address = "{file_instance}"
"#,
        state = dir.join("state").display()
    );
    let path = dir.join("elbe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Elbe {
    async fn status(&self) -> serde_json::Value {
        let reply = common::get(self.admin, "/status").await;
        assert_eq!(reply.status, 200);
        reply.json()["load_balancers"][0].clone()
    }

    /// (instance id, state) of every instance of "web".
    async fn instances(&self) -> Vec<(String, String)> {
        let status = self.status().await;
        let mut instances: Vec<(String, String)> = status["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let text = |key: &str| i[key].as_str().unwrap().to_string();
                (text("instance_id"), text("state"))
            })
            .collect();
        instances.sort();
        instances
    }

    async fn listener(&self) -> SocketAddr {
        let status = self.status().await;
        status["nodes"][0]["listeners"][0]["address"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Polls `/status` until `id` is InService.
    async fn wait_in_service(&self, id: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let instances = self.instances().await;
            if instances
                .iter()
                .any(|(i, state)| i == id && state == "InService")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not InService: {instances:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Admin {
    /// Sends one request; `None` when the connection failed before an answer (elbe was killed).
    async fn send(&mut self, method: Method, path: &str, body: String) -> Option<StatusCode> {
        self.exchange(method, path, body)
            .await
            .map(|(status, _)| status)
    }

    async fn register(&mut self, id: &str, address: SocketAddr) -> Option<StatusCode> {
        let body = serde_json::json!({"instance_id": id, "zone": "zone-a", "address": address.to_string()});
        self.send(
            Method::POST,
            "/load_balancers/web/instances",
            body.to_string(),
        )
        .await
    }

    async fn deregister(&mut self, id: &str) -> Option<StatusCode> {
        self.send(
            Method::DELETE,
            &format!("/load_balancers/web/instances/{id}"),
            String::new(),
        )
        .await
    }
}

/// `elbe state ACTION --config FILE`: exit success, standard output, standard error.
async fn state(action: &str, config: &Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_elbe"))
        .args(["state", action, "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `elbe state show`'s records, as (key, JSON).
async fn shown(config: &Path) -> Vec<serde_json::Value> {
    let (ok, out, err) = state("show", config).await;
    assert!(ok, "elbe state show failed: {err}");
    let shown: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    shown["records"].as_array().unwrap().clone()
}

/// Sends requests through the listener until one reaches `backend` (the load balancer spreads them).
async fn reaches(listener: SocketAddr, backend: &Backend) {
    let deadline = Instant::now() + STEP;
    while backend.requests() == 0 {
        let reply = common::get(listener, "/").await;
        assert_eq!(reply.status, 200);
        assert!(
            Instant::now() < deadline,
            "no request reached {}",
            backend.address
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_survives_kill_9_and_is_checked_and_served_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (declared, registered) = (
        Backend::start(Behaviour::Echo).await,
        Backend::start(Behaviour::Echo).await,
    );
    let config = config(dir.path(), declared.address);
    let elbe = Elbe::start(&config).await;
    let mut admin = Admin::connect(elbe.admin).await;
    assert_eq!(
        admin.register("i-api", registered.address).await,
        Some(StatusCode::OK)
    );
    elbe.wait_in_service("i-api").await;
    let records = shown(&config).await;
    assert_eq!(
        records.len(),
        1,
        "elbe state show reads beside the running elbe: {records:?}"
    );
    assert_eq!(records[0]["key"], "registrations/web/i-api");
    assert_eq!(records[0]["address"], registered.address.to_string());
    elbe.kill_9().await;

    let elbe = Elbe::start(&config).await;
    let instances: Vec<String> = elbe
        .instances()
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(instances, ["i-api", "i-file"], "registered again at start");
    // Health-checked from the start (registration in progress, then InService), and served.
    elbe.wait_in_service("i-api").await;
    reaches(elbe.listener().await, &registered).await;
    assert!(elbe.log().contains("state store opened"), "{}", elbe.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deregistered_file_instance_stays_gone_until_the_store_is_reset() {
    let dir = tempfile::tempdir().unwrap();
    let declared = Backend::start(Behaviour::Echo).await;
    let config = config(dir.path(), declared.address);
    let elbe = Elbe::start(&config).await;
    let mut admin = Admin::connect(elbe.admin).await;
    assert_eq!(admin.deregister("i-file").await, Some(StatusCode::OK));
    assert_eq!(elbe.instances().await, []);

    // Reset refuses while an elbe holds the store, and says why.
    let (ok, _, err) = state("reset", &config).await;
    assert!(!ok, "reset while elbe runs must refuse");
    assert!(err.contains("another process has it open"), "{err}");
    assert!(err.contains("store.redb"), "{err}");
    elbe.kill_9().await;

    let elbe = Elbe::start(&config).await;
    assert_eq!(
        elbe.instances().await,
        [],
        "the file's instance stays deregistered"
    );
    elbe.kill_9().await;
    let records = shown(&config).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["state"], "deregistered");
    assert!(records[0]["revision"].as_u64().unwrap() >= 1);

    let (ok, out, err) = state("reset", &config).await;
    assert!(ok, "reset failed: {err}");
    assert!(out.contains("forgot 1 record(s)"), "{out}");
    assert_eq!(shown(&config).await, Vec::<serde_json::Value>::new());
    let elbe = Elbe::start(&config).await;
    elbe.wait_in_service("i-file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_elbe_on_the_same_state_dir_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let declared = Backend::start(Behaviour::Echo).await;
    let config = config(dir.path(), declared.address);
    let first = Elbe::start(&config).await;
    let why = Elbe::try_start(&config)
        .await
        .err()
        .expect("the second elbe must not start");
    assert!(why.contains("exit status: 1"), "{why}");
    assert!(why.contains("another process has it open"), "{why}");
    assert!(
        why.contains(
            &dir.path()
                .join("state")
                .join("store.redb")
                .display()
                .to_string()
        ),
        "{why}"
    );
    // The first is unharmed.
    first.wait_in_service("i-file").await;
}

/// Latencies in microseconds, sorted: (p50, p99, max).
fn percentiles(mut micros: Vec<u128>) -> (u128, u128, u128) {
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), at(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_registration_of_a_burst_cut_by_kill_9_is_there_after_the_restart() {
    const CONNECTIONS: usize = 8;
    const EACH: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let declared = Backend::start(Behaviour::Echo).await;
    let config = config(dir.path(), declared.address);
    let elbe = Elbe::start(&config).await;
    // Where instance `c`-`n` is said to be: a distinct address each, so a record can be checked whole.
    let address = |c: usize, n: usize| -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], 20000 + (c * EACH + n) as u16))
    };

    // One writer at a time: the latency of one registration, fsync included.
    let mut one = Admin::connect(elbe.admin).await;
    let mut sequential = Vec::new();
    for n in 0..20 {
        let started = Instant::now();
        assert_eq!(
            one.register(&format!("i-seq-{n}"), address(99, n)).await,
            Some(StatusCode::OK)
        );
        sequential.push(started.elapsed().as_micros());
    }
    let (p50, p99, max) = percentiles(sequential);
    println!("sequential registrations: p50 {p50} µs, p99 {p99} µs, max {max} µs");

    // The burst: CONNECTIONS clients registering EACH instances one after another; kill -9 midway.
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (admin, acks) = (elbe.admin, acks.clone());
            tokio::spawn(async move {
                let mut connection = Admin::connect(admin).await;
                for n in 0..EACH {
                    let started = Instant::now();
                    match connection
                        .register(&format!("i-{c}-{n}"), address(c, n))
                        .await
                    {
                        Some(StatusCode::OK) => {
                            let _ = acks.send((c, n, started.elapsed().as_micros()));
                        }
                        Some(other) => panic!("registration answered {other}"),
                        None => return, // elbe was killed
                    }
                }
            })
        })
        .collect();
    drop(acks);
    let mut acknowledged = Vec::new();
    // Generous: on a loaded machine with a busy disk an fsync can take a second.
    let deadline = Instant::now() + 3 * STEP;
    while acknowledged.len() < CONNECTIONS * EACH / 2 {
        let ack = tokio::time::timeout_at(deadline, acked.recv()).await;
        acknowledged.push(
            ack.expect("half the burst acknowledged in time")
                .expect("clients alive"),
        );
    }
    elbe.kill_9().await;
    while let Some(ack) = acked.recv().await {
        acknowledged.push(ack); // answered before the kill landed
    }
    for client in clients {
        client.await.unwrap();
    }
    let (p50, p99, max) = percentiles(acknowledged.iter().map(|a| a.2).collect());
    println!(
        "burst over {CONNECTIONS} connections: {} of {} acknowledged before kill -9; p50 {p50} µs, p99 {p99} µs, max {max} µs",
        acknowledged.len(),
        CONNECTIONS * EACH
    );

    // Every acknowledged registration is kept, whole; unacknowledged ones may be there too, also whole.
    let records = shown(&config).await;
    let by_id: std::collections::HashMap<String, serde_json::Value> = records
        .into_iter()
        .map(|r| (r["instance_id"].as_str().unwrap().to_string(), r))
        .collect();
    for (c, n, _) in &acknowledged {
        let record = by_id
            .get(&format!("i-{c}-{n}"))
            .unwrap_or_else(|| panic!("acknowledged i-{c}-{n} was lost"));
        assert_eq!(record["state"], "registered");
        assert_eq!(record["address"], address(*c, *n).to_string());
    }
    for (id, record) in &by_id {
        let expected = match id.strip_prefix("i-seq-") {
            Some(n) => address(99, n.parse().unwrap()),
            None => {
                let (c, n) = id.trim_start_matches("i-").split_once('-').unwrap();
                address(c.parse().unwrap(), n.parse().unwrap())
            }
        };
        assert_eq!(record["address"], expected.to_string(), "{id} is whole");
    }
    println!(
        "{} records kept ({} acknowledged, 20 sequential)",
        by_id.len(),
        acknowledged.len()
    );

    // After the restart the running elbe has every one of them.
    let elbe = Elbe::start(&config).await;
    let running: std::collections::HashSet<String> = elbe
        .instances()
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for (c, n, _) in &acknowledged {
        assert!(
            running.contains(&format!("i-{c}-{n}")),
            "i-{c}-{n} not registered after the restart"
        );
    }
    assert_eq!(
        running.len(),
        by_id.len() + 1,
        "the store's records and the file's i-file"
    );
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

#[tokio::test]
async fn a_load_balancer_created_through_the_api_survives_kill_9_and_serves_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (declared, made) = (
        Backend::start(Behaviour::Echo).await,
        Backend::start(Behaviour::Echo).await,
    );
    let top = format!(
        "[api]\nzones = [{{ name = \"zone-a\", node_pool = \"127.77.40.0/29\" }}]\n\
         [[instance]]\nid = \"i-made\"\nzone = \"zone-a\"\naddress = \"{}\"\n",
        made.address
    );
    let config = config_with(dir.path(), declared.address, &top);
    let elbe = Elbe::start(&config).await;
    let endpoint = format!("http://{}/", elbe.admin);
    let aws = |args: &'static [&'static str]| {
        let endpoint = endpoint.clone();
        async move {
            let cli = common::aws::aws_at(&endpoint, "AKIDANY", "any", args).await;
            assert!(cli.success, "aws {args:?}: {}", cli.stderr);
            cli
        }
    };
    aws(&[
        "create-load-balancer",
        "--load-balancer-name",
        "made",
        "--listeners",
        "Protocol=HTTP,LoadBalancerPort=8080,InstanceProtocol=HTTP,InstancePort=8000",
        "--availability-zones",
        "zone-a",
    ])
    .await;
    aws(&[
        "register-instances-with-load-balancer",
        "--load-balancer-name",
        "made",
        "--instances",
        "i-made",
    ])
    .await;
    aws(&[
        "modify-load-balancer-attributes",
        "--load-balancer-name",
        "made",
        "--load-balancer-attributes",
        "{\"CrossZoneLoadBalancing\":{\"Enabled\":true}}",
    ])
    .await;
    let node: SocketAddr = "127.77.40.1:8080".parse().unwrap();
    served(node, &made).await;
    elbe.kill_9().await;
    assert!(
        TcpStream::connect(node).await.is_err(),
        "nothing listens while elbe is down"
    );

    let elbe = Elbe::start(&config).await;
    let endpoint = format!("http://{}/", elbe.admin);
    served(node, &made).await;
    let described = common::aws::aws_at(
        &endpoint,
        "AKIDANY",
        "any",
        &[
            "describe-load-balancer-attributes",
            "--load-balancer-name",
            "made",
        ],
    )
    .await;
    assert_eq!(
        described.json()["LoadBalancerAttributes"]["CrossZoneLoadBalancing"]["Enabled"],
        true
    );
    let keys: Vec<String> = shown(&config)
        .await
        .iter()
        .map(|record| record["key"].as_str().unwrap().to_owned())
        .collect();
    for key in [
        "load_balancers/made",
        "zones/made",
        "listeners/made/8080",
        "attributes/made",
        "registrations/made/i-made",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    drop(elbe);
}

/// Every ELB API write acknowledged before `kill -9` is there after the restart: a burst of
/// CreateLBCookieStickinessPolicy calls (each one record, staged and committed as a reload) over several
/// connections, cut by SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_elb_api_write_of_a_burst_cut_by_kill_9_is_there_after_the_restart() {
    const CONNECTIONS: usize = 4;
    const EACH: usize = 15;
    let dir = tempfile::tempdir().unwrap();
    let declared = Backend::start(Behaviour::Echo).await;
    let config = config(dir.path(), declared.address);
    let elbe = Elbe::start(&config).await;
    let form = |c: usize, n: usize| {
        format!(
            "Action=CreateLBCookieStickinessPolicy&Version=2012-06-01&LoadBalancerName=web\
             &PolicyName=p-{c}-{n}&CookieExpirationPeriod={}",
            1000 + c * EACH + n
        )
    };
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (admin, acks) = (elbe.admin, acks.clone());
            tokio::spawn(async move {
                let mut connection = Admin::connect(admin).await;
                for n in 0..EACH {
                    match connection.send(Method::POST, "/", form(c, n)).await {
                        Some(StatusCode::OK) => {
                            let _ = acks.send((c, n));
                        }
                        Some(other) => panic!("the call answered {other}"),
                        None => return, // elbe was killed
                    }
                }
            })
        })
        .collect();
    drop(acks);
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + 3 * STEP;
    while acknowledged.len() < CONNECTIONS * EACH / 2 {
        let ack = tokio::time::timeout_at(deadline, acked.recv()).await;
        acknowledged.push(
            ack.expect("half the burst acknowledged in time")
                .expect("clients alive"),
        );
    }
    elbe.kill_9().await;
    while let Some(ack) = acked.recv().await {
        acknowledged.push(ack);
    }
    for client in clients {
        client.await.unwrap();
    }
    println!(
        "{} of {} API writes acknowledged before kill -9",
        acknowledged.len(),
        CONNECTIONS * EACH
    );

    let records = shown(&config).await;
    for (c, n) in &acknowledged {
        let key = format!("policies/web/p-{c}-{n}");
        let record = records
            .iter()
            .find(|r| r["key"] == key.as_str())
            .unwrap_or_else(|| panic!("acknowledged {key} was lost"));
        assert_eq!(
            record["cookie_expiration_period"],
            1000 + c * EACH + n,
            "{key} is whole"
        );
    }
    // After the restart the running load balancer has every one of them.
    let elbe = Elbe::start(&config).await;
    let mut admin = Admin::connect(elbe.admin).await;
    let request = Request::post("/")
        .header("host", "admin")
        .body(Full::new(Bytes::from(
            "Action=DescribeLoadBalancerPolicies&Version=2012-06-01&LoadBalancerName=web",
        )))
        .unwrap();
    admin.0.ready().await.unwrap();
    let response = admin.0.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    for (c, n) in &acknowledged {
        assert!(
            body.contains(&format!("<PolicyName>p-{c}-{n}</PolicyName>")),
            "p-{c}-{n} after the restart"
        );
    }
    drop(elbe);
}

/// A load balancer of the file deleted through the ELB API stays deleted across `kill -9` and restart (its
/// tombstone), until `elbe state reset`.
#[tokio::test]
async fn a_file_load_balancer_deleted_through_the_api_stays_deleted_until_the_store_is_reset() {
    let dir = tempfile::tempdir().unwrap();
    let declared = Backend::start(Behaviour::Echo).await;
    let config = config(dir.path(), declared.address);
    let elbe = Elbe::start(&config).await;
    let listener = elbe.listener().await;
    let mut admin = Admin::connect(elbe.admin).await;
    let delete = "Action=DeleteLoadBalancer&Version=2012-06-01&LoadBalancerName=web".to_owned();
    assert_eq!(
        admin.send(Method::POST, "/", delete).await,
        Some(StatusCode::OK)
    );
    assert!(
        TcpStream::connect(listener).await.is_err(),
        "its listener closed"
    );
    elbe.kill_9().await;

    let elbe = Elbe::start(&config).await;
    let status = common::get(elbe.admin, "/status").await.json();
    assert_eq!(
        status["load_balancers"],
        serde_json::json!([]),
        "still deleted after the restart"
    );
    let keys: Vec<serde_json::Value> = shown(&config)
        .await
        .iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(keys, [serde_json::json!("load_balancers/web")]);
    elbe.kill_9().await;

    let (ok, _, err) = state("reset", &config).await;
    assert!(ok, "{err}");
    let elbe = Elbe::start(&config).await;
    elbe.wait_in_service("i-file").await;
    reaches(elbe.listener().await, &declared).await;
}
