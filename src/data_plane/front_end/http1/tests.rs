//! elbe's HTTP/1 server over real sockets, with a stand-in for the proxy stack: what the wire shows (keep-alive,
//! framing, 100-continue, readiness, shutdown, the HTTP/2 preface). Its timers are tested on tokio's paused clock
//! over in-memory streams ([`timers`]).

mod timers;

use super::*;
use crate::data_plane::proxy::answer::elb_answer;
use crate::data_plane::proxy::context::test_support::{context_counting_in, inner, Inner};
use crate::observability::metrics::ZoneMetrics;
use crate::shutdown::{self, ShutdownWatch, Trigger};
use http::HeaderValue;
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

type Reply = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

/// A connection whose stack counts in `metrics` and has no request timer: its sleep is lent to a slot of its
/// own that nothing takes from.
fn connection<IO, S>(
    io: IO,
    service: S,
    settings: Settings,
    metrics: Arc<ZoneMetrics>,
) -> Connection<IO, Inner<S>>
where
    IO: Stream,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    Connection::new(io, stand_in(service, metrics), settings)
}

/// `service` as the stack of a connection whose metrics are `metrics`.
fn stand_in<S>(service: S, metrics: Arc<ZoneMetrics>) -> Inner<S> {
    inner(context_counting_in(metrics), service)
}

/// A stand-in for the proxy stack: notes the call in `called`, reads the whole request body, then answers 200
/// (empty) with what it saw in `x-seen` (method, path, body or the body's error) after the client's `x-delay`
/// in milliseconds.
fn stack(
    called: Arc<tokio::sync::Notify>,
) -> impl Service<
    Request<RequestBody>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future = Reply,
> + Send
       + Unpin
       + 'static {
    tower::service_fn(move |request: Request<RequestBody>| -> Reply {
        if let Some(Refused(kind)) = request.extensions().get::<Refused>() {
            let answer = elb_answer(*kind);
            return Box::pin(std::future::ready(Ok(answer)));
        }
        called.notify_one();
        Box::pin(async move {
            let delay = request
                .headers()
                .get("x-delay")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            let seen = format!("{} {}", request.method(), request.uri());
            let body = match request.into_body().collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                Err(error) => format!("error: {error}"),
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let mut response = Response::new(ResponseBody::empty());
            let seen = HeaderValue::from_str(&format!("{seen} [{body}]")).unwrap();
            response.headers_mut().insert("x-seen", seen);
            Ok(response)
        })
    })
}

fn settings() -> Settings {
    Settings {
        max_head_bytes: 8192,
        max_headers: 32,
        max_uri_bytes: 1024,
        request_header_timeout: Duration::from_millis(300).into(),
        idle_timeout: Duration::from_millis(300).into(),
    }
}

/// How a served connection ended, and what it had read.
type Ended = tokio::task::JoinHandle<(io::Result<Served>, Bytes)>;

/// Serves one connection on a fresh listener; returns its address, the shutdown trigger, the stack's call
/// signal and how the connection ended.
async fn serve_noting_calls(
    settings: Settings,
) -> (
    std::net::SocketAddr,
    Trigger,
    Arc<tokio::sync::Notify>,
    Ended,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (trigger, signal) = shutdown::channel();
    let metrics = Arc::new(crate::observability::metrics::Metrics::new().zone("web", "zone-a"));
    let called = Arc::new(tokio::sync::Notify::new());
    let stack = stack(called.clone());
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut connection = connection(stream, stack, settings, metrics);
        let mut stop = ShutdownWatch::new(signal);
        let served = std::future::poll_fn(|cx| {
            if stop.poll_fired(cx) {
                connection.graceful_shutdown();
            }
            connection.poll_serve(cx)
        })
        .await;
        (served, connection.into_parts().1)
    });
    (address, trigger, called, task)
}

async fn serve(settings: Settings) -> (std::net::SocketAddr, Trigger, Ended) {
    let (address, trigger, _, ended) = serve_noting_calls(settings).await;
    (address, trigger, ended)
}

