//! HTTPS listeners over real sockets (issue 3): TLS termination then HTTP proxying, protocol versions and SNI,
//! the security policy seen from OpenSSL, ALPN h2 (hyper and curl), certificate hot reload, the handshake timeout,
//! and session resumption.
mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use elbe::config::Protocol;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};
use rustls::{
    ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

/// Upper bound for any single network step; a test that needs longer is hung, not slow.
const STEP: Duration = Duration::from_secs(10);

/// Runs `future`, failing the test if it takes longer than [`STEP`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

fn cert_path(name: &str) -> PathBuf {
    Path::new(CERTS).join(name)
}

/// The DER of the first certificate in `certs/<name>.crt` (the `#` comment line is skipped by the PEM parser).
fn leaf(name: &str) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(cert_path(&format!("{name}.crt")))
        .unwrap()
        .next()
        .expect("a certificate in the file")
        .unwrap()
}

/// A client that trusts only the development CA, speaks `versions` and offers `alpn`.
fn client(versions: &[&'static SupportedProtocolVersion], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(leaf("dev-ca")).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS 1.3 and 1.2, ALPN http/1.1.
fn default_client() -> Arc<ClientConfig> {
    client(&[&TLS13, &TLS12], &[b"http/1.1"])
}

/// The same client without the SNI extension (the name is still used to verify the certificate).
fn without_sni(config: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = (**config).clone();
    config.enable_sni = false;
    Arc::new(config)
}

/// A TLS connection to `address`, verifying the certificate against `name` (sent as SNI when it is a DNS name and
/// the config enables SNI; rustls never sends an IP address as SNI).
async fn connect(
    address: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
) -> TlsStream<TcpStream> {
    try_connect(address, config, name)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {address} as {name:?}: {e}"))
}

async fn try_connect(
    address: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    within("TLS handshake", async {
        let tcp = TcpStream::connect(address).await?;
        TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
    })
    .await
}

/// The leaf certificate the server presented.
fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0]
        .clone()
        .into_owned()
}

type Http1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Starts HTTP/1.1 on an established TLS connection; the connection task runs until the stream closes.
async fn http1(stream: TlsStream<TcpStream>) -> Http1 {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends `request` and reads the whole response.
async fn send(sender: &mut Http1, request: Request<Full<Bytes>>) -> Reply {
    within("response", async {
        sender.ready().await.expect("connection still usable");
        let response = sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
}

fn get_request(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "app.example")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One GET over a fresh TLS connection.
async fn https_get(
    address: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
    path: &str,
) -> Reply {
    let mut sender = http1(connect(address, config, name).await).await;
    send(&mut sender, get_request(path)).await
}

/// An elbe with an HTTP listener and an HTTPS listener (localhost then example certificates) and one Echo backend.
async fn https_elbe(builder: ConfigBuilder, backend: &Backend) -> (Elbe, SocketAddr) {
    let elbe = builder
        .https(None)
        .instance(instance("i-1", "zone-a", backend))
        .start()
        .await;
    let address = elbe.node_for("zone-a", Protocol::Https);
    (elbe, address)
}

/// Runs an external command with `stdin`, bounded by [`STEP`]; `None` when the program is not installed.
async fn run(program: &str, args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run {program}: {e}"),
    };
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = input.write_all(&stdin).await;
        // Dropping `input` closes the child's stdin.
    });
    Some(within(program, child.wait_with_output()).await.unwrap())
}

