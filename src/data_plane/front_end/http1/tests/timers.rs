//! The HTTP/1 server's timers on tokio's paused clock (ELB-SPEC.md §5, §9): a silent connection closed at the
//! request-header timeout, a stalled head answered with ELB's 408 at it, a keep-alive connection closed at the idle
//! timeout, a streaming response cut after the idle timeout without progress, and the linger after a close.
//!
//! Each wait is measured exactly, as a difference of `tokio::time::Instant`s: the paused clock moves only when
//! every task waits, and then straight to the next timer, so a test takes no real time and a busy machine cannot
//! make it flaky. The trade-off: the client is the other end of an in-memory stream (`tokio::io::duplex`), never a
//! socket, because a paused clock may jump to a timer while a socket's bytes are still in the kernel (tokio issue
//! #4522). What only a socket shows (framing on the wire, 100-continue, readiness) stays in the real-socket tests
//! of the parent module, on the real clock.

use super::*;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::mpsc;

/// The parent module's settings with the two timeouts apart (request header 300 ms, idle 500 ms), so a test sees
/// which one ran.
fn timers() -> Settings {
    Settings {
        idle_timeout: Duration::from_millis(500).into(),
        ..settings()
    }
}

/// Serves one connection whose client is the returned end of an in-memory stream holding `buffer` bytes each way.
fn serve_in_memory<S>(settings: Settings, stack: S, buffer: usize) -> (DuplexStream, Ended)
where
    S: Service<
            Request<RequestBody>,
            Response = Response<ResponseBody>,
            Error = Infallible,
            Future = Reply,
        > + Send
        + 'static,
{
    let (client, server) = tokio::io::duplex(buffer);
    let metrics = Arc::new(crate::observability::metrics::Metrics::new().zone("web", "zone-a"));
    let ended = tokio::spawn(async move {
        let mut connection = connection(server, stack, settings, metrics);
        let served = std::future::poll_fn(|cx| connection.poll_serve(cx)).await;
        (served, connection.into_parts().1)
    });
    (client, ended)
}

/// The stand-in stack of the parent module, over an in-memory stream of 64 KiB.
fn serve_echoing(settings: Settings) -> (DuplexStream, Ended) {
    serve_in_memory(
        settings,
        stack(Arc::new(tokio::sync::Notify::new())),
        64 * 1024,
    )
}

/// A stack that answers its one request 200 with a body of unknown length (chunked) whose frames are what the
/// test sends on the returned sender; the body ends when the sender is dropped.
fn serve_streaming(
    settings: Settings,
    buffer: usize,
) -> (DuplexStream, Ended, mpsc::Sender<Bytes>) {
    let (frames, body) = mpsc::channel(16);
    let mut body = Some(body);
    let stack = tower::service_fn(move |_: Request<RequestBody>| -> Reply {
        let body = body
            .take()
            .map_or_else(ResponseBody::empty, ResponseBody::scripted);
        Box::pin(std::future::ready(Ok(Response::new(body))))
    });
    let (client, ended) = serve_in_memory(settings, stack, buffer);
    (client, ended, frames)
}

/// Far beyond every timer here: [`bounded`] fails a test still waiting after it instead of hanging (paused, it costs
/// nothing).
const NEVER: Duration = Duration::from_secs(3600);

async fn bounded<F: Future>(future: F) -> F::Output {
    match tokio::time::timeout(NEVER, future).await {
        Ok(output) => output,
        Err(_) => panic!("still waiting after {NEVER:?}"),
    }
}

