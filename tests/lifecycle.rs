//! Connections over time: streaming with flat memory, client timeouts, graceful shutdown.
mod common;

use std::time::Duration;
use tokio::time::Instant;

use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GIB: u64 = 1024 * 1024 * 1024;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_upload_and_download_stream_with_flat_memory() {
    let echo = Backend::start(Behaviour::Echo).await;
    let download = Backend::start(Behaviour::Download(GIB)).await;
    let up = ConfigBuilder::new()
        .instance(instance("i-up", "zone-a", &echo))
        .start()
        .await;
    let down = ConfigBuilder::new()
        .instance(instance("i-down", "zone-a", &download))
        .start()
        .await;
    let before = rss_bytes();

    let stream = tokio::net::TcpStream::connect(up.node("zone-a"))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post("/upload")
        .header("host", "x")
        .body(Generated::new(GIB))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["body_length"], GIB,
        "the instance received the whole upload"
    );

    let stream = tokio::net::TcpStream::connect(down.node("zone-a"))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(stream))
    .await
    .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::get("/download")
                .header("host", "x")
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame
            .unwrap()
            .data_ref()
            .map(|d| d.len() as u64)
            .unwrap_or(0);
    }
    assert_eq!(received, GIB);
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024,
        "memory grew by {} MiB moving 2 GiB",
        grown / 1024 / 1024
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_backend, elbe) = one_instance_with_idle_timeout(Behaviour::Echo, "150ms").await;
    let mut stream = send(elbe.node("zone-a"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let response = read_response(&mut stream, Duration::from_secs(2)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "elbe must close an idle connection");
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(100),
        "closed too early: {waited:?}"
    );
    assert!(
        rest.is_empty(),
        "an idle close sends nothing: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let elbe = ConfigBuilder::new()
        .limit("request_header_timeout = \"200ms\"")
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(elbe.node("zone-a"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a silent connection must be closed");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(
        rest.is_empty(),
        "nothing to answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn keep_alive_connections_outlive_the_request_header_timeout() {
    // hyper's own header timeout would close idle keep-alive connections; ELB keeps them for the idle timeout.
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .limit("request_header_timeout = \"100ms\"")
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(elbe.node("zone-a"))
        .await
        .unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut stream, Duration::from_secs(2)).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        // Idle for twice the request-header timeout: still open.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_accepting() {
    let backend = Backend::start(Behaviour::Slow(Duration::from_millis(500))).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let node = elbe.node("zone-a");
    let in_flight = tokio::spawn(async move { get(node, "/slow").await });
    while backend.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained = elbe.shutdown().await;
    assert!(
        drained,
        "the in-flight request finished within the grace period"
    );
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        tokio::net::TcpStream::connect(node).await.is_err(),
        "no new connections after shutdown"
    );
}
