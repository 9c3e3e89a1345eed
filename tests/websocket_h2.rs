//! WebSockets for HTTP/2 clients (RFC 8441 extended CONNECT, elbe's departure from ELB Classic: README
//! "WebSockets"), with a real HTTP/2 client (the h2 crate, which sends `:protocol`) and a real WebSocket server as
//! the instance (tokio-tungstenite): elbe advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, forwards the CONNECT as
//! the HTTP/1.1 handshake with its own key, checks the instance's accept, answers 200 and tunnels the stream; the
//! idle timeout closes a silent tunnel, the access log and the metrics count the upgrade, and any other CONNECT is
//! still refused.
mod common;
mod websocket_support;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use websocket_support::{header, rec};

/// The echo instance's first message: the X-Forwarded-For, Sec-WebSocket-Protocol and method of the handshake the
/// instance saw.
fn handshake_seen(request: &Request) -> String {
    format!(
        "x-forwarded-for: {}, protocol: {}, method: {}",
        header(request, "x-forwarded-for"),
        header(request, "sec-websocket-protocol"),
        request.method()
    )
}

async fn echo_instance() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    websocket_support::echo_instance(handshake_seen).await
}

/// An HTTP/2 stream as a byte stream, for tungstenite: DATA frames in, DATA frames out, END_STREAM on shutdown.
struct H2Io {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buf: Bytes,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.buf = data;
                }
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    /// h2 queues what the window does not take yet; a test's messages are small enough for that.
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.send
            .send_data(Bytes::copy_from_slice(buf), false)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

/// An HTTP/2 client connection that saw elbe's SETTINGS allow extended CONNECT.
async fn h2_client<IO>(io: IO) -> h2::client::SendRequest<Bytes>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    h2_client_task(io).await.0
}

/// [`h2_client`], and the task that drives its connection (aborting it closes the socket).
async fn h2_client_task<IO>(io: IO) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    // The server's SETTINGS arrive after the handshake: poll for them, with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !client.is_extended_connect_protocol_enabled() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "elbe's SETTINGS did not enable extended CONNECT (RFC 8441 §3)"
        );
        client = client.ready().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (client, task)
}

/// Sends a CONNECT to `uri`, with `:protocol` when given, and returns the response and the stream.
async fn connect(
    client: &mut h2::client::SendRequest<Bytes>,
    uri: &str,
    protocol: Option<&'static str>,
) -> (http::Response<h2::RecvStream>, h2::SendStream<Bytes>) {
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(uri)
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .body(())
        .unwrap();
    if let Some(protocol) = protocol {
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static(protocol));
    }
    let (response, send) = client.send_request(request, false).expect("request sent");
    (response.await.expect("a response"), send)
}

/// Opens a WebSocket through elbe over `client` and checks the 200 that starts it.
async fn open_websocket(
    client: &mut h2::client::SendRequest<Bytes>,
    uri: &str,
) -> WebSocketStream<H2Io> {
    let (response, send) = connect(client, uri, Some("websocket")).await;
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert!(!response.headers().contains_key("sec-websocket-accept"));
    let io = H2Io {
        send,
        recv: response.into_body(),
        buf: Bytes::new(),
    };
    WebSocketStream::from_raw_socket(io, Role::Client, None).await
}

/// Text messages both ways, the instance's greeting first.
async fn echo_both_ways(socket: &mut WebSocketStream<H2Io>) {
    let greeting = socket.next().await.unwrap().unwrap();
    assert_eq!(
        greeting,
        Message::text("x-forwarded-for: 127.0.0.1, protocol: chat, method: GET")
    );
    for i in 0..10 {
        socket
            .send(Message::text(format!("hello {i}")))
            .await
            .unwrap();
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            Message::text(format!("echo: hello {i}"))
        );
    }
}

