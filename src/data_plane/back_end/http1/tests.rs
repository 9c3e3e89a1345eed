//! elbe's HTTP/1.1 client against scripted instances over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, Request};

use super::*;
use crate::data_plane::back_end::error::BackendError;
use crate::data_plane::body::RequestBody;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An instance that answers each request head it reads with the next of `answers` (written in pieces of
/// `piece` bytes), then closes. Returns its address and the request heads it read.
async fn scripted(
    answers: Vec<&'static [u8]>,
    piece: usize,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut heads = Vec::new();
        let mut buf = Vec::new();
        for answer in answers {
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed before its request head");
                buf.extend_from_slice(&chunk[..n]);
            }
            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            heads.push(String::from_utf8(buf.drain(..end).collect()).unwrap());
            for part in answer.chunks(piece) {
                stream.write_all(part).await.unwrap();
                stream.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
        heads
    });
    (addr, task)
}

fn get(path: &str) -> Outgoing {
    let request = Request::get(path)
        .header("host", "app.example")
        .body(RequestBody::Empty)
        .unwrap();
    Outgoing::new(request)
}

async fn open(addr: SocketAddr, request: Outgoing) -> Exchange {
    let conn = BackendConnection::connect(addr, Duration::from_secs(5), &None)
        .await
        .unwrap();
    Exchange::new(conn, request)
}

/// Reads the whole response body: (data, trailers).
async fn body(exchange: &mut Exchange) -> (Vec<u8>, Option<HeaderMap>) {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| exchange.poll_body(cx)).await {
        match frame.unwrap().into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    (data, trailers)
}

#[tokio::test]
async fn a_content_length_response_arriving_byte_by_byte_leaves_the_connection_reusable() {
    let (addr, server) = scripted(
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nX-Secret: s\r\n\r\nhello"],
        1,
    )
    .await;
    let mut exchange = open(addr, get("/x?y=1")).await;
    let response = exchange.response_head().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-backend"], "a");
    // Hop-by-hop headers, and those Connection names, stay between elbe and the instance.
    for gone in ["connection", "keep-alive", "x-secret"] {
        assert!(!response.headers().contains_key(gone), "{gone}");
    }
    assert_eq!(response.headers()["content-length"], "5");
    assert_eq!(body(&mut exchange).await.0, b"hello");
    assert!(exchange.into_reusable().is_some());
    let heads = server.await.unwrap();
    assert_eq!(heads[0], "GET /x?y=1 HTTP/1.1\r\nhost: app.example\r\n\r\n");
}

/// The head an HTTP/1 client gets for `response` (sent by a scripted instance).
async fn raw(response: &'static [u8]) -> (u16, RawHead) {
    let (addr, _server) = scripted(vec![response], 1).await;
    let mut request = get("/");
    request.raw_response = true;
    let mut exchange = open(addr, request).await;
    let response = exchange.response_head().await.unwrap();
    assert!(
        response.headers().is_empty(),
        "the lines travel raw, not as a map"
    );
    (
        response.status().as_u16(),
        exchange.take_raw_head().unwrap(),
    )
}

