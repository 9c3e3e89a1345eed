//! TLS to instances (issue 14 item 4; DESIGN.md "TCP and SSL listeners"; ELB-SPEC §1, §12) over real sockets:
//! `instance_protocol = "HTTPS"` on HTTP and HTTPS listeners reaches an HTTPS instance (a rustls server in the
//! test, the development certificates) with the usual X-Forwarded-* headers, on pooled connections; `backend_ca`
//! on the instance port's `[[load_balancer.backend_server]]` verifies the instance's chain (never its name) for
//! HTTPS and SSL instances; a failed verification is ELB's 502 (SSL: the connection closes) and counts in
//! BackendConnectionErrors; reload picks up a changed `backend_ca`; and bad `backend_ca` settings are refused with
//! their key.
mod common;
mod tcp_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tcp_support::{listener, metric, read_n};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// How an HTTPS instance answers each TLS connection.
#[derive(Clone, Copy)]
enum Serves {
    /// HTTP/1.1 keep-alive: 200 with a JSON description of the request's headers.
    Http,
    /// Raw bytes: echoes them back.
    Echo,
    /// A WebSocket server: answers each text message with `echo: <text>`.
    WebSocket,
}

/// A TLS instance on 127.0.0.1 serving the development certificate `cert` (`example`: signed by the development
/// CA for `*.example.test`, so it never names the address it is reached on; `expired`: the same CA, expired).
/// It counts the TLS handshakes that completed: TCP health checks connect and close without one.
struct TlsInstance {
    address: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsInstance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsInstance {
    async fn start(cert: &str, serves: Serves) -> TlsInstance {
        let certs = CertificateDer::pem_file_iter(format!("{CERTS}/{cert}.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(format!("{CERTS}/{cert}.key")).unwrap();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = socket.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    match serves {
                        Serves::Http => serve_http(tls).await,
                        Serves::Echo => echo(tls).await,
                        Serves::WebSocket => websocket_echo(tls).await,
                    }
                });
            }
        });
        TlsInstance {
            address,
            handshakes,
            task,
        }
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

