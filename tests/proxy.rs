//! The core proxy over real sockets: forwarding, X-Forwarded-*, ELB's own responses.
mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn forwards_and_appends_x_forwarded_for() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let request = http::Request::get("/path?q=1")
        .header("host", "app.example")
        .header("x-forwarded-for", "10.1.1.1, 192.0.2.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-port", "1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = request_to(&elbe, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.backend_header("x-forwarded-for").unwrap(),
        "10.1.1.1, 192.0.2.9, 127.0.0.1"
    );
    assert_eq!(reply.backend_header("x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        reply.backend_header("x-forwarded-port").unwrap(),
        elbe.node("zone-a").port().to_string()
    );
    assert_eq!(reply.backend_header("host").unwrap(), "app.example");
    assert_eq!(reply.json()["uri"], "/path?q=1");
    assert_eq!(backend.requests(), 1);
}

async fn request_to(
    elbe: &Elbe,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Reply {
    common::request(elbe.node("zone-a"), request).await
}

#[tokio::test]
async fn no_instance_is_elb_503_with_empty_body() {
    let elbe = ConfigBuilder::new().start().await;
    let out = raw(
        elbe.node("zone-a"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 503 Service Unavailable: Back-end server is at capacity\r\n"),
        "{out}"
    );
    assert!(
        out.to_ascii_lowercase().contains("content-length: 0\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\n"), "body must be empty: {out}");
}

#[tokio::test]
async fn slow_instance_is_elb_504_after_idle_timeout() {
    let backend = Backend::start(Behaviour::Hang).await;
    let elbe = ConfigBuilder::new()
        .lb("idle_timeout = \"300ms\"")
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let started = std::time::Instant::now();
    let out = raw_response(
        elbe.node("zone-a"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 504 GATEWAY_TIMEOUT\r\n"), "{out}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn garbage_from_instance_is_elb_502() {
    let backend = Backend::start(Behaviour::Garbage).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let reply = get(elbe.node("zone-a"), "/").await;
    assert_eq!(reply.status, 502);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn ambiguous_framing_is_400_and_never_reaches_the_instance() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let out = raw(
        elbe.node("zone-a"),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn stalled_request_head_gets_408_and_close() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .limit("request_header_timeout = \"200ms\"")
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    let out = raw(
        elbe.node("zone-a"),
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        out,
        "HTTP/1.1 408 REQUEST_TIMEOUT\r\nContent-Length:0\r\nConnection: Close\r\n\r\n"
    );
    assert_eq!(backend.requests(), 0);
}