fn text(output: &std::process::Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A folder under the system temporary folder, removed when dropped.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new() -> TempDir {
        TempDir(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTPS behaves like HTTP after termination
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn https_listener_forwards_with_x_forwarded_headers() {
    let backend = Backend::start(Behaviour::Echo).await;
    let (elbe, address) = https_elbe(ConfigBuilder::new(), &backend).await;
    let mut sender = http1(connect(address, &default_client(), "localhost").await).await;

    let reply = send(&mut sender, get_request("/plain?q=1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["uri"], "/plain?q=1");
    assert_eq!(
        reply.backend_header("x-forwarded-for").unwrap(),
        "127.0.0.1"
    );
    assert_eq!(reply.backend_header("x-forwarded-proto").unwrap(), "https");
    assert_eq!(
        reply.backend_header("x-forwarded-port").unwrap(),
        address.port().to_string()
    );
    assert_eq!(reply.backend_header("host").unwrap(), "app.example");

    // Same connection: a client's own X-Forwarded-For is appended to, its X-Forwarded-Proto/Port replaced.
    let request = Request::get("/forwarded")
        .header("host", "app.example")
        .header("x-forwarded-for", "10.1.1.1, 192.0.2.9")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-port", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(&mut sender, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.backend_header("x-forwarded-for").unwrap(),
        "10.1.1.1, 192.0.2.9, 127.0.0.1"
    );
    assert_eq!(reply.backend_header("x-forwarded-proto").unwrap(), "https");
    assert_eq!(
        reply.backend_header("x-forwarded-port").unwrap(),
        address.port().to_string()
    );
    assert_eq!(backend.requests(), 2);
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "keep-alive to the instance"
    );

    // The HTTP listener of the same load balancer still says http and its own port.
    let http = elbe_http_reply(&elbe).await;
    assert_eq!(http.backend_header("x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        http.backend_header("x-forwarded-port").unwrap(),
        elbe.node_for("zone-a", Protocol::Http).port().to_string()
    );
}

async fn elbe_http_reply(elbe: &Elbe) -> Reply {
    within(
        "plain HTTP",
        get(elbe.node_for("zone-a", Protocol::Http), "/http"),
    )
    .await
}

// ---------------------------------------------------------------------------------------------------------------
// Versions and SNI
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn tls13_and_tls12_serve_the_certificate_for_each_sni_name() {
    let backend = Backend::start(Behaviour::Echo).await;
    let (_elbe, address) = https_elbe(ConfigBuilder::new(), &backend).await;
    let localhost = leaf("localhost");
    let example = leaf("example");
    assert_ne!(localhost, example);

    for (version, expected_version) in [
        (&TLS13, ProtocolVersion::TLSv1_3),
        (&TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let config = client(&[version], &[b"http/1.1"]);
        for (name, expected) in [
            ("localhost", &localhost),
            ("www.example.test", &example),
            ("api.example.test", &example),
        ] {
            let stream = connect(address, &config, name).await;
            let conn = stream.get_ref().1;
            assert_eq!(conn.protocol_version(), Some(expected_version), "{name}");
            assert_eq!(
                &served(&stream),
                expected,
                "{expected_version:?} SNI {name}"
            );
            let mut sender = http1(stream).await;
            let reply = send(&mut sender, get_request("/sni")).await;
            assert_eq!(reply.status, 200, "{expected_version:?} SNI {name}");
            assert_eq!(reply.backend_header("x-forwarded-proto").unwrap(), "https");
        }

        // No SNI at all (an IP address is never sent as SNI; SNI explicitly disabled): the default certificate,
        // localhost, which also names 127.0.0.1.
        let stream = connect(address, &config, "127.0.0.1").await;
        assert_eq!(
            served(&stream),
            localhost,
            "{expected_version:?} IP, no SNI"
        );
        let stream = connect(address, &without_sni(&config), "localhost").await;
        assert_eq!(
            served(&stream),
            localhost,
            "{expected_version:?} SNI disabled"
        );
        // Without SNI the example certificate is not chosen, so verifying as www.example.test fails.
        let refused = try_connect(address, &without_sni(&config), "www.example.test").await;
        assert!(
            refused.is_err(),
            "{expected_version:?}: example certificate without SNI"
        );
    }
}

#[tokio::test]
async fn openssl_is_refused_tls11_and_gets_the_policy_with_tls12() {
    let backend = Backend::start(Behaviour::Echo).await;
    let (_elbe, address) = https_elbe(ConfigBuilder::new(), &backend).await;
    let connect_to = address.to_string();
    let ca = cert_path("dev-ca.crt");
    let ca = ca.to_str().unwrap();

    // TLS 1.1 only. OpenSSL 3 itself refuses to offer TLS 1.1 at its default security level, so lower it to 0:
    // the ClientHello then really goes out, and it is elbe that must refuse it.
    let Some(tls11) = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect_to,
            "-servername",
            "localhost",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
        b"",
    )
    .await
    else {
        println!("NOTE: the openssl binary is missing; TLS 1.1 refusal and TLS 1.2 policy not checked from outside");
        return;
    };
    let out = text(&tls11);
    assert!(
        !tls11.status.success(),
        "TLS 1.1 handshake succeeded:\n{out}"
    );
    assert!(
        out.contains("CONNECTED("),
        "the client never reached elbe:\n{out}"
    );
    assert!(
        !out.contains("BEGIN CERTIFICATE") && !out.contains("Server certificate"),
        "elbe sent a certificate to a TLS 1.1 client:\n{out}"
    );
    // elbe answers the TLS 1.1 ClientHello with an alert (rustls sends handshake_failure) and nothing else.
    assert!(
        out.contains("no peer certificate available") && out.contains("Cipher is (NONE)"),
        "{out}"
    );
    assert!(
        out.contains("SSL alert number"),
        "expected an alert from elbe:\n{out}"
    );

    // TLS 1.2 with one named suite of the policy, the RSA certificate (by SNI) and a full request.
    let tls12 = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect_to,
            "-servername",
            "www.example.test",
            "-verify_hostname",
            "www.example.test",
            "-CAfile",
            ca,
            "-verify_return_error",
            "-tls1_2",
            "-cipher",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "-ign_eof",
        ],
        b"GET /openssl HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let out = text(&tls12);
    assert!(tls12.status.success(), "{out}");
    assert!(out.contains("Protocol  : TLSv1.2"), "{out}");
    assert!(
        out.contains("Cipher    : ECDHE-RSA-AES128-GCM-SHA256"),
        "{out}"
    );
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"x-forwarded-proto\",\"https\""), "{out}");

    // A TLS 1.2 suite the policy does not have (static RSA, CBC): no handshake.
    let cbc = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect_to,
            "-servername",
            "www.example.test",
            "-tls1_2",
            "-cipher",
            "AES128-SHA",
        ],
        b"",
    )
    .await
    .unwrap();
    let out = text(&cbc);
    assert!(!cbc.status.success(), "AES128-SHA was accepted:\n{out}");
    assert!(out.contains("CONNECTED("), "{out}");
    assert!(!out.contains("BEGIN CERTIFICATE"), "{out}");
}

