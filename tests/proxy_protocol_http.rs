//! `accept_proxy_protocol = true` on HTTP and HTTPS listeners (elbe's extension, for running behind another Layer 4
//! balancer; DESIGN.md "Listener rules", ELB-SPEC §1.2, §7, §11) over real sockets: the client a trusted upstream's
//! PROXY v1 or v2 header names is the client in X-Forwarded-For, in listener rules' `source_ip` and in the access
//! log, over HTTP/1, h2c, and TLS (the header comes before the handshake) with HTTP/1 and h2 by ALPN; a v2 LOCAL
//! keeps the socket's peer; a missing, malformed or late header closes the connection without a response (and is
//! counted); a listener without the option still answers `PROXY ...` with 400.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

/// An HTTP listener (any free port) that accepts PROXY headers.
const PROXIED_HTTP: &str = "[[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\n\
                            instance_protocol = \"HTTP\"\ninstance_port = 80\naccept_proxy_protocol = true\n";

/// elbe with one Echo instance behind `listener`, `lb` lines on the load balancer and `limits` lines.
async fn elbe_behind_upstream(listener: String, lb: &str, limits: &str) -> (Backend, Elbe) {
    let backend = Backend::start(Behaviour::Echo).await;
    let mut builder = ConfigBuilder::new();
    builder.listeners = vec![listener];
    let mut builder = builder.instance(instance("i-1", "zone-a", &backend));
    if !lb.is_empty() {
        builder = builder.lb(lb);
    }
    if !limits.is_empty() {
        builder = builder.limit(limits);
    }
    (backend, builder.start().await)
}

/// A v1 line for a TCP4 client.
fn v1_tcp4(source: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {source} 10.0.0.1 {port} 80\r\n").into_bytes()
}

/// A v2 header: PROXY (`command` 1) or LOCAL (0), TCP over IPv4, from `source`.
fn v2_tcp4(command: u8, source: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x20 | command, 0x11, 0x00, 0x0c]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[10, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&80u16.to_be_bytes());
    header
}

/// Connects to `node` as the upstream would: the header first.
async fn upstream(node: SocketAddr, header: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(node).await.unwrap();
    stream.write_all(header).await.unwrap();
    stream
}

/// One GET `path` with hyper's HTTP/1.1 client over `io`.
async fn get_over<IO>(io: IO, path: &str) -> Reply
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "app.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    reply(sender.send_request(request).await.expect("a response")).await
}

/// One GET `path` with hyper's HTTP/2 client over `io` (prior knowledge, or after ALPN h2).
async fn get_over_h2<IO>(io: IO, path: &str) -> Reply
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://app.example{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    reply(sender.send_request(request).await.expect("a response")).await
}

async fn reply(response: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Reads until the server closes (or 3 s pass, which fails): what it sent before closing.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "elbe did not close the connection within 3 s");
    seen
}

