//! Client timers never outlast ELB's (DESIGN.md; issue 12 §4): the request-header timer and the silent-connection
//! timer are bounded by the listener's `idle_timeout`, ELB's only front-end timer (ELB-SPEC §5). With
//! `idle_timeout = "500ms"` and `request_header_timeout = "10s"`, a stalled head gets ELB's 408 byte for byte and a
//! silent connection is closed, both after about 0.5 s; when the header timeout is the shorter one, it still wins.
//!
//! Real sockets, so the clock is real: each test asserts a lower bound (the timer did not fire early) and an upper
//! bound far below the longer timer (the shorter one fired), with slack for a loaded machine.
mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// ELB's 408 as captured (ELB-SPEC §9), including `Content-Length:0` without a space.
const ELB_408: &str =
    "HTTP/1.1 408 REQUEST_TIMEOUT\r\nContent-Length:0\r\nConnection: Close\r\n\r\n";

/// Slack above a 500 ms timer for a loaded machine; still a fifth of the 10 s timer it must beat.
const LATEST: Duration = Duration::from_secs(2);

/// Fired no earlier than this: a 500 ms timer, less the clock's granularity.
const EARLIEST: Duration = Duration::from_millis(450);

/// elbe with no instance (a 408 and a close need none), and the two timers.
async fn elbe_with(idle_timeout: &str, request_header_timeout: &str) -> Elbe {
    ConfigBuilder::new()
        .lb(&format!("idle_timeout = \"{idle_timeout}\""))
        .limit(&format!(
            "request_header_timeout = \"{request_header_timeout}\""
        ))
        .start()
        .await
}

/// Reads until elbe closes `stream` (at most 15 s, past the longer timer); what came back, and when it closed,
/// measured from `since`.
async fn until_closed(stream: &mut TcpStream, since: Instant) -> (String, Duration) {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut out))
        .await
        .expect("elbe closes the connection")
        .expect("read until close");
    (String::from_utf8_lossy(&out).into_owned(), since.elapsed())
}

#[tokio::test]
async fn a_stalled_head_gets_elbs_408_at_the_idle_timeout_when_the_header_timeout_is_longer() {
    let elbe = elbe_with("500ms", "10s").await;
    let started = Instant::now();
    let mut stream = send(
        elbe.node("zone-a"),
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Stalled: ",
    )
    .await;
    let (response, after) = until_closed(&mut stream, started).await;
    assert_eq!(response, ELB_408, "ELB's exact 408 bytes, then close");
    assert!(
        (EARLIEST..LATEST).contains(&after),
        "408 after {after:?}; the 500 ms idle timeout bounds the 10 s header timeout"
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_idle_timeout_when_the_header_timeout_is_longer() {
    let elbe = elbe_with("500ms", "10s").await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
    let (response, after) = until_closed(&mut stream, started).await;
    assert_eq!(response, "", "a connection that sent nothing gets nothing");
    assert!(
        (EARLIEST..LATEST).contains(&after),
        "closed after {after:?}; the 500 ms idle timeout bounds the 10 s header timeout"
    );
}

#[tokio::test]
async fn a_shorter_header_timeout_still_wins_over_the_idle_timeout() {
    let elbe = elbe_with("10s", "500ms").await;
    let started = Instant::now();
    let mut stream = send(elbe.node("zone-a"), b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    let (response, after) = until_closed(&mut stream, started).await;
    assert_eq!(response, ELB_408);
    assert!(
        (EARLIEST..LATEST).contains(&after),
        "408 after {after:?}; the 500 ms header timeout is the tighter one"
    );
}