// ---------------------------------------------------------------------------------------------------------------
// ALPN h2
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn h2_over_tls_with_hyper_reaches_the_instance_as_http11() {
    let backend = Backend::start(Behaviour::Echo).await;
    let (_elbe, address) = https_elbe(ConfigBuilder::new(), &backend).await;
    let config = client(&[&TLS13, &TLS12], &[b"h2", b"http/1.1"]);
    let stream = connect(address, &config, "localhost").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let authority = format!("localhost:{}", address.port());
    // Two streams at once on the one connection.
    let mut replies = Vec::new();
    for path in ["/h2/a?x=1", "/h2/b"] {
        let request = Request::get(format!("https://{authority}{path}"))
            .header("x-forwarded-for", "198.51.100.4")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let sender = &mut sender;
        sender.ready().await.unwrap();
        replies.push(sender.send_request(request));
    }
    for (reply, path) in replies.into_iter().zip(["/h2/a?x=1", "/h2/b"]) {
        let response = within("h2 response", reply).await.expect("h2 response");
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let (parts, body) = response.into_parts();
        let reply = Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        };
        let json = reply.json();
        assert_eq!(json["version"], "HTTP/1.1", "{json}");
        assert_eq!(json["uri"], path, "{json}");
        assert_eq!(reply.backend_header("host").unwrap(), authority);
        assert_eq!(
            reply.backend_header("x-forwarded-for").unwrap(),
            "198.51.100.4, 127.0.0.1"
        );
        assert_eq!(reply.backend_header("x-forwarded-proto").unwrap(), "https");
        assert_eq!(
            reply.backend_header("x-forwarded-port").unwrap(),
            address.port().to_string()
        );
    }
    assert_eq!(backend.requests(), 2);
}