/// `elbe_proxy_protocol_refused_total` for zone-a, from the admin listener's /metrics.
async fn refused_count(elbe: &Elbe) -> u64 {
    let metrics = admin_get(elbe, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    text.lines()
        .find(|l| l.starts_with("elbe_proxy_protocol_refused_total{") && l.contains("zone-a"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no elbe_proxy_protocol_refused_total in\n{text}"))
}

#[tokio::test]
async fn a_v1_header_names_the_client_in_x_forwarded_for_and_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lb = format!(
        "access_log = {{ enabled = true, path = \"{}\" }}",
        log.display()
    );
    let (_backend, elbe) = elbe_behind_upstream(PROXIED_HTTP.into(), &lb, "").await;
    let node = elbe.node("zone-a");
    // The header arrives in two pieces, the second with the request behind it: elbe waits for the whole line and
    // keeps what follows for the HTTP server.
    let mut stream = upstream(node, b"PROXY TCP4 203.0.1").await;
    stream
        .write_all(b"13.7 10.0.0.1 4000 80\r\nGET /first HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream, Duration::from_secs(3)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = raw_json(&response);
    let xff: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == "x-forwarded-for")
        .map(|pair| pair[1].as_str().unwrap())
        .collect();
    assert_eq!(xff, ["203.0.113.7"], "{seen}");
    drop(stream);
    assert!(elbe.shutdown().await);
    let line = std::fs::read_to_string(&log).unwrap();
    assert_eq!(line.split(' ').nth(2), Some("203.0.113.7:4000"), "{line}");
}

#[tokio::test]
async fn a_v2_header_names_the_client_and_a_v2_local_keeps_the_socket_peer() {
    let (_backend, elbe) = elbe_behind_upstream(PROXIED_HTTP.into(), "", "").await;
    let node = elbe.node("zone-a");
    let proxied = upstream(node, &v2_tcp4(1, [198, 51, 100, 22], 35646)).await;
    let reply = get_over(proxied, "/v2").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.backend_header("x-forwarded-for").as_deref(),
        Some("198.51.100.22")
    );
    assert_eq!(
        reply.backend_header("x-forwarded-port").as_deref(),
        Some(&*node.port().to_string())
    );

    // LOCAL: the upstream's own health check; the address block is there but names no client.
    let local = upstream(node, &v2_tcp4(0, [198, 51, 100, 22], 35646)).await;
    let reply = get_over(local, "/local").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.backend_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_tcp6_line_puts_an_ipv6_client_in_x_forwarded_for() {
    let (_backend, elbe) = elbe_behind_upstream(PROXIED_HTTP.into(), "", "").await;
    let stream = upstream(
        elbe.node("zone-a"),
        b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n",
    )
    .await;
    let reply = get_over(stream, "/six").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.backend_header("x-forwarded-for").as_deref(),
        Some("2001:db8::7")
    );
    assert!(elbe.shutdown().await);
}

/// A block of the upstream's clients answered by elbe itself, and a rule for the socket's own peer.
const SOURCE_RULES: &str = r#"
[[load_balancer.rule]]
load_balancer_port = 0
priority = 1
source_ip = ["203.0.113.0/24"]
action = { type = "fixed_response", status_code = 403, content_type = "text/plain", message_body = "carried address" }

[[load_balancer.rule]]
load_balancer_port = 0
priority = 2
source_ip = ["127.0.0.1/32"]
action = { type = "fixed_response", status_code = 200, content_type = "text/plain", message_body = "socket peer" }
"#;

#[tokio::test]
async fn rules_match_source_ip_on_the_carried_address_not_the_socket_peer() {
    let (backend, elbe) = elbe_behind_upstream(PROXIED_HTTP.into(), SOURCE_RULES, "").await;
    let node = elbe.node("zone-a");
    let carried = get_over(upstream(node, &v1_tcp4("203.0.113.7", 4000)).await, "/").await;
    assert_eq!(
        (carried.status.as_u16(), &carried.body[..]),
        (403, &b"carried address"[..])
    );

    // Elsewhere: neither rule matches although the socket's peer is 127.0.0.1, so the request goes on.
    let elsewhere = get_over(upstream(node, &v1_tcp4("198.51.100.9", 4000)).await, "/").await;
    assert_eq!(elsewhere.status, 200);
    assert_eq!(
        elsewhere.backend_header("x-forwarded-for").as_deref(),
        Some("198.51.100.9")
    );
    assert_eq!(backend.requests(), 1);

    // A v2 LOCAL names no client: the socket's peer is the client, and its rule matches.
    let local = get_over(
        upstream(node, &v2_tcp4(0, [203, 0, 113, 7], 4000)).await,
        "/",
    )
    .await;
    assert_eq!(
        (local.status.as_u16(), &local.body[..]),
        (200, &b"socket peer"[..])
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_follows_the_header() {
    let (_backend, elbe) = elbe_behind_upstream(PROXIED_HTTP.into(), "", "").await;
    let stream = upstream(elbe.node("zone-a"), &v1_tcp4("203.0.113.8", 5000)).await;
    let reply = get_over_h2(stream, "/h2c").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["version"],
        "HTTP/1.1",
        "elbe speaks HTTP/1.1 to instances"
    );
    assert_eq!(
        reply.backend_header("x-forwarded-for").as_deref(),
        Some("203.0.113.8")
    );
    assert!(elbe.shutdown().await);
}

/// A client that trusts only the development CA and offers `alpn`.
fn tls_client(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(format!("{CERTS}/dev-ca.crt")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn https_reads_the_header_before_the_tls_handshake_for_http1_and_h2() {
    let listener = format!(
        "[[load_balancer.listener]]\nprotocol = \"HTTPS\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\n\
         instance_port = 80\naccept_proxy_protocol = true\n\
         certificates = [{{ cert = \"{CERTS}/localhost.crt\", key = \"{CERTS}/localhost.key\" }}]\n"
    );
    let (_backend, elbe) = elbe_behind_upstream(listener, "", "").await;
    let node = elbe.node("zone-a");
    let name = ServerName::try_from("localhost").unwrap();
    for (alpn, source) in [(&b"http/1.1"[..], "203.0.113.9"), (b"h2", "203.0.113.10")] {
        // openssl s_client cannot put a PROXY line in front: the header goes on the raw socket, then rustls.
        let raw = upstream(node, &v1_tcp4(source, 6000)).await;
        let tls = tls_client(&[alpn])
            .connect(name.clone(), raw)
            .await
            .expect("the handshake after the header succeeds");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let reply = if alpn == b"h2" {
            get_over_h2(tls, "/secure").await
        } else {
            get_over(tls, "/secure").await
        };
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.backend_header("x-forwarded-for").as_deref(),
            Some(source)
        );
        assert_eq!(
            reply.backend_header("x-forwarded-proto").as_deref(),
            Some("https")
        );
    }
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_missing_malformed_or_late_header_closes_without_a_response() {
    let (backend, elbe) = elbe_behind_upstream(
        PROXIED_HTTP.into(),
        "",
        "request_header_timeout = \"300ms\"",
    )
    .await;
    let node = elbe.node("zone-a");
    for opening in [
        &b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n"[..],
        b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 80\r\nGET / HTTP/1.1\r\nHost: app.example\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c",
        // Late: half a header, then nothing until the request header timeout.
        b"PROXY TCP4 203.0.113.7 ",
    ] {
        let mut stream = upstream(node, opening).await;
        let seen = until_closed(&mut stream).await;
        assert!(
            seen.is_empty(),
            "{:?} got {:?}",
            String::from_utf8_lossy(opening),
            String::from_utf8_lossy(&seen)
        );
    }
    // Silent: no byte at all.
    let mut silent = TcpStream::connect(node).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    assert_eq!(backend.requests(), 0);
    assert_eq!(refused_count(&elbe).await, 5);
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn a_listener_without_the_option_answers_a_proxy_line_with_400() {
    let (backend, elbe) = elbe_behind_upstream(
        PROXIED_HTTP.replace("accept_proxy_protocol = true\n", ""),
        "",
        "",
    )
    .await;
    let mut bytes = v1_tcp4("203.0.113.7", 4000);
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    let response = raw_response(elbe.node("zone-a"), &bytes, Duration::from_secs(3)).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert_eq!(backend.requests(), 0);
    assert_eq!(refused_count(&elbe).await, 0);
    assert!(elbe.shutdown().await);
}