#[tokio::test]
async fn an_h2c_websocket_goes_through_as_the_http1_handshake_and_echoes_both_ways() {
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
    let node = elbe.node("zone-a");
    let (mut client, connection) = h2_client_task(TcpStream::connect(node).await.unwrap()).await;
    let mut socket = open_websocket(&mut client, &format!("http://{node}/chat")).await;
    echo_both_ways(&mut socket).await;
    // A large message crosses whole, both ways (flow control on the HTTP/2 side).
    let big = "x".repeat(200_000);
    socket.send(Message::text(big.clone())).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert_eq!(
        answer.into_text().unwrap().len(),
        "echo: ".len() + big.len()
    );
    // The same connection still serves ordinary requests next to the tunnel.
    let (response, _) = connect(&mut client, &format!("{node}"), None).await;
    assert_eq!(response.status(), 400, "a CONNECT without :protocol");
    socket.close(None).await.unwrap();
    while socket.next().await.is_some() {}
    // The instance closed its connection after the close handshake: elbe passed that on as END_STREAM.
    let mut rest = [0u8; 16];
    assert_eq!(socket.get_mut().read(&mut rest).await.unwrap(), 0);
    // Then END_STREAM from the client: both directions of the tunnel have ended. The client goes.
    socket.get_mut().shutdown().await.unwrap();
    drop(socket);
    drop(client);
    connection.abort();
    let metrics = String::from_utf8(admin_get(&elbe, "/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("elbe_websocket_upgrades_total{") && l.ends_with(" 1")),
        "{metrics}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while elbe.server().live_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(elbe.shutdown().await);
    let text = std::fs::read_to_string(&log).unwrap();
    let upgrades: Vec<&str> = text.lines().filter(|l| l.contains("/chat ")).collect();
    assert_eq!(upgrades.len(), 1, "{text}");
    assert!(upgrades[0].contains(" 101 101 "), "{text}");
    assert!(upgrades[0].contains(" HTTP/2.0\""), "{text}");
}

#[tokio::test]
async fn a_websocket_goes_through_an_https_listener_over_http2() {
    let (instance, _task) = echo_instance().await;
    let elbe = ConfigBuilder::new()
        .https(None)
        .instance(rec(instance))
        .start()
        .await;
    let node = elbe.node_for("zone-a", elbe::config::Protocol::Https);
    let mut client = h2_client(tls_h2(node).await).await;
    let uri = format!("https://localhost:{}/secure", node.port());
    let mut socket = open_websocket(&mut client, &uri).await;
    echo_both_ways(&mut socket).await;
}

/// Any CONNECT but RFC 8441's WebSocket is refused as before: no `:protocol`, or another protocol.
#[tokio::test]
async fn other_connects_are_still_refused() {
    let (instance, _task) = echo_instance().await;
    let elbe = ConfigBuilder::new().instance(rec(instance)).start().await;
    let node = elbe.node("zone-a");
    let mut client = h2_client(TcpStream::connect(node).await.unwrap()).await;
    let (response, _) = connect(&mut client, &format!("{node}"), None).await;
    assert_eq!(response.status(), 400);
    let (response, _) = connect(
        &mut client,
        &format!("http://{node}/udp"),
        Some("connect-udp"),
    )
    .await;
    assert_eq!(response.status(), 400);
}

/// An instance whose 101 carries an accept that does not answer elbe's key did not read the handshake: ELB's 502.
#[tokio::test]
async fn a_wrong_sec_websocket_accept_is_a_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if let Ok(n) = stream.read(&mut buf).await {
                    if n > 0 {
                        let _ = stream
                            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaK9kBOwDwI6rCMnKU=\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    let elbe = ConfigBuilder::new().instance(rec(address)).start().await;
    let node = elbe.node("zone-a");
    let mut client = h2_client(TcpStream::connect(node).await.unwrap()).await;
    let (response, _) = connect(&mut client, &format!("http://{node}/ws"), Some("websocket")).await;
    assert_eq!(response.status(), 502);
}

#[tokio::test]
async fn a_silent_h2_tunnel_is_closed_after_the_idle_timeout() {
    let (instance, _task) = echo_instance().await;
    let elbe = ConfigBuilder::new()
        .instance(rec(instance))
        .lb("idle_timeout = \"300ms\"")
        .start()
        .await;
    let node = elbe.node("zone-a");
    let mut client = h2_client(TcpStream::connect(node).await.unwrap()).await;
    let mut socket = open_websocket(&mut client, &format!("http://{node}/quiet")).await;
    let _greeting = socket.next().await.unwrap().unwrap();
    let started = tokio::time::Instant::now();
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

/// A TLS connection to elbe's HTTPS listener that trusts the development CA and offers only h2.
async fn tls_h2(address: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(address).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, stream).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream
}

/// A shutdown drains an idle HTTP/2 connection at once (GOAWAY, then the close), as HTTP/1 keep-alive connections
/// are closed: the drain reaches a connection waiting in hyper's server, so the shutdown finishes well within its
/// 5 s grace instead of cutting the connection at the end of it.
#[tokio::test]
async fn a_shutdown_closes_an_idle_http2_connection_at_once() {
    let (instance, _task) = echo_instance().await;
    let elbe = ConfigBuilder::new().instance(rec(instance)).start().await;
    let node = elbe.node("zone-a");
    let (mut client, connection) = h2_client_task(TcpStream::connect(node).await.unwrap()).await;
    let (response, _) = connect(&mut client, &format!("{node}"), None).await;
    assert_eq!(
        response.status(),
        400,
        "the connection serves (a CONNECT without :protocol)"
    );
    let started = tokio::time::Instant::now();
    assert!(elbe.shutdown().await, "every connection finished in time");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drained in {:?}, not at the grace's end",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(2), connection)
        .await
        .expect("elbe closed the HTTP/2 connection")
        .unwrap();
}