async fn serve_http(tls: tokio_rustls::server::TlsStream<TcpStream>) {
    let service = service_fn(|request: Request<Incoming>| async move {
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = serde_json::json!({ "headers": headers, "uri": request.uri().to_string() });
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn echo(mut tls: tokio_rustls::server::TlsStream<TcpStream>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = tls.read(&mut buf).await {
        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = tls.shutdown().await;
}

async fn websocket_echo(tls: tokio_rustls::server::TlsStream<TcpStream>) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(tls).await else {
        return;
    };
    while let Some(Ok(Message::Text(text))) = socket.next().await {
        if socket
            .send(Message::text(format!("echo: {text}")))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A self-signed CA of its own, made with openssl in `dir`: it signed none of the development certificates.
fn other_ca(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("other-ca.key"), dir.join("other-ca.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=another CA"])
        .args(["-addext", "basicConstraints=critical,CA:true"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(status.success(), "openssl made the other CA");
    cert
}

/// `[[load_balancer.backend_server]]` for instance port 80 with `backend_ca`.
fn backend_server(ca: &Path) -> String {
    format!(
        "\n[[load_balancer.backend_server]]\ninstance_port = 80\nbackend_ca = \"{}\"\n",
        ca.display()
    )
}

/// An HTTPS listener (the development localhost certificate) to `instance_protocol`, plus `extra`.
fn https_listener(instance_protocol: &str, extra: &str) -> String {
    format!(
        "[[load_balancer.listener]]\nprotocol = \"HTTPS\"\nload_balancer_port = 0\ninstance_protocol = \"{instance_protocol}\"\ninstance_port = 80\n\
         certificates = [{{ cert = \"{CERTS}/localhost.crt\", key = \"{CERTS}/localhost.key\" }}]\n{extra}"
    )
}

/// One load balancer, passive health checks off (each failure answers the same), with `listener` and `instance`.
fn builder(listener: String, instance: &TlsInstance) -> ConfigBuilder {
    let mut builder = ConfigBuilder::new().lb("passive_health_checks = false");
    builder.listeners = vec![listener];
    builder.instance(InstanceSpec {
        id: "i-1".into(),
        zone: "zone-a".into(),
        address: instance.address,
    })
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {reply:?}", reply = reply.body))
}

/// A header the instance received, from its JSON.
fn received(reply: &Reply, name: &str) -> Option<String> {
    json(reply)["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0].as_str() == Some(name))
        .and_then(|pair| pair[1].as_str().map(str::to_owned))
}

fn connection_errors(elbe: &Elbe) -> f64 {
    let text = elbe.server().metrics().encode();
    metric(&text, "elbe_backend_connection_errors_total")
}

#[tokio::test]
async fn an_http_listener_reaches_an_https_instance_with_x_forwarded_for_on_one_pooled_connection()
{
    let instance = TlsInstance::start("example", Serves::Http).await;
    let elbe = builder(listener("HTTP", "HTTPS", ""), &instance)
        .start()
        .await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    for n in 0..5 {
        // A new client connection each time: only the pool can carry the instance's connection across them.
        let reply = get(elbe.node("zone-a"), &format!("/n/{n}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(json(&reply)["uri"], format!("/n/{n}"));
        assert_eq!(
            received(&reply, "x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
        // X-Forwarded-Proto describes the client's side, not the instance's.
        assert_eq!(
            received(&reply, "x-forwarded-proto").as_deref(),
            Some("http")
        );
    }
    assert_eq!(
        instance.handshakes(),
        1,
        "five sequential requests share one pooled TLS connection to the instance"
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_websocket_upgrade_tunnels_over_the_https_instance_connection() {
    let instance = TlsInstance::start("example", Serves::WebSocket).await;
    let elbe = builder(listener("HTTP", "HTTPS", ""), &instance)
        .start()
        .await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    let url = format!("ws://{}/chat", elbe.node("zone-a"));
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade goes through elbe to the HTTPS instance");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["one", "two"] {
        socket.send(Message::text(text)).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the instance answers in time")
            .expect("the tunnel is open")
            .unwrap();
        assert_eq!(answer, Message::text(format!("echo: {text}")));
    }
    assert_eq!(instance.handshakes(), 1);
    drop(socket);
    assert!(elbe.shutdown().await);
}

/// An HTTPS client of elbe, trusting the development CA.
async fn https_get(address: SocketAddr, path: &str) -> Reply {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(format!("{CERTS}/dev-ca.crt")).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("elbe's certificate verifies");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default(),
    }
}

#[tokio::test]
async fn an_https_listener_reaches_an_https_instance_verified_by_backend_ca() {
    let instance = TlsInstance::start("example", Serves::Http).await;
    // The instance's certificate names *.example.test, not 127.0.0.1: only the chain is verified.
    let ca = PathBuf::from(format!("{CERTS}/dev-ca.crt"));
    let listener = https_listener("HTTPS", &backend_server(&ca));
    let elbe = builder(listener, &instance).start().await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    let node = elbe.node_for("zone-a", elbe::config::Protocol::Https);
    let reply = https_get(node, "/end-to-end").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        received(&reply, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        received(&reply, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(connection_errors(&elbe), 0.0);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn an_instance_failing_backend_ca_gets_elbs_502_and_counts_as_a_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let other = other_ca(dir.path());
    let instance = TlsInstance::start("example", Serves::Http).await;
    let elbe = builder(
        listener("HTTP", "HTTPS", &backend_server(&other)),
        &instance,
    )
    .start()
    .await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    for attempt in 1..=2 {
        let reply = get(elbe.node("zone-a"), "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "attempt {attempt}");
        assert!(reply.body.is_empty(), "ELB's own responses have no body");
        assert_eq!(connection_errors(&elbe), attempt as f64);
    }
    assert_eq!(
        instance.handshakes(),
        0,
        "no handshake completed with the wrong CA"
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn an_expired_instance_certificate_from_the_right_ca_fails_backend_ca() {
    let instance = TlsInstance::start("expired", Serves::Http).await;
    let ca = PathBuf::from(format!("{CERTS}/dev-ca.crt"));
    let elbe = builder(listener("HTTP", "HTTPS", &backend_server(&ca)), &instance)
        .start()
        .await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    let reply = get(elbe.node("zone-a"), "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(connection_errors(&elbe), 1.0);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn without_backend_ca_nothing_is_verified_as_elb_did() {
    // Expired and not naming the address: ELB without back-end authentication reached it all the same.
    let instance = TlsInstance::start("expired", Serves::Http).await;
    let elbe = builder(listener("HTTP", "HTTPS", ""), &instance)
        .start()
        .await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    let reply = get(elbe.node("zone-a"), "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(elbe.shutdown().await);
}

/// An SSL listener's client: TLS to elbe, trusting the development CA.
async fn ssl_client(address: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(format!("{CERTS}/dev-ca.crt")).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("elbe's certificate verifies")
}

#[tokio::test]
async fn ssl_to_ssl_with_backend_ca_passes_bytes_to_a_verified_instance() {
    let instance = TlsInstance::start("example", Serves::Echo).await;
    let ca = PathBuf::from(format!("{CERTS}/dev-ca.crt"));
    let elbe = builder(listener("SSL", "SSL", &backend_server(&ca)), &instance)
        .start()
        .await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    let mut client = ssl_client(elbe.node("zone-a")).await;
    client.write_all(b"verified both ways").await.unwrap();
    assert_eq!(read_n(&mut client, 18).await, b"verified both ways");
    assert_eq!(instance.handshakes(), 1);
    drop(client);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn ssl_to_ssl_with_another_backend_ca_closes_the_client_and_counts_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let other = other_ca(dir.path());
    let instance = TlsInstance::start("example", Serves::Echo).await;
    let elbe = builder(listener("SSL", "SSL", &backend_server(&other)), &instance)
        .start()
        .await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    let mut client = ssl_client(elbe.node("zone-a")).await;
    let _ = client.write_all(b"never delivered").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("elbe closes the connection in time");
    assert!(
        rest.is_empty(),
        "no instance bytes reach the client: {read:?} {rest:?}"
    );
    assert_eq!(connection_errors(&elbe), 1.0);
    assert_eq!(instance.handshakes(), 0);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_reload_that_changes_backend_ca_applies_to_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    other_ca(dir.path());
    std::fs::copy(format!("{CERTS}/dev-ca.crt"), dir.path().join("dev-ca.pem")).unwrap();
    let instance = TlsInstance::start("example", Serves::Http).await;
    // Relative paths, resolved against the config file's folder as certificates are.
    let write = |ca: &str| {
        let extra = format!(
            "\n[[load_balancer.backend_server]]\ninstance_port = 80\nbackend_ca = \"{ca}\"\n"
        );
        let text = builder(listener("HTTP", "HTTPS", &extra), &instance).toml();
        let path = dir.path().join("elbe.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let path = write("dev-ca.pem");
    let config = elbe::config::load(&path).expect("the configuration loads");
    let elbe = Elbe {
        server: Some(elbe::server::start(config).await.expect("elbe starts")),
    };
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, StatusCode::OK);

    write("other-ca.pem");
    elbe.server()
        .reload_from(&path)
        .await
        .expect("the reload applies");
    let reply = get(elbe.node("zone-a"), "/").await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_GATEWAY,
        "the pooled connection verified by the old CA is not reused"
    );

    write("dev-ca.pem");
    elbe.server()
        .reload_from(&path)
        .await
        .expect("the reload applies");
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, StatusCode::OK);
    assert!(elbe.shutdown().await);
}

/// The configuration error for `backend_server_extra` behind an HTTP listener to `instance_protocol`.
fn config_error(instance_protocol: &str, backend_server_extra: &str) -> String {
    let text = format!(
        "[[load_balancer]]\nname = \"web\"\n\n[[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.0.0.1\"\n\n{}\n\
         [[load_balancer.backend_server]]\ninstance_port = 80\n{backend_server_extra}\n",
        listener("HTTP", instance_protocol, "")
    );
    elbe::config::parse(&text, Path::new(CERTS).join("elbe.toml").as_path())
        .expect_err("the configuration is refused")
        .to_string()
}

#[test]
fn backend_ca_is_refused_on_a_port_no_listener_speaks_tls_to() {
    let error = config_error("HTTP", "backend_ca = \"dev-ca.crt\"");
    assert!(
        error.contains("load_balancer[0].backend_server[0].backend_ca")
            && error.contains("no listener speaks HTTPS or SSL to instance_port 80"),
        "{error}"
    );
}

#[test]
fn backend_ca_is_refused_when_the_file_is_missing_or_holds_no_certificate() {
    let missing = config_error("HTTPS", "backend_ca = \"no-such-ca.pem\"");
    assert!(
        missing.contains("load_balancer[0].backend_server[0].backend_ca")
            && missing.contains("no-such-ca.pem: no such file"),
        "{missing}"
    );
    // A key file is PEM, but holds no certificate.
    let key = config_error("HTTPS", "backend_ca = \"dev-ca.key\"");
    assert!(
        key.contains("load_balancer[0].backend_server[0].backend_ca")
            && key.contains("dev-ca.key: no certificate"),
        "{key}"
    );
    let empty = config_error("HTTPS", "backend_ca = \"\"");
    assert!(empty.contains("must be a file path, not empty"), "{empty}");
}

#[test]
fn backend_ca_is_read_relative_to_the_config_file() {
    let text = format!(
        "[[load_balancer]]\nname = \"web\"\n\n[[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.0.0.1\"\n\n{}\n\
         [[load_balancer.backend_server]]\ninstance_port = 80\nbackend_ca = \"dev-ca.crt\"\n",
        listener("SSL", "SSL", "")
    );
    let config = elbe::config::parse(&text, Path::new(CERTS).join("elbe.toml").as_path())
        .expect("the configuration is valid");
    let ca = config.load_balancers[0].backend_servers[0]
        .backend_ca
        .as_ref()
        .expect("backend_ca is set");
    assert_eq!(ca.path, Path::new(CERTS).join("dev-ca.crt"));
    assert_eq!(ca.certificates.len(), 1);
}
