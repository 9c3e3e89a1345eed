//! The integration-test harness: elbe on port 0 with real in-process backends, and real clients.
// Shared by every test binary, each of which uses a part: `pub` is how the parts are shared, not an API.
#![allow(unreachable_pub, dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod aws;

/// How a backend behaves.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// 200 with a JSON description of the request it received (method, uri, version, headers, body length).
    Echo,
    /// Like Echo, after a delay.
    Slow(Duration),
    /// Accepts and reads the request, never answers.
    Hang,
    /// Accepts and closes at once (a reset or refused exchange).
    Reset,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Answers with this status and an empty body.
    Status(u16),
    /// Streams a body of this many bytes, generated as it is sent.
    Download(u64),
}

/// A body of `total` bytes in 64 KiB frames, generated as it is read (nothing buffered whole).
pub struct Generated {
    left: u64,
    chunk: Bytes,
}

impl Generated {
    pub fn new(total: u64) -> Self {
        Generated {
            left: total,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(self.chunk.slice(..n)))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// A backend instance on 127.0.0.1 with a request counter.
pub struct Backend {
    pub address: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, behaviour)
    }

    pub fn serve(listener: TcpListener, behaviour: Behaviour) -> Backend {
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve_one(stream, behaviour, r.clone(), c.clone()));
            }
        });
        Backend {
            address,
            requests,
            connections,
            task,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves one connection. `connections` counts connections that carried a request (TCP health checks, which
/// connect and close, do not count).
async fn serve_one(
    mut stream: TcpStream,
    behaviour: Behaviour,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
) {
    match behaviour {
        Behaviour::Reset => {
            requests.fetch_add(1, Ordering::SeqCst);
            // SO_LINGER 0 turns the close into a reset; zero linger never blocks.
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Behaviour::Garbage => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            requests.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n").await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Hang => {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            requests.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        _ => {
            let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
            let service = service_fn(move |request: Request<Incoming>| {
                if first.swap(false, Ordering::SeqCst) {
                    connections.fetch_add(1, Ordering::SeqCst);
                }
                let requests = requests.clone();
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(answer(behaviour, request).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

type AnyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(behaviour: Behaviour, request: Request<Incoming>) -> Response<AnyBody> {
    if let Behaviour::Slow(delay) = behaviour {
        tokio::time::sleep(delay).await;
    }
    if let Behaviour::Status(code) = behaviour {
        let mut response = Response::new(Full::new(Bytes::new()).boxed());
        *response.status_mut() = StatusCode::from_u16(code).unwrap();
        return response;
    }
    if let Behaviour::Download(total) = behaviour {
        return Response::new(Generated::new(total).boxed());
    }
    let (parts, body) = request.into_parts();
    let mut length = 0u64;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => length += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0),
            Err(_) => break,
        }
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).to_string(),
            )
        })
        .collect();
    let description = serde_json::json!({
        "method": parts.method.to_string(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_length": length,
    });
    Response::new(Full::new(Bytes::from(description.to_string())).boxed())
}

/// An instance entry for the generated configuration.
#[derive(Clone)]
pub struct InstanceSpec {
    pub id: String,
    pub zone: String,
    pub address: SocketAddr,
}

pub fn instance(id: &str, zone: &str, backend: &Backend) -> InstanceSpec {
    InstanceSpec {
        id: id.into(),
        zone: zone.into(),
        address: backend.address,
    }
}

/// TCP checks every 100 ms (instances are given as ip:port, so their own port is probed).
const FAST_HEALTH_CHECK: &str =
    "[load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n";

const HTTP_LISTENER: &str =
    "[[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n";

/// Builds a configuration: one load balancer "web", zones on 127.0.0.1 port 0, an HTTP listener.
#[derive(Clone)]
pub struct ConfigBuilder {
    pub zones: Vec<(String, String)>,
    pub instances: Vec<InstanceSpec>,
    pub lb_extra: String,
    pub limits: String,
    pub listeners: Vec<String>,
    /// The `[load_balancer.health_check]` table: fast by default so tests never wait long.
    pub health_check: String,
    /// Top-level tables written before the load balancer (e.g. `[dns]`).
    pub top: String,
}

impl ConfigBuilder {
    pub fn new() -> Self {
        ConfigBuilder {
            zones: vec![("zone-a".into(), "127.0.0.1".into())],
            instances: Vec::new(),
            lb_extra: String::new(),
            limits: String::new(),
            listeners: vec![HTTP_LISTENER.to_string()],
            health_check: FAST_HEALTH_CHECK.to_string(),
            top: String::new(),
        }
    }

    /// Adds the DNS responder on 127.0.0.1, any free port, for `elb.localhost`.
    pub fn dns(mut self) -> Self {
        self.top
            .push_str("[dns]\nlisten = \"127.0.0.1:0\"\ndomain = \"elb.localhost\"\n\n");
        self
    }

    /// Adds an HTTPS listener (port 0) with the development certificates: localhost first (the default),
    /// then *.example.test; `policy` is an optional ssl_policy name.
    pub fn https(mut self, policy: Option<&str>) -> Self {
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        let mut listener = format!(
            "[[load_balancer.listener]]\nprotocol = \"HTTPS\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n\
             certificates = [{{ cert = \"{certs}/localhost.crt\", key = \"{certs}/localhost.key\" }}, {{ cert = \"{certs}/example.crt\", key = \"{certs}/example.key\" }}]\n"
        );
        if let Some(policy) = policy {
            listener.push_str(&format!("ssl_policy = \"{policy}\"\n"));
        }
        self.listeners.push(listener);
        self
    }

    pub fn zones(mut self, zones: &[(&str, &str)]) -> Self {
        self.zones = zones
            .iter()
            .map(|(z, n)| (z.to_string(), n.to_string()))
            .collect();
        self
    }

    pub fn instance(mut self, spec: InstanceSpec) -> Self {
        self.instances.push(spec);
        self
    }

    /// Extra `key = value` lines for the `[[load_balancer]]` table.
    pub fn lb(mut self, line: &str) -> Self {
        self.lb_extra.push_str(line);
        self.lb_extra.push('\n');
        self
    }

    /// Extra `key = value` lines for the `[limits]` table.
    pub fn limit(mut self, line: &str) -> Self {
        self.limits.push_str(line);
        self.limits.push('\n');
        self
    }

    pub fn toml(&self) -> String {
        let mut text = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[limits]\nshutdown_grace = \"5s\"\n{}\n[[load_balancer]]\nname = \"web\"\n{}\n",
            self.limits, self.lb_extra
        );
        text.insert_str(text.find("[[load_balancer]]").unwrap_or(0), &self.top);
        text.push_str(&self.health_check);
        text.push('\n');
        for (zone, node) in &self.zones {
            text.push_str(&format!(
                "[[load_balancer.availability_zone]]\nname = \"{zone}\"\nnode = \"{node}\"\n\n"
            ));
        }
        for listener in &self.listeners {
            text.push_str(listener);
            text.push('\n');
        }
        for i in &self.instances {
            text.push_str(&format!(
                "[[load_balancer.instance]]\nid = \"{}\"\nzone = \"{}\"\naddress = \"{}\"\n\n",
                i.id, i.zone, i.address
            ));
        }
        text
    }

    pub async fn start(self) -> Elbe {
        let text = self.toml();
        let mut config = elbe::config::parse(&text, std::path::Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        if !text.contains("state_dir") {
            // Not `./state` in the source tree: what a test keeps (the stickiness key) stays its own.
            config.state_dir = test_state_dir();
        }
        let server = elbe::server::start(config).await.expect("elbe starts");
        let elbe = Elbe {
            server: Some(server),
        };
        elbe.wait_for_first_checks().await;
        elbe
    }
}

/// A `state_dir` of this test's own under the system's temporary folder (a few bytes at most: the stickiness
/// key), so no test writes into the source tree or shares a key with another.
pub fn test_state_dir() -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join("elbe-tests").join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running elbe.
pub struct Elbe {
    pub server: Option<elbe::server::Server>,
}

impl Elbe {
    /// Waits (at most 3 s) until every instance has had its first health verdict, so tests start from ELB's
    /// steady state: reachable instances InService, unreachable ones OutOfService.
    pub async fn wait_for_first_checks(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline {
            let status = self.server().status();
            let pending = status
                .load_balancers
                .iter()
                .flat_map(|lb| &lb.instances)
                .any(|i| i.description == "Instance registration is still in progress.");
            if !pending {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn server(&self) -> &elbe::server::Server {
        self.server.as_ref().unwrap()
    }

    /// The node listener of zone `zone`.
    pub fn node(&self, zone: &str) -> SocketAddr {
        self.server()
            .listener("web", zone)
            .expect("zone has a listener")
    }

    /// The node listener of `zone` for `protocol` (HTTP or HTTPS).
    pub fn node_for(&self, zone: &str, protocol: elbe::config::Protocol) -> SocketAddr {
        self.server()
            .listeners()
            .iter()
            .find(|l| l.zone == zone && l.protocol == protocol)
            .map(|l| l.address)
            .expect("zone has such a listener")
    }

    pub fn url(&self, zone: &str, path: &str) -> String {
        format!("http://{}{}", self.node(zone), path)
    }

    pub fn admin(&self) -> SocketAddr {
        self.server().admin_address()
    }

    pub async fn shutdown(mut self) -> bool {
        self.server.take().unwrap().shutdown().await
    }
}

/// A response read by [`get`] and friends.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A header the backend received (from an Echo backend's JSON), all values joined by "\n".
    pub fn backend_header(&self, name: &str) -> Option<String> {
        let json = self.json();
        let values: Vec<String> = json["headers"]
            .as_array()?
            .iter()
            .filter(|pair| pair[0].as_str() == Some(name))
            .map(|pair| pair[1].as_str().unwrap_or_default().to_string())
            .collect();
        (!values.is_empty()).then(|| values.join("\n"))
    }
}

/// One HTTP/1.1 request on a fresh connection with hyper's client.
pub async fn request(address: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(address: SocketAddr, path: &str) -> Reply {
    let request = Request::get(path)
        .header("host", "example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    self::request(address, request).await
}

/// Sends raw bytes and reads until the server closes (or `wait` passes); returns what came back.
pub async fn raw(address: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// Sends raw bytes and reads one response: its head, then `Content-Length` bytes of body (or until close).
pub async fn raw_response(address: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_response(&mut stream, wait).await
}

/// Reads one response from `stream` (head, then Content-Length bytes), or what came before close or `wait`.
pub async fn read_response(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if let Some(length) = length {
                    if out.len() >= end + 4 + length {
                        return;
                    }
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).to_string()
}

/// GET on the admin listener.
pub async fn admin_get(elbe: &Elbe, path: &str) -> Reply {
    get(elbe.admin(), path).await
}

/// Runs a test body with an overall deadline, so no test can hang.
pub async fn bounded<F: std::future::Future>(limit: Duration, body: F) -> F::Output {
    tokio::time::timeout(limit, body)
        .await
        .expect("the test finished within its time limit")
}

/// One instance's (state, reason code, description) in load balancer "web", from the control plane; `None` when it
/// is not registered.
pub fn instance_health(elbe: &Elbe, id: &str) -> Option<(String, String, String)> {
    elbe.server()
        .status()
        .load_balancers
        .iter()
        .filter(|lb| lb.name == "web")
        .flat_map(|lb| &lb.instances)
        .find(|i| i.instance_id == id)
        .map(|i| {
            (
                i.state.to_string(),
                i.reason_code.to_string(),
                i.description.to_string(),
            )
        })
}

/// Polls (every 10 ms, at most 5 s) until instance `id` of "web" reports `state` with `description`; panics with the
/// last state seen otherwise.
pub async fn wait_for_health(elbe: &Elbe, id: &str, state: &str, description: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = instance_health(elbe, id);
        if let Some((s, _, d)) = &now {
            if s == state && d == description {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} did not become {state} ({description}) within 5 s; last seen {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request with a JSON (or any) body to the admin listener: `method` `path` with `body`.
pub async fn admin_send(elbe: &Elbe, method: http::Method, path: &str, body: &str) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    self::request(elbe.admin(), request).await
}

/// The most common setup: elbe with one zone and one Echo instance "i-1", already InService.
pub async fn one_echo_instance() -> (Backend, Elbe) {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    (backend, elbe)
}

/// One instance behaving as `behaviour` behind an elbe whose idle timeout is `idle` (`"300ms"`): what every
/// idle-timeout test starts from.
pub async fn one_instance_with_idle_timeout(behaviour: Behaviour, idle: &str) -> (Backend, Elbe) {
    let backend = Backend::start(behaviour).await;
    let elbe = ConfigBuilder::new()
        .lb(&format!("idle_timeout = \"{idle}\""))
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    (backend, elbe)
}

/// Connects to `address` and writes `bytes` (a request, or part of one), leaving the connection open.
pub async fn send(address: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// The JSON body an Echo instance answered, from a raw HTTP/1.x response.
pub fn raw_json(response: &str) -> serde_json::Value {
    let start = response.find("\r\n\r\n").expect("a complete head") + 4;
    serde_json::from_str(&response[start..])
        .unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

/// Polls `condition` every 50 ms until it holds or `limit` passes; whether it held.
pub async fn poll_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of every series of the metric `name` in Prometheus text (all nodes and zones).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
