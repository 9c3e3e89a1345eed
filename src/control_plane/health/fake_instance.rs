//! Scriptable instances over real loopback sockets for the health tests: HTTP and HTTPS servers answering with a
//! settable status, a one-shot responder that sends given bytes, a closed port.
//!
//! Each binds port 0 and runs on the test's runtime, so tests never share a port or depend on a daemon. Trade-off:
//! these are real sockets, so tests that use them run on the real clock (a paused clock would jump ahead while the
//! runtime waits on the kernel); the checker's schedule is tested with scripted probes instead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Reads a request head (bounded), returning it; empty if the client sent nothing.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    head
}

/// Reads a request and answers it with `status` and no body, then closes; returns the request head.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: u16) -> Vec<u8> {
    let head = read_head(&mut stream).await;
    let response =
        format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    head
}

/// An HTTP server answering every request with the current `status`; counts the requests it answered.
pub(super) async fn http_server(
    ip: &str,
    status: Arc<AtomicU16>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (status, counter) = (status.clone(), counter.clone());
            tokio::spawn(async move {
                counter.fetch_add(1, Ordering::Relaxed);
                answer(stream, status.load(Ordering::Relaxed)).await;
            });
        }
    });
    (addr, requests)
}

/// Accepts one connection, reads once, writes `response` and closes; sends what it read.
pub(super) async fn raw_server(
    response: &'static [u8],
) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
        let _ = tx.send(buf[..n].to_vec());
    });
    (addr, rx)
}

/// A loopback address nothing listens on (the port was bound, then freed).
pub(super) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A TLS acceptor with the repository's localhost certificate.
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_file_iter(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/localhost.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    let key =
        PrivateKeyDer::from_pem_file(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/localhost.key"))
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS server answering HTTP with `status`.
pub(super) async fn https_server(status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls_acceptor();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    answer(tls, status).await;
                }
            });
        }
    });
    addr
}
