//! elbe's HTTP/1.1 client over TLS (`instance_protocol = "HTTPS"`) against a rustls instance on a real socket:
//! an exchange whose upload and download outgrow rustls's buffers, and the idle checks a pooled TLS connection
//! gets (session tickets are not a close; a close_notify is).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::super::*;
use crate::data_plane::back_end::tls;
use crate::data_plane::body::{ClientBody, RequestBody};

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

fn acceptor() -> tokio_rustls::TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(format!("{CERTS}/localhost.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{CERTS}/localhost.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS instance for one connection: reads a request of `upload` body bytes after its head, answers with
/// `download` bytes of body, and keeps the connection open.
async fn instance(upload: usize, download: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut tls = acceptor().accept(stream).await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n");
            if head_end.is_some_and(|end| seen.len() >= end + 4 + upload) {
                break;
            }
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "elbe closed before the whole request arrived");
            seen.extend_from_slice(&chunk[..n]);
        }
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {download}\r\n\r\n");
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&vec![b'x'; download]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    addr
}

async fn connect(addr: SocketAddr) -> BackendConnection {
    let client = Some(tls::unverified().unwrap());
    BackendConnection::connect(addr, Duration::from_secs(5), &client)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_large_upload_and_download_cross_a_tls_connection_which_is_then_reusable() {
    const SIZE: usize = 1024 * 1024;
    let addr = instance(SIZE, SIZE).await;
    let (body, sender) = ClientBody::channel(Some(SIZE as u64));
    for _ in 0..16 {
        sender.send(Ok(Frame::data(Bytes::from(vec![b'u'; SIZE / 16]))));
    }
    drop(sender);
    let request = Request::post("/upload")
        .header("host", "app.example")
        .header("content-length", SIZE.to_string())
        .body(RequestBody::Client(body))
        .unwrap();
    let mut exchange = Exchange::new(connect(addr).await, Outgoing::new(request));
    let response = exchange.response_head().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0;
    while let Some(frame) = std::future::poll_fn(|cx| exchange.poll_body(cx)).await {
        received += frame.unwrap().into_data().map_or(0, |data| data.len());
    }
    assert_eq!(received, SIZE);
    assert!(
        exchange.into_reusable().is_some(),
        "a cleanly ended exchange leaves the TLS connection reusable"
    );
}

/// A TLS instance for one connection that sends nothing itself (rustls's TLS 1.3 server sends its session
/// tickets after the handshake), then its close_notify when told to.
async fn quiet_instance() -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (close, closing) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut tls = acceptor().accept(stream).await.unwrap();
        let _ = closing.await;
        tls.shutdown().await.unwrap();
        // The TCP connection stays open: only the close_notify says the instance is done.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    (addr, close)
}

#[tokio::test]
async fn an_idle_tls_connection_is_open_after_session_tickets_and_closed_after_close_notify() {
    let (addr, close) = quiet_instance().await;
    let mut conn = connect(addr).await;
    // The session tickets arrive after the handshake and make the socket readable: not a close.
    for _ in 0..20 {
        assert!(!conn.closed_while_idle(), "session tickets are not a close");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    close.send(()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !conn.closed_while_idle() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the close_notify is seen"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every request's future holds a connect's space (`forward` boxes it whole): the TLS handshake must not make it
/// larger than a plain connect's.
#[test]
fn connecting_in_tls_adds_no_size_to_the_connect_future() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let tls = Some(tls::unverified().unwrap());
    let connect = BackendConnection::connect(addr, Duration::from_secs(1), &tls);
    let tcp = super::super::connection::connect_tcp(addr, Duration::from_secs(1));
    assert!(
        std::mem::size_of_val(&connect) <= std::mem::size_of_val(&tcp) + 128,
        "connect future {} bytes, TCP alone {}",
        std::mem::size_of_val(&connect),
        std::mem::size_of_val(&tcp)
    );
}
