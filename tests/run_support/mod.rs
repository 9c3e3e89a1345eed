//! `elbe run` as a real child process for the integration tests that need one (the state store's `kill -9`, the
//! cluster's several processes): started on a file, its log in a file beside it, its admin address read back from
//! the log; and one keep-alive client connection to its admin listener.
// Shared by test binaries, each of which uses a part.
#![allow(unreachable_pub, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long one step may take (a debug build on two busy cores).
pub const STEP: Duration = Duration::from_secs(20);

/// `elbe run --config FILE` as a child process, its log (stdout and stderr) in a file; killed when dropped.
pub struct Elbe {
    pub child: Child,
    pub log: PathBuf,
    pub admin: SocketAddr,
}

impl Elbe {
    /// Starts elbe and waits for its admin listener, or returns how it exited and its log.
    pub async fn try_start(config: &Path) -> Result<Elbe, String> {
        let log = config.with_file_name(format!("elbe-{}.log", unique()));
        let file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_elbe"))
            .args(["run", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("ELBE_TEST_LOG").unwrap_or("elbe=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("elbe starts");
        let deadline = Instant::now() + STEP;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("exited with {status}:\n{text}"));
            }
            let admin = text
                .lines()
                .filter(|line| line.contains("admin listening"))
                .find_map(|line| {
                    line.split_whitespace()
                        .find_map(|field| field.strip_prefix("address="))
                        .and_then(|address| address.parse().ok())
                });
            if let Some(admin) = admin {
                return Ok(Elbe { child, log, admin });
            }
            assert!(
                Instant::now() < deadline,
                "no admin listener within {STEP:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn start(config: &Path) -> Elbe {
        Elbe::try_start(config)
            .await
            .unwrap_or_else(|why| panic!("elbe did not start: {why}"))
    }

    /// SIGKILL: nothing of elbe's shutdown runs.
    pub async fn kill_9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One keep-alive connection to the admin listener.
pub struct Admin(pub hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl Admin {
    pub async fn connect(admin: SocketAddr) -> Admin {
        let stream = TcpStream::connect(admin).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Admin(sender)
    }

    /// Sends one request: its status and body; `None` when the connection failed before an answer (elbe was
    /// killed).
    pub async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: String,
    ) -> Option<(StatusCode, String)> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "admin")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.0.ready().await.ok()?;
        let response = self.0.send_request(request).await.ok()?;
        let status = response.status();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Registers `id` as [`register`] does (tests/cluster_outage.rs, tests/status_page.rs), sending it again after a 503 (registrations are idempotent).
pub async fn registered(admin: SocketAddr, name: &str, id: &str, zone: &str, address: SocketAddr) {
    let started = Instant::now();
    loop {
        let status = register(admin, name, id, zone, address).await;
        if status.is_success() {
            return;
        }
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE && started.elapsed() < STEP,
            "registering {id}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers `id` at `address` in `zone` with load balancer `name` through the JSON admin API; the status.
pub async fn register(
    admin: SocketAddr,
    name: &str,
    id: &str,
    zone: &str,
    address: SocketAddr,
) -> StatusCode {
    let body = serde_json::json!({"instance_id": id, "zone": zone, "address": address.to_string()});
    Admin::connect(admin)
        .await
        .exchange(
            Method::POST,
            &format!("/load_balancers/{name}/instances"),
            body.to_string(),
        )
        .await
        .expect("elbe answers on its admin listener")
        .0
}

/// One cluster process's file (tests/cluster.rs, tests/cluster_outage.rs), on etcd at `endpoint`: load
/// balancer "web" with zones `zone-a` (node `{net}.1`) and `zone-b` (node `{net}.2`), listener on port 0, TCP
/// checks every 200 ms; this process runs `zone`. `[api]` offers both zones, with node pools `{net}.8/29` and
/// `{net}.16/29`, for load balancers created through the API.
pub fn cluster_file(dir: &Path, endpoint: &str, net: &str, zone: &str) -> PathBuf {
    let text = format!(
        r#"state_dir = "{state}"
[cluster]
etcd = ["{endpoint}"]
node_id = "elbe-{zone}"
zones = ["{zone}"]
[api]
zones = [{{ name = "zone-a", node_pool = "{net}.8/29" }}, {{ name = "zone-b", node_pool = "{net}.16/29" }}]
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
node = "{net}.1"
[[load_balancer.availability_zone]]
name = "zone-b"
node = "{net}.2"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 0
instance_protocol = "HTTP"
instance_port = 8000
"#,
        state = cluster_state_dir(dir, zone).display(),
    );
    let path = dir.join(format!("elbe-{zone}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Where [`cluster_file`] keeps that process's state (its local copy of the cluster's state among it).
pub fn cluster_state_dir(dir: &Path, zone: &str) -> PathBuf {
    dir.join(format!("state-{zone}"))
}
