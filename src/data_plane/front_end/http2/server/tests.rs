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