/// Writes `bytes`, then reads until the connection closes or `wait` passes.
async fn exchange(stream: &mut TcpStream, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::AsyncReadExt;
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `bytes`, then reads one response of the stand-in stack (its body is empty), without waiting for the
/// connection to close.
async fn respond(stream: &mut TcpStream, bytes: &[u8]) -> String {
    use tokio::io::AsyncReadExt;
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        while !out.ends_with(b"\r\n\r\n") {
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf).await.unwrap() {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    let _ = read.await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn keep_alive_follows_the_version_and_the_clients_connection_header() {
    let (address, _trigger, served) = serve(settings()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    // HTTP/1.0 asking for keep-alive, then HTTP/1.1 asking to close, pipelined.
    let out = exchange(
        &mut stream,
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let (first, second) = out.split_at(out.find("HTTP/1.1").unwrap());
    assert!(first.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(first.contains("x-seen: GET /a []\r\n"), "{out}");
    assert!(first.contains("connection: keep-alive\r\n"), "{out}");
    assert!(second.contains("x-seen: GET /b []\r\n"), "{out}");
    assert!(second.contains("connection: close\r\n"), "{out}");
    assert!(matches!(served.await.unwrap().0, Ok(Served::Closed)));

    // HTTP/1.0 without keep-alive: one response, then close.
    let (address, _trigger, _served) = serve(settings()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let out = exchange(
        &mut stream,
        b"GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert_eq!(out.matches("HTTP/1.0 200").count(), 1, "{out}");
}

#[tokio::test]
async fn bodies_are_framed_exactly_and_the_next_request_is_not_swallowed() {
    let (address, _trigger, _served) = serve(settings()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let out = exchange(
        &mut stream,
        b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
          GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let seen: Vec<&str> = out
        .lines()
        .filter_map(|line| line.strip_prefix("x-seen: "))
        .collect();
    assert_eq!(
        seen,
        [
            "POST /len [hello]",
            "GET /next []",
            "POST /chunked [abcde]",
            "GET /last []"
        ],
        "{out}"
    );
}

#[tokio::test]
async fn expect_continue_is_answered_before_the_body_is_read() {
    let (address, _trigger, _served) = serve(settings()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    use tokio::io::AsyncReadExt;
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let out = respond(&mut stream, b"ok").await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("x-seen: PUT /up [ok]\r\n"), "{out}");
}

#[tokio::test]
async fn a_paused_upload_leaves_the_connection_asleep() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = polls.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let metrics = Arc::new(crate::observability::metrics::Metrics::new().zone("web", "zone-a"));
        let stack = stack(Arc::new(tokio::sync::Notify::new()));
        let mut connection = connection(stream, stack, settings(), metrics);
        std::future::poll_fn(|cx| {
            counted.fetch_add(1, Ordering::Relaxed);
            connection.poll_serve(cx)
        })
        .await
    });
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = polls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during_pause = polls.load(Ordering::Relaxed) - before;
    assert!(
        during_pause <= 2,
        "polled {during_pause} times while the client paused"
    );
    let out = respond(&mut stream, b"def").await;
    assert!(out.contains("x-seen: POST /up [abcdef]\r\n"), "{out}");
}

#[tokio::test]
async fn a_body_cut_short_fails_for_the_stack_and_the_connection_closes() {
    let (address, _trigger, served) = serve(settings()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let out = exchange(&mut stream, b"", Duration::from_secs(2)).await;
    assert!(
        out.contains("x-seen: POST / [error: client closed mid-body]\r\n"),
        "{out}"
    );
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(matches!(served.await.unwrap().0, Ok(Served::Closed)));
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_a_request_in_flight_finish() {
    let (address, trigger, called, served) = serve_noting_calls(settings()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Delay: 200\r\n\r\n")
        .await
        .unwrap();
    called.notified().await;
    trigger.trigger();
    let out = exchange(&mut stream, b"", Duration::from_secs(2)).await;
    assert!(out.contains("x-seen: GET /slow []\r\n"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
    assert!(matches!(served.await.unwrap().0, Ok(Served::Closed)));

    let (address, trigger, served) = serve(settings()).await;
    let _stream = TcpStream::connect(address).await.unwrap();
    trigger.trigger();
    let ended = tokio::time::timeout(Duration::from_millis(200), served).await;
    assert!(matches!(ended, Ok(Ok((Ok(Served::Closed), _)))));
}

#[tokio::test]
async fn the_http2_preface_hands_the_connection_over_with_what_was_read() {
    let (address, _trigger, served) = serve(settings()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(&H2_PREFACE[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    stream.write_all(&H2_PREFACE[10..]).await.unwrap();
    stream.write_all(b"frames").await.unwrap();
    let (ended, read) = served.await.unwrap();
    assert!(matches!(ended, Ok(Served::Http2)));
    assert!(read.starts_with(H2_PREFACE), "{read:?}");
}

/// A client socket, the server's end of it (for a [`Connection`] the test polls itself) and a zone's metrics.
async fn socket_pair() -> (TcpStream, TcpStream, Arc<ZoneMetrics>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let metrics = Arc::new(crate::observability::metrics::Metrics::new().zone("web", "zone-a"));
    (client, server, metrics)
}

/// Between requests a keep-alive connection holds no read buffer and no request state (no exchange, so no
/// write-queue room: what keeps an idle connection small, BENCHMARKS.md "Idle connections"), and the next
/// request, pipelined pair included, is answered as before: the buffer is taken again when the client's bytes
/// arrive.
#[tokio::test]
async fn an_idle_keep_alive_connection_holds_no_buffers_and_still_serves_the_next_request() {
    let (mut client, server, metrics) = socket_pair().await;
    let stack = stack(Arc::new(tokio::sync::Notify::new()));
    let mut connection = connection(server, stack, settings(), metrics);
    assert_eq!(
        connection.read_buf.capacity(),
        0,
        "a new connection waits for its first byte without a buffer"
    );
    let requests: [&[u8]; 2] = [
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for (request, seen) in requests.into_iter().zip(["/one", "/three"]) {
        let answered = tokio::select! {
            served = std::future::poll_fn(|cx| connection.poll_serve(cx)) => panic!("ended: {served:?}"),
            answered = async {
                let mut all = respond(&mut client, request).await;
                while !all.contains(seen) {
                    all += &respond(&mut client, b"").await;
                }
                all
            } => answered,
        };
        assert!(answered.contains(&format!("GET {seen} []")), "{answered}");
        // The response is out: the connection waits for the next request, holding nothing to read into.
        let waiting = std::future::poll_fn(|cx| Poll::Ready(connection.poll_serve(cx))).await;
        assert!(waiting.is_pending());
        assert_eq!(connection.read_buf.capacity(), 0, "idle after {seen}");
        assert!(
            connection.exchange.is_none(),
            "idle after {seen}: no request state"
        );
    }
}

/// A connection keeps one timer's sleep, not one for its own waits and one for its requests: it lends its sleep
/// to the request it hands to the stack (whose request timer takes it from the shared slot, as `proxy::forward`'s
/// does) and takes it back when its own wait starts. So every request finds the connection's sleep in the slot,
/// the same one each time (no sleep made per request), and an idle connection holds it with the slot empty.
#[tokio::test]
async fn a_connection_lends_its_one_sleep_to_each_request_and_takes_it_back() {
    let (mut client, server, metrics) = socket_pair().await;
    let timers = crate::http1::io::timer_slot();
    let (found, addresses) = std::sync::mpsc::channel();
    let stack = {
        let timers = timers.clone();
        tower::service_fn(move |_: Request<RequestBody>| -> Reply {
            // The request timer: takes the sleep for the exchange, gives it back with the answer.
            let sleep = timers.take();
            found
                .send(
                    sleep
                        .as_ref()
                        .map(|sleep| &**sleep as *const tokio::time::Sleep as usize),
                )
                .expect("the test reads the addresses");
            let timers = timers.clone();
            Box::pin(async move {
                timers.store(sleep);
                Ok(Response::new(ResponseBody::empty()))
            })
        })
    };
    let mut stack = stand_in(stack, metrics);
    stack.facts.timers = timers.clone();
    let mut connection = Connection::new(server, stack, settings());
    let held = |connection: &Connection<TcpStream, _>| connection.timer.sleep_address();
    for round in 0..3 {
        let answered = tokio::select! {
            served = std::future::poll_fn(|cx| connection.poll_serve(cx)) => panic!("ended: {served:?}"),
            answered = respond(&mut client, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") => answered,
        };
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        let waiting = std::future::poll_fn(|cx| Poll::Ready(connection.poll_serve(cx))).await;
        assert!(waiting.is_pending());
        let slot_empty = timers.take().is_none();
        assert!(
            slot_empty,
            "round {round}: idle, the sleep is back with the connection"
        );
        assert!(
            held(&connection).is_some(),
            "round {round}: the connection holds its sleep"
        );
    }
    let found: Vec<_> = addresses.try_iter().collect();
    assert_eq!(found.len(), 3);
    // The first request finds none when its bytes were there before the connection ever waited (its sleep is
    // made on its first wait): the request's timer makes one, and the connection keeps that one.
    let one = found[2];
    assert!(
        one.is_some() && found[1] == one && (found[0] == one || found[0].is_none()),
        "each request found the connection's one sleep in the slot: {found:?}"
    );
    assert_eq!(
        held(&connection),
        one,
        "and it is the one the connection holds"
    );
}
