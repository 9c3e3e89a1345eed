//! The reload tests' setup: configuration files written from a small model (load balancers with their zones,
//! listeners, instances, checks and extra tables), elbe started from such a file and reloaded by rewriting it, and
//! the clients and probes the tests use (a GET that reports failures instead of panicking, keep-alive connections,
//! refused-connection checks, dig).
// Only the reload tests use this; `pub` is how it is shared with them, not an API.
#![allow(unreachable_pub, dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{admin_get, Backend, Elbe};

/// How long any one wait may take before the test fails, saying what it waited for.
pub const WAIT: Duration = Duration::from_secs(10);

/// A port-0 HTTP listener.
pub const HTTP: &str = "[[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n";

/// TCP checks every 100 ms on the instance's own port.
pub const CHECK: &str = "[load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n";

/// One `[[load_balancer]]` of a test configuration.
#[derive(Clone)]
pub struct Lb {
    pub name: String,
    /// (zone, node address).
    pub zones: Vec<(String, String)>,
    /// Listener tables.
    pub listeners: Vec<String>,
    /// (id, zone, address).
    pub instances: Vec<(String, String, SocketAddr)>,
    pub health_check: String,
    /// Extra lines for the `[[load_balancer]]` table, and tables after it (policies, rules).
    pub extra: String,
    pub tables: String,
}

impl Lb {
    pub fn new(name: &str, node: &str) -> Lb {
        Lb {
            name: name.into(),
            zones: vec![("zone-a".into(), node.into())],
            listeners: vec![HTTP.into()],
            instances: Vec::new(),
            health_check: CHECK.into(),
            extra: String::new(),
            tables: String::new(),
        }
    }

    pub fn instance(mut self, id: &str, backend: &Backend) -> Lb {
        self.instances
            .push((id.into(), self.zones[0].0.clone(), backend.address));
        self
    }

    pub fn toml(&self) -> String {
        let mut text = format!(
            "[[load_balancer]]\nname = \"{}\"\n{}\n{}\n",
            self.name, self.extra, self.health_check
        );
        for (zone, node) in &self.zones {
            text.push_str(&format!(
                "[[load_balancer.availability_zone]]\nname = \"{zone}\"\nnode = \"{node}\"\n\n"
            ));
        }
        for listener in &self.listeners {
            text.push_str(listener);
            text.push('\n');
        }
        for (id, zone, address) in &self.instances {
            text.push_str(&format!(
                "[[load_balancer.instance]]\nid = \"{id}\"\nzone = \"{zone}\"\naddress = \"{address}\"\n\n"
            ));
        }
        text.push_str(&self.tables);
        text
    }
}

/// A whole configuration file: the admin listener, optionally the DNS responder, load balancers.
#[derive(Clone)]
pub struct Setup {
    pub dns: bool,
    pub admin: String,
    pub lbs: Vec<Lb>,
}

impl Setup {
    pub fn new(lbs: Vec<Lb>) -> Setup {
        Setup {
            dns: false,
            admin: "127.0.0.1:0".into(),
            lbs,
        }
    }

    pub fn toml(&self) -> String {
        let mut text = format!(
            "[admin]\nlisten = \"{}\"\n\n[limits]\nshutdown_grace = \"5s\"\n\n",
            self.admin
        );
        if self.dns {
            text.push_str("[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"elb.localhost\"\n\n");
        }
        for lb in &self.lbs {
            text.push_str(&lb.toml());
        }
        text
    }
}

/// elbe started from a file in a temporary folder, reloaded by rewriting the file.
pub struct Reloading {
    pub elbe: Elbe,
    pub dir: tempfile::TempDir,
}

impl Reloading {
    pub async fn start(setup: &Setup) -> Reloading {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elbe.toml");
        std::fs::write(&path, setup.toml()).unwrap();
        let config = elbe::config::load(&path)
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{}", setup.toml()));
        let elbe = Elbe {
            server: Some(elbe::server::start(config).await.expect("elbe starts")),
        };
        elbe.wait_for_first_checks().await;
        Reloading { elbe, dir }
    }

    pub async fn reload(&self, setup: &Setup) -> Result<(), elbe::server::ReloadError> {
        let path = self.dir.path().join("elbe.toml");
        std::fs::write(&path, setup.toml()).unwrap();
        self.elbe.server().reload_from(&path).await
    }

    /// The listeners of `load_balancer`, in configuration order.
    pub fn listeners(&self, load_balancer: &str) -> Vec<SocketAddr> {
        self.elbe
            .server()
            .listeners()
            .iter()
            .filter(|l| l.load_balancer == load_balancer)
            .map(|l| l.address)
            .collect()
    }

    pub async fn status(&self) -> serde_json::Value {
        admin_get(&self.elbe, "/status").await.json()
    }
}

/// Polls `check` every 20 ms until it holds; fails the test after [`WAIT`], saying what it waited for.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One GET on a fresh connection, `Connection: close`; the status, or why there was none.
pub async fn try_get(address: SocketAddr, path: &str) -> Result<(u16, Bytes), String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", "example.test")
        .header("connection", "close")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Whether a new connection to `address` is refused.
pub async fn refused(address: SocketAddr) -> bool {
    match TcpStream::connect(address).await {
        Err(_) => true,
        // Accepted by the kernel into a backlog nobody reads any more: the close resets it.
        Ok(mut stream) => {
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
            let mut buf = [0u8; 64];
            matches!(
                tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await,
                Ok(Ok(0) | Err(_))
            )
        }
    }
}

/// A keep-alive HTTP/1.1 connection to `address`.
pub async fn keep_alive(
    address: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(address).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

pub async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> Result<u16, String> {
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let request = http::Request::get(path)
        .header("host", "example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

pub fn instance_ids(status: &serde_json::Value, lb: &str) -> Vec<(String, String)> {
    status["load_balancers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["name"] == lb)
        .flat_map(|l| l["instances"].as_array().cloned().unwrap_or_default())
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap_or_default().to_string(),
                i["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn listener_addresses(status: &serde_json::Value, lb: &str) -> Vec<String> {
    status["load_balancers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["name"] == lb)
        .flat_map(|l| l["nodes"].as_array().cloned().unwrap_or_default())
        .flat_map(|n| n["listeners"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l["address"].as_str().map(str::to_string))
        .collect()
}

/// The A records the responder at `dns` answers for `name` (empty for NXDOMAIN), asked with dig (awaited: the
/// responder runs on the test's own runtime).
pub async fn dig(dns: SocketAddr, name: &str) -> Vec<String> {
    let output = tokio::process::Command::new("dig")
        .args([
            &format!("@{}", dns.ip()),
            "-p",
            &dns.port().to_string(),
            "+short",
            "+tries=1",
            "+time=2",
            name,
            "A",
        ])
        .output()
        .await
        .expect("dig is installed (dnsutils / bind9-dnsutils)");
    assert!(output.status.success(), "dig failed: {output:?}");
    let mut answers: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    answers.sort();
    answers
}

pub fn dns_name(status: &serde_json::Value, lb: &str) -> String {
    status["load_balancers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == lb)
        .and_then(|l| l["dns_name"].as_str())
        .unwrap_or_else(|| panic!("{lb} has no DNS name in {status}"))
        .to_string()
}
