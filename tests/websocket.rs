//! WebSockets through HTTP and HTTPS listeners (elbe's departure from ELB Classic, DESIGN.md "WebSockets"), with a
//! real WebSocket client and server (tokio-tungstenite): the upgrade is forwarded with X-Forwarded-*, the
//! instance's 101 turns the connection into a tunnel, bytes pass both ways, the idle timeout closes a silent
//! tunnel, and the upgrade is one access-log line and one count in the metrics.
mod common;
mod websocket_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::Message;
use websocket_support::{header, rec};

/// The echo instance's first message: the X-Forwarded-For it saw in the handshake (`-` when none).
fn forwarded_for(request: &Request) -> String {
    format!("x-forwarded-for: {}", header(request, "x-forwarded-for"))
}

async fn echo_instance() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    websocket_support::echo_instance(forwarded_for).await
}

#[tokio::test]
async fn a_websocket_goes_through_with_x_forwarded_for_and_echoes_both_ways() {
    let (instance, _task) = echo_instance().await;
    let elbe = ConfigBuilder::new().instance(rec(instance)).start().await;
    let url = format!("ws://{}/chat", elbe.node("zone-a"));
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the handshake through elbe");
    assert_eq!(response.status(), 101);
    let first = socket.next().await.unwrap().unwrap();
    assert_eq!(first, Message::text("x-forwarded-for: 127.0.0.1"));
    for i in 0..20 {
        socket
            .send(Message::text(format!("hello {i}")))
            .await
            .unwrap();
        let answer = socket.next().await.unwrap().unwrap();
        assert_eq!(answer, Message::text(format!("echo: hello {i}")));
    }
    // A large message crosses whole, in both directions.
    let big = "x".repeat(300_000);
    socket.send(Message::text(big.clone())).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert_eq!(
        answer.into_text().unwrap().len(),
        "echo: ".len() + big.len()
    );
    socket.close(None).await.unwrap();
    let metrics = String::from_utf8(admin_get(&elbe, "/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("elbe_websocket_upgrades_total{") && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    let (instance, _task) = echo_instance().await;
    let elbe = ConfigBuilder::new()
        .instance(rec(instance))
        .lb("idle_timeout = \"300ms\"")
        .start()
        .await;
    let url = format!("ws://{}/quiet", elbe.node("zone-a"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let _greeting = socket.next().await.unwrap().unwrap();
    let started = tokio::time::Instant::now();
    // Nothing moves either way: elbe closes the tunnel, the client sees the connection end.
    let ended = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("closed by elbe");
    let waited = started.elapsed();
    assert!(
        ended.is_none() || matches!(ended, Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{ended:?}"
    );
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
}

/// An instance that refuses the upgrade answers an ordinary response, which reaches the client as one; a request
/// asking for any other protocol (h2c) reaches the instance without its Upgrade line.
#[tokio::test]
async fn refused_upgrades_are_ordinary_responses_and_other_upgrades_are_stripped() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    // The echo backend (hyper) does not switch: its 200 describes the request it got.
    let answer = raw_response(
        elbe.node("zone-a"),
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let seen = raw_json(&answer);
    let header = |seen: &serde_json::Value, name: &str| {
        seen["headers"]
            .as_array()
            .and_then(|pairs| pairs.iter().find(|pair| pair[0] == name))
            .map(|pair| pair[1].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        header(&seen, "upgrade").as_deref(),
        Some("websocket"),
        "{seen}"
    );
    assert_eq!(
        header(&seen, "connection").as_deref(),
        Some("upgrade"),
        "{seen}"
    );
    let answer = raw_response(
        elbe.node("zone-a"),
        b"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let seen = raw_json(&answer);
    assert_eq!(header(&seen, "upgrade"), None, "{seen}");
    assert_eq!(header(&seen, "http2-settings"), None, "{seen}");
    assert_eq!(header(&seen, "connection"), None, "{seen}");
}

/// An instance that answers 101 to a request that did not ask to switch is broken: ELB's 502.
#[tokio::test]
async fn a_101_nobody_asked_for_is_a_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if let Ok(n) = stream.read(&mut buf).await {
                    if n > 0 {
                        let _ = stream
                            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    let elbe = ConfigBuilder::new().instance(rec(address)).start().await;
    let answer = raw_response(
        elbe.node("zone-a"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
}

#[tokio::test]
async fn the_upgrade_is_one_access_log_line_with_101() {
    let (instance, _task) = echo_instance().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let elbe = ConfigBuilder::new()
        .instance(rec(instance))
        .lb(&format!(
            "access_log = {{ enabled = true, path = \"{}\" }}",
            log.display()
        ))
        .start()
        .await;
    let url = format!("ws://{}/logged", elbe.node("zone-a"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let _greeting = socket.next().await.unwrap().unwrap();
    socket.send(Message::text("one")).await.unwrap();
    let _ = socket.next().await.unwrap().unwrap();
    socket.close(None).await.unwrap();
    while socket.next().await.is_some() {}
    // The client's end of the TCP connection too: the tunnel ends when both sides have closed.
    drop(socket);
    // The line is written when the tunnel ends; shutdown flushes the log.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while elbe.server().live_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(elbe.shutdown().await);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains(" 101 101 "), "{text}");
    assert!(lines[0].contains("\"GET http://"), "{text}");
    assert!(lines[0].contains("/logged HTTP/1.1\""), "{text}");
}

/// `wss://` through an HTTPS listener: TLS from the client to elbe, plain TCP from elbe to the instance.
#[tokio::test]
async fn a_websocket_goes_through_an_https_listener() {
    let (instance, _task) = echo_instance().await;
    let elbe = ConfigBuilder::new()
        .https(None)
        .instance(rec(instance))
        .start()
        .await;
    let node = elbe.node_for("zone-a", elbe::config::Protocol::Https);
    let tls = tls_client(node).await;
    let request = format!("wss://localhost:{}/secure", node.port());
    let (mut socket, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("wss handshake");
    assert_eq!(response.status(), 101);
    let _greeting = socket.next().await.unwrap().unwrap();
    socket.send(Message::text("over tls")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("echo: over tls")
    );
}

/// A TLS connection to elbe's HTTPS listener that trusts the development CA.
async fn tls_client(address: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(address).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, stream).await.unwrap()
}
