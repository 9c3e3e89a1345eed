//! The connection with a real HTTP/2 client (the `h2` crate) over an in-memory pipe, and a stand-in for the proxy
//! stack whose answers the test releases one at a time: what the connection polls, and when.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use super::*;

/// One request held by the stand-in stack: how often its future was polled, and the switch that answers it.
struct Held {
    path: String,
    polls: Arc<AtomicUsize>,
    answer: oneshot::Sender<()>,
}

/// The stand-in stack: each request's future is pending until the test answers it; it then answers its path.
struct Stack {
    held: mpsc::UnboundedSender<Held>,
}

struct Answer {
    path: String,
    polls: Arc<AtomicUsize>,
    released: oneshot::Receiver<()>,
}

impl Future for Answer {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        ready!(Pin::new(&mut self.released).poll(cx)).ok();
        let body = ResponseBody::full(Bytes::from(self.path.clone()));
        Poll::Ready(Ok(Response::new(body)))
    }
}

impl Service<Request<RequestBody>> for Stack {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Answer {
        let (answer, released) = oneshot::channel();
        let polls = Arc::new(AtomicUsize::new(0));
        let path = request.uri().path().to_string();
        let held = Held {
            path: path.clone(),
            polls: polls.clone(),
            answer,
        };
        self.held.send(held).unwrap();
        Answer {
            path,
            polls,
            released,
        }
    }
}

const SETTINGS: ServerSettings = ServerSettings {
    max_concurrent_streams: 128,
    stream_window: 256 * 1024,
    connection_window: 1024 * 1024,
    max_header_list_size: 16 * 1024,
};

/// An h2 client connected to a [`Connection`] serving [`Stack`]; the requests it holds arrive on the receiver.
async fn connected() -> (
    h2::client::SendRequest<Bytes>,
    mpsc::UnboundedReceiver<Held>,
) {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let (held, requests) = mpsc::unbounded_channel();
    let underway = Arc::new(Underway::default());
    let connection = Connection::new(server_io, Stack { held }, SETTINGS, underway);
    tokio::spawn(connection);
    let (client, driver) = h2::client::handshake(client_io).await.unwrap();
    tokio::spawn(driver);
    (client, requests)
}

async fn body_of(response: h2::client::ResponseFuture) -> (StatusCode, Vec<u8>) {
    let response = response.await.unwrap();
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        bytes.extend_from_slice(&chunk);
    }
    (status, bytes)
}

#[tokio::test]
async fn only_the_stream_that_was_woken_is_polled() {
    let (mut client, mut requests) = connected().await;
    let mut responses = Vec::new();
    for i in 0..10 {
        let request = http::Request::get(format!("http://example.com/{i}"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        responses.push(response);
    }
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(requests.recv().await.unwrap());
    }
    let polls_before: Vec<usize> = held
        .iter()
        .map(|h| h.polls.load(Ordering::SeqCst))
        .collect();
    assert!(
        polls_before.iter().all(|&n| n == 1),
        "each new stream is polled once: {polls_before:?}"
    );

    // Answer the fourth: only its future is polled again.
    let fourth = held.remove(3);
    assert_eq!(fourth.path, "/3");
    fourth.answer.send(()).unwrap();
    let (status, body) = body_of(responses.remove(3)).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"/3"[..]));
    assert_eq!(fourth.polls.load(Ordering::SeqCst), 2);
    let polls_after: Vec<usize> = held
        .iter()
        .map(|h| h.polls.load(Ordering::SeqCst))
        .collect();
    assert!(
        polls_after.iter().all(|&n| n == 1),
        "the others were not polled: {polls_after:?}"
    );

    // The rest still answer, each with its own path.
    for (held, response) in held.into_iter().zip(responses) {
        let path = held.path.clone();
        held.answer.send(()).unwrap();
        let (status, body) = body_of(response).await;
        assert_eq!((status, body), (StatusCode::OK, path.into_bytes()));
    }
}

#[tokio::test]
async fn a_stream_reset_by_the_client_drops_its_request() {
    let (mut client, mut requests) = connected().await;
    let request = http::Request::get("http://example.com/cancelled")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let mut held = requests.recv().await.unwrap();
    drop(response); // the h2 client resets a stream whose response it no longer wants
    tokio::time::timeout(std::time::Duration::from_secs(5), held.answer.closed())
        .await
        .expect("the request's future was dropped with its stream");
    // The connection goes on.
    let request = http::Request::get("http://example.com/next")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let next = requests.recv().await.unwrap();
    next.answer.send(()).unwrap();
    assert_eq!(body_of(response).await, (StatusCode::OK, b"/next".to_vec()));
}

/// A client that sends GOAWAY still opens windows for the streams it has: a response larger than its window
/// completes (the connection keeps reading WINDOW_UPDATEs after the GOAWAY).
#[tokio::test]
async fn after_the_clients_goaway_its_window_updates_still_let_a_response_finish() {
    use crate::http2::frame::{
        read_frame, write_goaway, write_headers, write_settings, SettingsUpdate,
    };
    use crate::http2::hpack::Encoder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mut client, server_io) = tokio::io::duplex(1 << 20);
    let (held, mut requests) = mpsc::unbounded_channel();
    let connection = Connection::new(
        server_io,
        Stack { held },
        SETTINGS,
        Arc::new(Underway::default()),
    );
    tokio::spawn(connection);

    let path = format!("/{}", "x".repeat(99)); // the stand-in answers its path: 100 bytes
    let mut out = BytesMut::from(&crate::http2::frame::PREFACE[..]);
    let window = SettingsUpdate {
        initial_window_size: Some(10),
        ..SettingsUpdate::default()
    };
    write_settings(&mut out, &window);
    let mut block = BytesMut::new();
    let fields = [
        (&b":method"[..], &b"GET"[..]),
        (b":scheme", b"http"),
        (b":authority", b"example.com"),
        (b":path", path.as_bytes()),
    ];
    Encoder::default().encode(fields, &mut block);
    write_headers(&mut out, 1, &block, true, 16_384);
    write_goaway(&mut out, 0, ErrorCode::NoError, b"");
    client.write_all(&out).await.unwrap();
    requests.recv().await.unwrap().answer.send(()).unwrap();

    let mut received = Vec::new();
    let mut buf = BytesMut::new();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            while let Some(frame) = read_frame(&mut buf, 1 << 20).unwrap() {
                if let Frame::Data(data) = frame {
                    received.extend_from_slice(&data.data);
                    if data.end_stream {
                        return;
                    }
                    // Each DATA is at most the window: give it back so the rest can come.
                    let mut update = BytesMut::new();
                    write_window_update(&mut update, 1, data.data.len().max(1) as u32);
                    client.write_all(&update).await.unwrap();
                }
            }
            let n = client.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed before the response ended");
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "the response stalled after {} bytes",
        received.len()
    );
    assert_eq!(received, path.into_bytes());
}