#[tokio::test]
async fn h2_over_tls_with_curl() {
    let backend = Backend::start(Behaviour::Echo).await;
    let (_elbe, address) = https_elbe(ConfigBuilder::new(), &backend).await;
    let port = address.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/curl?h2=1");
    let ca = cert_path("dev-ca.crt");
    let Some(output) = run(
        "curl",
        &[
            "-sS",
            "--http2",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-H",
            "X-Forwarded-For: 203.0.113.7",
            "--write-out",
            "\n%{http_version} %{http_code}",
            &url,
        ],
        b"",
    )
    .await
    else {
        panic!("curl is not installed");
    };
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (body, summary) = stdout.rsplit_once('\n').expect("curl's write-out line");
    assert_eq!(summary, "2 200", "{out}");
    let reply = Reply {
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
        body: Bytes::from(body.to_owned()),
    };
    assert_eq!(reply.json()["version"], "HTTP/1.1");
    assert_eq!(reply.json()["uri"], "/curl?h2=1");
    assert_eq!(
        reply.backend_header("x-forwarded-for").unwrap(),
        "203.0.113.7, 127.0.0.1"
    );
    assert_eq!(reply.backend_header("x-forwarded-proto").unwrap(), "https");
    assert_eq!(
        reply.backend_header("x-forwarded-port").unwrap(),
        port.to_string()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Hot reload
// ---------------------------------------------------------------------------------------------------------------

/// An HTTPS listener (port 0) whose certificates are `names` (`<name>.crt`/`<name>.key`) in `dir`.
fn https_listener(dir: &TempDir, names: &[&str]) -> String {
    let certificates: Vec<String> = names
        .iter()
        .map(|name| {
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                dir.path(&format!("{name}.crt")).display(),
                dir.path(&format!("{name}.key")).display()
            )
        })
        .collect();
    format!(
        "[[load_balancer.listener]]\nprotocol = \"HTTPS\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\n\
         instance_port = 80\ncertificates = [{}]\n",
        certificates.join(", ")
    )
}

/// The configuration file: an HTTPS listener with `names`, after the builder's HTTP listener when `with_http`.
fn write_config(dir: &TempDir, backend: &Backend, names: &[&str], with_http: bool) -> PathBuf {
    let mut builder = ConfigBuilder::new().instance(instance("i-1", "zone-a", backend));
    if !with_http {
        builder.listeners.clear();
    }
    builder.listeners.push(https_listener(dir, names));
    let path = dir.path("elbe.toml");
    std::fs::write(&path, builder.toml()).unwrap();
    path
}

/// The layout the harness builds: an HTTP listener and an HTTPS listener, both on port 0.
#[tokio::test]
async fn reload_swaps_certificates_keeps_connections_and_refuses_a_broken_file() {
    reload_scenario(true).await;
}

/// The same with the HTTPS listener alone.
#[tokio::test]
async fn reload_of_a_lone_https_listener() {
    reload_scenario(false).await;
}

async fn reload_scenario(with_http: bool) {
    let backend = Backend::start(Behaviour::Echo).await;
    let dir = TempDir::new();
    for name in ["localhost", "example"] {
        for ext in ["crt", "key"] {
            let file = format!("{name}.{ext}");
            std::fs::copy(cert_path(&file), dir.path(&file)).unwrap();
        }
    }
    let path = write_config(&dir, &backend, &["localhost"], with_http);
    let config = elbe::config::load(&path).expect("config loads");
    let elbe = Elbe {
        server: Some(elbe::server::start(config).await.expect("elbe starts")),
    };
    elbe.wait_for_first_checks().await;
    let address = elbe.node_for("zone-a", Protocol::Https);
    let client = default_client();
    let no_sni = without_sni(&client);

    let before = connect(address, &no_sni, "localhost").await;
    assert_eq!(served(&before), leaf("localhost"));
    let mut open = http1(before).await;
    assert_eq!(send(&mut open, get_request("/before")).await.status, 200);

    // The example certificate becomes the first (default) one.
    write_config(&dir, &backend, &["example", "localhost"], with_http);
    let reloaded = elbe.server().reload_from(&path).await;
    assert!(
        reloaded.is_ok(),
        "reload with valid certificates: {reloaded:?}"
    );
    let status = admin_get(&elbe, "/status").await.json();
    assert!(status["config"]["last_reload_error"].is_null(), "{status}");

    // The connection opened before the reload still works.
    let reply = send(&mut open, get_request("/same-connection")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["uri"], "/same-connection");
    // A new connection without SNI gets the new default; SNI still finds localhost.
    let after = connect(address, &no_sni, "www.example.test").await;
    assert_eq!(served(&after), leaf("example"));
    let by_name = connect(address, &client, "localhost").await;
    assert_eq!(served(&by_name), leaf("localhost"));

    // A broken certificate file: the reload is refused and /status says why.
    std::fs::write(
        dir.path("example.crt"),
        "-----BEGIN CERTIFICATE-----\nthis is not base64 !!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let refused = elbe.server().reload_from(&path).await;
    let error = refused
        .expect_err("reload with a garbage certificate")
        .to_string();
    assert!(error.contains("example.crt"), "{error}");
    let status = admin_get(&elbe, "/status").await.json();
    let reported = status["config"]["last_reload_error"]
        .as_str()
        .unwrap_or_else(|| panic!("last_reload_error is not set: {status}"));
    assert!(reported.contains("example.crt"), "{reported}");

    // New handshakes still get the previous (example) certificate, and old connections still work.
    let still = connect(address, &no_sni, "www.example.test").await;
    assert_eq!(served(&still), leaf("example"));
    let mut still = http1(still).await;
    assert_eq!(
        send(&mut still, get_request("/after-refusal")).await.status,
        200
    );
    assert_eq!(
        send(&mut open, get_request("/still-open")).await.status,
        200
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Handshake timeout
// ---------------------------------------------------------------------------------------------------------------

/// Opens `n` TCP connections to `address` that never send a byte.
async fn silent_connections(address: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(
            within("connect", TcpStream::connect(address))
                .await
                .unwrap(),
        );
    }
    streams
}

/// Whether elbe closed `stream` (EOF or reset) before `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout_at(deadline, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn silent_tls_clients_are_closed_after_the_handshake_timeout() {
    let backend = Backend::start(Behaviour::Echo).await;
    let builder = ConfigBuilder::new().limit("tls_handshake_timeout = \"100ms\"");
    let (_elbe, address) = https_elbe(builder, &backend).await;

    let started = tokio::time::Instant::now();
    let mut one = within("connect", TcpStream::connect(address))
        .await
        .unwrap();
    assert!(
        closed_by(&mut one, started + Duration::from_secs(1)).await,
        "not closed within 1 s"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(50),
        "closed before the timeout: {elapsed:?}"
    );

    // 50 at once: while they are pending, a real client is served; each is closed within about a second.
    let started = tokio::time::Instant::now();
    let mut silent = silent_connections(address, 50).await;
    let reply = https_get(address, &default_client(), "localhost", "/busy").await;
    assert_eq!(reply.status, 200);
    let deadline = started + Duration::from_millis(1500);
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(
            closed_by(stream, deadline).await,
            "silent connection {i} still open"
        );
    }
}

#[tokio::test]
async fn half_open_handshakes_do_not_block_other_clients() {
    // A long timeout, so the silent connections are certainly still pending in elbe during the request.
    let backend = Backend::start(Behaviour::Echo).await;
    let builder = ConfigBuilder::new().limit("tls_handshake_timeout = \"30s\"");
    let (elbe, address) = https_elbe(builder, &backend).await;
    let silent = silent_connections(address, 50).await;
    // Wait (bounded) until elbe has accepted all of them.
    within("elbe accepts the silent connections", async {
        while elbe.server().live_connections() < 50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for i in 0..3 {
        let reply = https_get(address, &default_client(), "localhost", "/while-busy").await;
        assert_eq!(reply.status, 200, "request {i}");
    }
    assert!(elbe.server().live_connections() >= 50);
    drop(silent);
}

// ---------------------------------------------------------------------------------------------------------------
// Resumption
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn second_connection_from_the_same_client_is_resumed() {
    let backend = Backend::start(Behaviour::Echo).await;
    let (_elbe, address) = https_elbe(ConfigBuilder::new(), &backend).await;
    for versions in [&[&TLS13][..], &[&TLS12][..], &[&TLS13, &TLS12][..]] {
        let config = client(versions, &[b"http/1.1"]);
        let first = connect(address, &config, "localhost").await;
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        // A round trip lets the client read the session tickets sent after a TLS 1.3 handshake.
        let mut sender = http1(first).await;
        assert_eq!(send(&mut sender, get_request("/first")).await.status, 200);

        let second = connect(address, &config, "localhost").await;
        let conn = second.get_ref().1;
        assert_eq!(
            conn.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{versions:?}"
        );
        assert_eq!(served(&second), leaf("localhost"));
        let mut sender = http1(second).await;
        assert_eq!(send(&mut sender, get_request("/second")).await.status, 200);
    }
}

/// A large response over HTTPS reaches a slow reader whole on a keep-alive connection: TLS may accept bytes it
/// cannot send yet, and only a flush sends them (without one the tail waited for the client's next request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_https_response_reaches_a_slow_keep_alive_reader_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 4 << 20;
    let backend = Backend::start(Behaviour::Download(SIZE as u64)).await;
    let (_elbe, address) = https_elbe(ConfigBuilder::new(), &backend).await;
    for round in 0..2 {
        let mut stream = connect(address, &default_client(), "localhost").await;
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (mut got, mut buf) = (Vec::new(), vec![0u8; 16 * 1024]);
        let whole = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    if got.len() >= end + 4 + SIZE {
                        return true;
                    }
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                // A slow reader: the socket fills up behind it.
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        })
        .await;
        assert_eq!(whole, Ok(true), "round {round}: {} bytes", got.len());
    }
}