/// Reads until what arrived contains `end`; returns it.
async fn read_until(client: &mut DuplexStream, end: &str) -> String {
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains(end) {
        let mut buf = [0u8; 4096];
        let n = bounded(client.read(&mut buf)).await.unwrap();
        assert!(
            n > 0,
            "closed before {end:?}: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until elbe closes the connection (or drops it); returns what arrived and when it closed.
async fn read_to_close(client: &mut DuplexStream) -> (Vec<u8>, Instant) {
    let mut out = Vec::new();
    bounded(client.read_to_end(&mut out)).await.unwrap();
    (out, Instant::now())
}

/// Waits for the served connection to end; returns how it ended and when.
async fn ended(served: Ended) -> (io::Result<Served>, Instant) {
    let (served, _) = bounded(served).await.unwrap();
    (served, Instant::now())
}

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_without_a_word_at_exactly_the_request_header_timeout() {
    let started = Instant::now();
    let (mut client, served) = serve_echoing(timers());
    let (out, closed) = read_to_close(&mut client).await;
    assert_eq!(out, b"", "closed without a word");
    assert_eq!(
        closed - started,
        Duration::from(timers().request_header_timeout)
    );
    let (served, at) = ended(served).await;
    assert!(matches!(served, Ok(Served::Closed)), "{served:?}");
    assert_eq!(at, closed, "nothing unread: no linger");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_head_gets_elbs_408_byte_for_byte_at_exactly_the_request_header_timeout() {
    let (mut client, _served) = serve_echoing(timers());
    // Silent for a while first: the head's time runs from its first byte.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first_byte = Instant::now();
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let (out, closed) = read_to_close(&mut client).await;
    assert_eq!(out, ElbResponse::RequestTimeout.http1_bytes(false, true));
    assert_eq!(
        closed - first_byte,
        Duration::from(timers().request_header_timeout)
    );
}

#[tokio::test(start_paused = true)]
async fn a_head_that_trickles_in_still_gets_its_408_at_the_header_timeout_from_its_first_byte() {
    let timeout = Duration::from(timers().request_header_timeout);
    let (mut client, _served) = serve_echoing(timers());
    let first_byte = Instant::now();
    let mut out = Vec::new();
    // A byte every 7 ms, and a look at what came back in between: a byte now and then does not hold the timer off.
    for byte in
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: one byte at a time, for longer than the timeout\r\n"
    {
        client.write_all(&[*byte]).await.unwrap();
        let mut buf = [0u8; 256];
        if let Ok(read) = tokio::time::timeout(7 * MS, client.read(&mut buf)).await {
            out.extend_from_slice(&buf[..read.unwrap()]);
            break;
        }
    }
    let answered = Instant::now();
    let (rest, _) = read_to_close(&mut client).await;
    out.extend_from_slice(&rest);
    assert_eq!(out, ElbResponse::RequestTimeout.http1_bytes(false, true));
    assert_eq!(answered - first_byte, timeout);
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_connection_is_closed_at_exactly_the_idle_timeout_and_not_a_millisecond_before(
) {
    // Longer than the request-header timeout: between requests the idle timeout applies, not the header's.
    let settings = Settings {
        idle_timeout: Duration::from_millis(600).into(),
        ..settings()
    };
    let (mut client, served) = serve_echoing(settings);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let response = read_until(&mut client, "\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let idle_since = Instant::now();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(
        Duration::from(settings.idle_timeout) - MS,
        client.read(&mut byte),
    )
    .await;
    assert!(early.is_err(), "closed before the idle timeout: {early:?}");
    let (rest, closed) = read_to_close(&mut client).await;
    assert_eq!(rest, b"");
    assert_eq!(closed - idle_since, Duration::from(settings.idle_timeout));
    assert!(matches!(ended(served).await.0, Ok(Served::Closed)));
}

#[tokio::test(start_paused = true)]
async fn each_request_starts_the_idle_timeout_afresh() {
    let idle = Duration::from(timers().idle_timeout);
    let (mut client, _served) = serve_echoing(timers());
    for _ in 0..4 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut client, "\r\n\r\n").await;
        tokio::time::sleep(idle - MS).await;
    }
    let last = Instant::now();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "\r\n\r\n").await;
    let (_, closed) = read_to_close(&mut client).await;
    assert_eq!(
        closed - last,
        idle,
        "four idle timeouts less a millisecond each: still open"
    );
}

#[tokio::test(start_paused = true)]
async fn a_response_whose_body_stalls_is_cut_after_the_idle_timeout_without_progress() {
    let idle = Duration::from(timers().idle_timeout);
    let (mut client, served, frames) = serve_streaming(timers(), 64 * 1024);
    client
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    frames.send(Bytes::from_static(b"first")).await.unwrap();
    let head = read_until(&mut client, "first\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let stalled_since = Instant::now();
    let (rest, cut) = read_to_close(&mut client).await;
    assert_eq!(rest, b"", "cut, not ended: no last chunk");
    assert_eq!(cut - stalled_since, idle);
    let (served, at) = ended(served).await;
    assert!(matches!(served, Ok(Served::Closed)), "{served:?}");
    assert_eq!(at, cut);
    drop(frames);

    // The timer is lazy: it looks at the progress once per idle timeout. A byte half a timeout in moves the cut to
    // the look after the next, two timeouts after the stall began (one and a half after the last byte).
    let (mut client, _served, frames) = serve_streaming(timers(), 64 * 1024);
    client
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    frames.send(Bytes::from_static(b"first")).await.unwrap();
    read_until(&mut client, "first\r\n").await;
    let stalled_since = Instant::now();
    tokio::time::sleep(idle / 2).await;
    frames.send(Bytes::from_static(b"second")).await.unwrap();
    read_until(&mut client, "second\r\n").await;
    let (_, cut) = read_to_close(&mut client).await;
    assert_eq!(cut - stalled_since, 2 * idle);
}

#[tokio::test(start_paused = true)]
async fn a_response_that_trickles_a_byte_every_half_idle_timeout_is_not_cut() {
    let idle = Duration::from(timers().idle_timeout);
    let (mut client, served, frames) = serve_streaming(timers(), 64 * 1024);
    let started = Instant::now();
    client
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(idle / 2).await;
            frames.send(Bytes::from_static(b"x")).await.unwrap();
        }
    });
    let response = read_until(&mut client, "\r\n0\r\n\r\n").await;
    let whole = Instant::now();
    assert_eq!(
        whole - started,
        4 * idle,
        "eight bytes, half an idle timeout apart"
    );
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "1\r\nx\r\n".repeat(8) + "0\r\n\r\n");
    // Then it is an idle keep-alive connection like any other.
    let (_, closed) = read_to_close(&mut client).await;
    assert_eq!(closed - whole, idle);
    assert!(matches!(ended(served).await.0, Ok(Served::Closed)));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_after_the_idle_timeout() {
    let idle = Duration::from(timers().idle_timeout);
    // 64 bytes of room: the head fills it, and elbe's writes wait for the client.
    let (mut client, served, frames) = serve_streaming(timers(), 64);
    client
        .write_all(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    frames.send(Bytes::from(vec![b'x'; 4096])).await.unwrap();
    let started = Instant::now();
    let (served, cut) = ended(served).await;
    assert!(matches!(served, Ok(Served::Closed)), "{served:?}");
    assert_eq!(cut - started, idle);
    let (out, _) = read_to_close(&mut client).await;
    assert_eq!(
        out.len(),
        64,
        "what fit in the stream before the client stopped"
    );
    drop(frames);
}

#[tokio::test(start_paused = true)]
async fn lingering_after_a_close_ends_at_exactly_linger_or_when_the_client_closes() {
    // After the 408 the rest of the head is unread: elbe closes its side, then reads and discards for LINGER.
    let (mut client, served) = serve_echoing(timers());
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let (_, closed) = read_to_close(&mut client).await;
    // What the client still sends is discarded, and does not make the linger longer.
    for _ in 0..3 {
        tokio::time::sleep(LINGER / 4).await;
        client.write_all(b"st: x\r\n").await.unwrap();
    }
    let (served, at) = ended(served).await;
    assert!(matches!(served, Ok(Served::Closed)), "{served:?}");
    assert_eq!(at - closed, LINGER);

    // A client that closes too ends the linger at once.
    let (mut client, served) = serve_echoing(timers());
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let (_, closed) = read_to_close(&mut client).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(client);
    let (served, at) = ended(served).await;
    assert!(matches!(served, Ok(Served::Closed)), "{served:?}");
    assert_eq!(at - closed, Duration::from_millis(100));
}
