//! Request smuggling and normalisation (issue 12, part 1), vector by vector over raw sockets: each vector goes to
//! elbe on a fresh connection, and the test checks ELB's answer, whether the connection closed, and what a
//! recording instance received. Every ambiguous message is refused (400 or 417 and close) or normalised, never
//! forwarded as the client sent it. The classes follow RFC 9112 / 9110 / 9113 and AWS's http-desync-guardian
//! (`src/data_plane/headers/checks.rs` compares them); add a vector here when a new class is found.
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a vector must come to.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// ELB answers `status` itself, closes the connection, and the instance receives no request.
    Refused(u16),
    /// The instance answers (200); its head contains every `seen` text and none of the `unseen` ones.
    Forwarded {
        seen: &'static [&'static str],
        unseen: &'static [&'static str],
        /// The client's connection is closed after the response.
        closes: bool,
    },
    /// The head reaches the instance but the body's framing is refused: the client gets 400 and the connection
    /// closes; the instance never completes a request with the client's body (elbe re-frames what it forwards).
    BodyRefused,
}
use Outcome::*;

struct Vector {
    name: &'static str,
    bytes: &'static [u8],
    outcome: Outcome,
}

/// The table. Heads carry `Host: x` unless the vector is about Host.
const VECTORS: &[Vector] = &[
    // Framing: Content-Length and Transfer-Encoding (RFC 9112 §6).
    Vector { name: "CL and TE together (CL.TE)", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled", outcome: Refused(400) },
    Vector { name: "TE and CL together (TE.CL)", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    Vector { name: "two Content-Length, same value", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", outcome: Refused(400) },
    Vector { name: "two Content-Length, different values", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", outcome: Refused(400) },
    Vector { name: "Content-Length list", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", outcome: Refused(400) },
    Vector { name: "Content-Length with a sign", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", outcome: Refused(400) },
    Vector { name: "Content-Length in hex", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc", outcome: Refused(400) },
    Vector { name: "TE other than chunked", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", outcome: Refused(400) },
    Vector { name: "TE chunked then another coding", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    Vector { name: "TE chunked twice", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    Vector { name: "TE with an odd spelling", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    Vector { name: "TE on HTTP/1.0", bytes: b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    // Field names that normalise to framing fields, and malformed fields (RFC 9110 §5, RFC 9112 §5).
    Vector { name: "Content_Length", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nContent_Length: 3\r\n\r\nabc", outcome: Refused(400) },
    Vector { name: "Transfer_Encoding", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    Vector { name: "space before the colon", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    Vector { name: "name that is not a token", bytes: b"GET / HTTP/1.1\r\nHost: x\r\nX Y: 1\r\n\r\n", outcome: Refused(400) },
    Vector { name: "obs-fold", bytes: b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", outcome: Refused(400) },
    Vector { name: "NUL in a value", bytes: b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", outcome: Refused(400) },
    Vector { name: "bare CR in a value", bytes: b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", outcome: Refused(400) },
    Vector { name: "Connection names Host", bytes: b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Host\r\n\r\n", outcome: Refused(400) },
    Vector { name: "Connection names Content-Length", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close, Content-Length\r\nContent-Length: 3\r\n\r\nabc", outcome: Refused(400) },
    Vector { name: "Connection names Transfer-Encoding", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", outcome: Refused(400) },
    // Where the request goes: Host and the target (RFC 9112 §3.2).
    Vector { name: "HTTP/1.1 without Host", bytes: b"GET / HTTP/1.1\r\n\r\n", outcome: Refused(400) },
    Vector { name: "two Host", bytes: b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", outcome: Refused(400) },
    Vector { name: "Host with a path", bytes: b"GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", outcome: Refused(400) },
    Vector { name: "Host with userinfo", bytes: b"GET / HTTP/1.1\r\nHost: a@x\r\n\r\n", outcome: Refused(400) },
    Vector { name: "empty Host", bytes: b"GET / HTTP/1.1\r\nHost: \r\n\r\n", outcome: Refused(400) },
    Vector { name: "absolute-form disagreeing with Host", bytes: b"GET http://other/ HTTP/1.1\r\nHost: x\r\n\r\n", outcome: Refused(400) },
    Vector { name: "absolute-form with userinfo", bytes: b"GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n", outcome: Refused(400) },
    Vector { name: "absolute-form with a port that is not a number", bytes: b"GET http://x:8o/ HTTP/1.1\r\nHost: x:80\r\n\r\n", outcome: Refused(400) },
    Vector { name: "absolute-form not http", bytes: b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", outcome: Refused(400) },
    Vector { name: "authority-form with GET", bytes: b"GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n", outcome: Refused(400) },
    Vector { name: "asterisk-form with GET", bytes: b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", outcome: Refused(400) },
    Vector { name: "CONNECT", bytes: b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", outcome: Refused(400) },
    Vector { name: "space in the target", bytes: b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", outcome: Refused(400) },
    Vector { name: "an unknown version", bytes: b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", outcome: Refused(400) },
    // Expectations (RFC 9110 §10.1.1).
    Vector { name: "Expect other than 100-continue", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nhi", outcome: Refused(417) },
    // Chunked framing (RFC 9112 §7.1): the head is fine, the body is not.
    Vector { name: "bare LF after the chunk size", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", outcome: BodyRefused },
    Vector { name: "bare LF after the chunk data", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n", outcome: BodyRefused },
    Vector { name: "chunk longer than its size", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", outcome: BodyRefused },
    Vector { name: "chunk size that is not hex", bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", outcome: BodyRefused },
    // Normalised: forwarded, but never as sent.
    Vector {
        name: "framing and routing fields in a trailer section are dropped",
        bytes: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 99\r\nHost: evil\r\nX-Sum: 1\r\n\r\n",
        outcome: Forwarded { seen: &["x-sum: 1\r\n"], unseen: &["content-length: 99", "host: evil"], closes: false },
    },
    Vector {
        name: "a body on GET is framed exactly and both connections close",
        bytes: b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\nGET /smuggled HTTP/1.1",
        outcome: Forwarded { seen: &["content-length: 22\r\n", "connection: close\r\n"], unseen: &["/smuggled"], closes: true },
    },
    Vector {
        name: "bare LF line ends in the head are re-written with CRLF",
        bytes: b"GET /lf HTTP/1.1\nHost: x\nX-A: 1\n\n",
        outcome: Forwarded { seen: &["GET /lf HTTP/1.1\r\n", "x-a: 1\r\n"], unseen: &["\n\n"], closes: false },
    },
];

/// One request as the recording instance read it: its head, verbatim, and its body.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
    /// A chunked body's trailer section, verbatim.
    trailers: String,
}

/// An instance that records every request it reads (head verbatim, body by its Content-Length or chunked framing)
/// and answers each with 200 `ok`.
struct Recorder {
    address: std::net::SocketAddr,
    received: std::cell::RefCell<tokio::sync::mpsc::UnboundedReceiver<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (log, received) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record(stream, log.clone()));
            }
        });
        Recorder {
            address,
            received: std::cell::RefCell::new(received),
            task,
        }
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Received> {
        let mut received = self.received.borrow_mut();
        std::iter::from_fn(|| received.try_recv().ok()).collect()
    }
}

async fn record(mut stream: TcpStream, log: tokio::sync::mpsc::UnboundedSender<Received>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut stream, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        let mut trailers = String::new();
        let body = if let Some(length) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            while buf.len() < length {
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            }
            buf.drain(..length).collect()
        } else if lower.contains("transfer-encoding: chunked") {
            let Some((body, trailer_section)) = read_chunked(&mut stream, &mut buf).await else {
                return;
            };
            trailers = trailer_section;
            body
        } else {
            Vec::new()
        };
        let _ = log.send(Received {
            head,
            body,
            trailers,
        });
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads until `needle` is in `buf`; the index just past it.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(needle.len()).position(|w| w == needle) {
            return Some(at + needle.len());
        }
        if !read_more(stream, buf).await {
            return None;
        }
    }
}

/// A chunked body as a strict recipient reads it (CRLF everywhere), and its trailer section.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Vec<u8>, String)> {
    let mut body = Vec::new();
    loop {
        let end = read_until(stream, buf, b"\r\n").await?;
        let line = String::from_utf8_lossy(&buf[..end - 2]).into_owned();
        buf.drain(..end);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            let end = if buf.starts_with(b"\r\n") {
                2
            } else {
                read_until(stream, buf, b"\r\n\r\n").await?
            };
            let trailers = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            return Some((body, trailers));
        }
        while buf.len() < size + 2 {
            if !read_more(stream, buf).await {
                return None;
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// Sends `bytes` on a fresh connection and reads until elbe closes it or a second passes after the first bytes:
/// (what came back, whether the connection closed).
async fn send_vector(address: std::net::SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut closed = false;
    loop {
        let wait = if out.is_empty() {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(300)
        };
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test]
async fn every_http1_vector_is_refused_or_normalised_never_forwarded_as_sent() {
    let recorder = Recorder::start().await;
    let elbe = ConfigBuilder::new()
        .instance(InstanceSpec {
            id: "i-rec".into(),
            zone: "zone-a".into(),
            address: recorder.address,
        })
        .start()
        .await;
    let node = elbe.node("zone-a");
    let mut failures = Vec::new();
    for vector in VECTORS {
        recorder.take();
        let (answer, closed) = send_vector(node, vector.bytes).await;
        // The instance records a request before it answers it, and elbe answers a forwarded request only after
        // the instance did: whatever reached the instance is recorded by now.
        let received = recorder.take();
        let status = answer.get(9..12).unwrap_or("");
        let problem = match vector.outcome {
            Refused(expected) => {
                if status != expected.to_string() {
                    Some(format!("expected {expected}, got {answer:?}"))
                } else if !answer.contains("content-length: 0\r\n") && expected != 408 {
                    Some(format!("ELB's answers have an empty body: {answer:?}"))
                } else if !closed {
                    Some("the connection stayed open".to_string())
                } else if !received.is_empty() {
                    Some(format!("the instance received {received:?}"))
                } else {
                    None
                }
            }
            BodyRefused => {
                let completed = received.iter().any(|r| !r.body.is_empty());
                if status != "400" {
                    Some(format!("expected 400, got {answer:?}"))
                } else if !closed {
                    Some("the connection stayed open".to_string())
                } else if completed {
                    Some(format!("the instance got the client's body: {received:?}"))
                } else {
                    None
                }
            }
            Forwarded {
                seen,
                unseen,
                closes,
            } => match received.as_slice() {
                [one] if status == "200" => {
                    let everything = format!("{}{}", one.head, one.trailers);
                    let missing: Vec<_> =
                        seen.iter().filter(|s| !everything.contains(*s)).collect();
                    let wrongly: Vec<_> =
                        unseen.iter().filter(|u| everything.contains(*u)).collect();
                    if !missing.is_empty() || !wrongly.is_empty() {
                        Some(format!(
                            "head {:?}: missing {missing:?}, should not have {wrongly:?}",
                            one.head
                        ))
                    } else if closes != closed {
                        Some(format!(
                            "closes after the response: expected {closes}, was {closed}"
                        ))
                    } else {
                        None
                    }
                }
                other => Some(format!(
                    "expected one request and 200, got {answer:?} and {other:?}"
                )),
            },
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}", vector.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        VECTORS.len(),
        failures.join("\n")
    );
}

/// A request line whose target is over `max_uri_bytes` is ELB's 414 even when the whole head is also over
/// `max_request_header_bytes` (it was 431).
#[tokio::test]
async fn an_overlong_target_is_414_even_when_the_head_is_too_large_too() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .instance(instance("i-1", "zone-a", &backend))
        .limit("max_uri_bytes = 64")
        .limit("max_request_header_bytes = 8192")
        .start()
        .await;
    let head = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100),
        "b".repeat(9000)
    );
    let (answer, closed) = send_vector(elbe.node("zone-a"), head.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 414 URI_TOO_LONG\r\n"),
        "{answer}"
    );
    assert!(closed);
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let (answer, _) = send_vector(elbe.node("zone-a"), head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP/2 (RFC 9113 §8): what an HTTP/2 client could send that HTTP/1.1 to the instance would turn ambiguous.

/// An h2c client (prior knowledge) to elbe.
async fn h2c(
    address: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(address).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends one HTTP/2 request; `Ok(status)`, or `Err` when elbe reset the stream.
async fn h2_request(
    address: std::net::SocketAddr,
    request: http::Request<Full<Bytes>>,
) -> Result<u16, String> {
    let mut sender = h2c(address).await;
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            Ok(status)
        }
        Err(error) => Err(error.to_string()),
    }
}

#[tokio::test]
async fn http2_requests_that_http1_would_read_otherwise_are_refused() {
    let recorder = Recorder::start().await;
    let elbe = ConfigBuilder::new()
        .instance(InstanceSpec {
            id: "i-rec".into(),
            zone: "zone-a".into(),
            address: recorder.address,
        })
        .start()
        .await;
    let node = elbe.node("zone-a");
    let base = format!("http://{node}/");
    let get = |uri: &str| http::Request::get(uri.to_string());

    // A clean request passes, as a control.
    let clean = get(&base).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(h2_request(node, clean).await, Ok(200));
    assert_eq!(recorder.take().len(), 1);

    let cases: Vec<(&str, http::Request<Full<Bytes>>)> = vec![
        (
            "host disagreeing with :authority",
            get(&base)
                .header("host", "other")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
        (
            "userinfo in :authority",
            get(&format!("http://user@{node}/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
        (
            "leading whitespace in a value",
            get(&base)
                .header("x-a", " padded")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
        (
            "trailing whitespace in a value",
            get(&base)
                .header("x-a", "padded\t")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
        (
            "a name that imitates content-length",
            get(&base)
                .header("content_length", "5")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
        (
            "content-length longer than the DATA",
            http::Request::post(base.clone())
                .header("content-length", "10")
                .body(Full::new(Bytes::from_static(b"abc")))
                .unwrap(),
        ),
        (
            "content-length shorter than the DATA",
            http::Request::post(base.clone())
                .header("content-length", "1")
                .body(Full::new(Bytes::from_static(b"abc")))
                .unwrap(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, request) in cases {
        let result = h2_request(node, request).await;
        let refused = matches!(result, Ok(400) | Err(_));
        let received = recorder.take();
        let completed = received
            .iter()
            .any(|r| r.body.len() >= 3 || r.body.is_empty());
        if !refused || (completed && !received.is_empty()) {
            failures.push(format!(
                "{name}: {result:?}, the instance received {received:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2); hyper's client will not send them, so
/// these frames are written by hand: the stream is reset (PROTOCOL_ERROR) or refused, and nothing reaches the
/// instance.
#[tokio::test]
async fn http2_connection_specific_fields_are_refused() {
    let recorder = Recorder::start().await;
    let elbe = ConfigBuilder::new()
        .instance(InstanceSpec {
            id: "i-rec".into(),
            zone: "zone-a".into(),
            address: recorder.address,
        })
        .start()
        .await;
    let node = elbe.node("zone-a");
    for (name, value) in [
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
    ] {
        let answer = raw_h2_get(node, &[(name, value)]).await;
        assert!(
            matches!(
                answer,
                H2Answer::Reset(_) | H2Answer::GoAway | H2Answer::Status(400)
            ),
            "{name}: {answer:?}"
        );
        assert!(recorder.take().is_empty(), "{name}: reached the instance");
    }
    // The control: the same frames with an ordinary field get an answer from the instance.
    assert_eq!(
        raw_h2_get(node, &[("x-a", "1")]).await,
        H2Answer::Status(200)
    );
}

#[derive(Debug, PartialEq, Eq)]
enum H2Answer {
    Reset(u32),
    GoAway,
    /// A response head; its status when the encoding is one of HPACK's static table entries.
    Status(u16),
    Nothing,
}

/// Writes an HTTP/2 GET on stream 1 by hand (preface, SETTINGS, HEADERS with HPACK literals), returns how elbe
/// answered stream 1.
async fn raw_h2_get(address: std::net::SocketAddr, extra: &[(&str, &str)]) -> H2Answer {
    let mut block = Vec::new();
    let authority = address.to_string();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", authority.as_str()),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        // Literal header field without indexing, new name, no Huffman coding (RFC 7541 §6.2.2).
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend_from_slice(&frame(0x1, 0x5, 1, &block)); // HEADERS, END_STREAM | END_HEADERS
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while buf.len() >= 9 {
            let length =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + length {
                break;
            }
            let (kind, stream_id) = (
                buf[3],
                u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
            );
            let payload = buf[9..9 + length].to_vec();
            buf.drain(..9 + length);
            match kind {
                0x3 if stream_id == 1 => {
                    return H2Answer::Reset(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]))
                }
                0x7 => return H2Answer::GoAway,
                0x1 if stream_id == 1 => {
                    let status = match payload.first() {
                        Some(0x88) => 200,
                        Some(0x8c) => 400,
                        Some(0x8d) => 404,
                        Some(0x8e) => 500,
                        _ => 0,
                    };
                    return H2Answer::Status(status);
                }
                _ => {}
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return H2Answer::Nothing,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = vec![
        (length >> 16) as u8,
        (length >> 8) as u8,
        length as u8,
        kind,
        flags,
    ];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}