#[tokio::test]
async fn raw_heads_keep_the_instances_lines_verbatim_without_hop_by_hop_ones() {
    // Connection last, as nginx sends it: the kept lines are one slice of the head.
    let (status, head) = raw(b"HTTP/1.1 201 Made It\r\nServer: x\r\nCONTENT-length: 2\r\nSet-Cookie: a=b\r\nConnection: keep-alive\r\n\r\nok").await;
    assert_eq!(status, 201);
    assert_eq!(head.reason, "Made It");
    assert_eq!(
        head.lines,
        "Server: x\r\nCONTENT-length: 2\r\nSet-Cookie: a=b\r\n"
    );
    assert!(head.has_length);
    // Dropped lines in the middle (and one Connection names), a bare LF: the kept lines are rebuilt with CRLF.
    let (_, head) = raw(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\nConnection: X-Secret\r\nX-Secret: s\r\nX-B: 2\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
    assert_eq!(head.lines, "X-A: 1\r\nX-B: 2\r\n");
    assert!(!head.has_length);
    // Transfer-Encoding with Content-Length: the length is not passed on.
    let (_, head) =
        raw(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .await;
    assert_eq!(head.lines, "");
    assert!(!head.has_length);
}

#[tokio::test]
async fn chunked_responses_are_decoded_with_extensions_and_trailers() {
    let (addr, _server) = scripted(
        vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n"],
        3,
    )
    .await;
    let mut exchange = open(addr, get("/")).await;
    let response = exchange.response_head().await.unwrap();
    // Hop-by-hop: hyper frames the body for the client itself.
    assert!(!response.headers().contains_key("transfer-encoding"));
    let (data, trailers) = body(&mut exchange).await;
    assert_eq!(data, b"hello, world");
    assert_eq!(trailers.unwrap()["x-sum"], "12");
    assert!(exchange.into_reusable().is_some());
}

#[tokio::test]
async fn a_body_without_length_runs_until_close_and_the_connection_is_not_reused() {
    let (addr, _server) = scripted(vec![b"HTTP/1.1 200 OK\r\n\r\nstreamed until close"], 4).await;
    let mut exchange = open(addr, get("/")).await;
    exchange.response_head().await.unwrap();
    assert_eq!(body(&mut exchange).await.0, b"streamed until close");
    assert!(exchange.into_reusable().is_none());
}

#[tokio::test]
async fn interim_responses_are_skipped_and_the_reason_phrase_is_kept() {
    let (addr, _server) = scripted(
        vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Nothing Here\r\nContent-Length: 0\r\n\r\n"],
        7,
    )
    .await;
    let mut exchange = open(addr, get("/")).await;
    let response = exchange.response_head().await.unwrap();
    assert_eq!(response.status(), 404);
    let reason = response.extensions().get::<hyper::ext::ReasonPhrase>();
    assert_eq!(reason.unwrap().as_bytes(), b"Nothing Here");
    assert!(exchange.is_end_stream());
}

#[tokio::test]
async fn head_204_and_304_have_no_body_whatever_their_headers_say() {
    let (addr, _server) = scripted(
        vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        ],
        64,
    )
    .await;
    let head = Request::head("/")
        .body(RequestBody::Empty)
        .map(Outgoing::new)
        .unwrap();
    let mut exchange = open(addr, head).await;
    for _ in 0..3 {
        exchange.response_head().await.unwrap();
        assert!(exchange.is_end_stream());
        assert_eq!(body(&mut exchange).await.0, b"");
        let conn = exchange
            .into_reusable()
            .expect("reusable after a body-less response");
        exchange = Exchange::new(conn, get("/"));
    }
}

#[tokio::test]
async fn responses_that_cannot_be_framed_are_bad_responses() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        let (addr, _server) = scripted(vec![answer], 64).await;
        let mut exchange = open(addr, get("/")).await;
        let error = exchange.response_head().await.unwrap_err();
        assert!(
            matches!(error, BackendError::BadResponse(_)),
            "{:?}: {error:?}",
            String::from_utf8_lossy(answer)
        );
        assert!(matches!(exchange.resend(&error), Resend::Never));
    }
}

#[tokio::test]
async fn close_and_http10_responses_end_the_connection() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let (addr, _server) = scripted(vec![answer], 64).await;
        let mut exchange = open(addr, get("/")).await;
        exchange.response_head().await.unwrap();
        assert_eq!(body(&mut exchange).await.0, b"ok");
        assert!(exchange.into_reusable().is_none());
    }
}

#[tokio::test]
async fn a_request_the_instance_closed_on_is_replayable_only_when_idempotent_and_body_less() {
    let (addr, _server) = scripted(vec![b""], 1).await;
    let mut exchange = open(addr, get("/")).await;
    let error = exchange.response_head().await.unwrap_err();
    assert!(matches!(error, BackendError::Closed(_)), "{error:?}");
    assert!(matches!(exchange.resend(&error), Resend::Once(_)));

    let (addr, _server) = scripted(vec![b""], 1).await;
    let post = Request::post("/")
        .body(RequestBody::Empty)
        .map(Outgoing::new)
        .unwrap();
    let mut exchange = open(addr, post).await;
    let error = exchange.response_head().await.unwrap_err();
    assert!(matches!(exchange.resend(&error), Resend::Never));
}

#[tokio::test]
async fn an_idle_connection_the_instance_closed_is_noticed_before_use() {
    let (addr, server) = scripted(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], 64).await;
    let mut exchange = open(addr, get("/")).await;
    exchange.response_head().await.unwrap();
    let mut conn = exchange.into_reusable().unwrap();
    assert!(!conn.closed_while_idle());
    server.await.unwrap();
    // The reactor learns of the close on its next turn.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !conn.closed_while_idle() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "close never noticed"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn heads_carry_the_framing_elbe_chose() {
    let post = Request::post("/form")
        .header("host", "a")
        .body(RequestBody::Empty)
        .unwrap();
    assert_eq!(
        Outgoing::new(post).head,
        "POST /form HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"
    );
    let delete = Request::delete("/x").body(RequestBody::Empty).unwrap();
    assert_eq!(Outgoing::new(delete).head, "DELETE /x HTTP/1.1\r\n\r\n");
    let options = Request::options("*").body(RequestBody::Empty).unwrap();
    assert!(Outgoing::new(options)
        .head
        .starts_with(b"OPTIONS * HTTP/1.1\r\n"));
}

mod tls;
