//! elbe's HTTP/2 server connection (`data_plane::front_end::http2::server::Connection`, ELB-SPEC §3 "HTTP/2")
//! for the `h2_connection` fuzz target: any bytes a client may send, after the preface, served by the real
//! connection over an in-memory pipe, with a stand-in for the proxy stack.
//!
//! The stand-in answers at once with the request's path as the body, except: a path starting `/slow` answers
//! after one yield (so a stream is open while later frames arrive), `/big` answers [`BIG`] bytes (more than the
//! RFC's default window: the response waits for the client's WINDOW_UPDATEs), `/body` reads the request body to
//! its end first (so the windows elbe gave are given back).
//!
//! The conversation is driven by hand, one round at a time (the client writes what the pipe takes, the connection
//! is polled, the client reads all elbe wrote), all with one waker that records whether anything was woken. A
//! round in which nothing moved and nothing was woken can never be followed by one that does: that is how a hang
//! is told apart from slowness, exactly and without a clock (the connection sets no timers; ELB's idle timeout
//! is the socket's, outside it). Once the client has written everything and the connection is quiet, the client
//! shuts its write side, and the connection must then end.
//!
//! Invariants checked for every input (a broken one panics, with what was seen):
//! - no panic, and the connection ends after the client closed (no hang, no busy loop);
//! - it ends cleanly or with a GOAWAY it wrote (its last frame, with the code it reports), never a socket error;
//! - what elbe wrote is a sequence of whole, valid frames, SETTINGS first;
//! - its HEADERS, DATA and RST_STREAM name only odd streams the client opened (a RST_STREAM may also answer a
//!   frame refused as a stream error, or a PRIORITY, on a stream that is still idle);
//! - its DATA never takes more than the client's windows allowed: on each stream, the largest
//!   SETTINGS_INITIAL_WINDOW_SIZE the client announced plus its WINDOW_UPDATEs on the stream; on the connection,
//!   65,535 plus its WINDOW_UPDATEs on stream 0 (an upper bound: the exact window depends on when each frame was
//!   read).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tower::Service;

use crate::data_plane::body::RequestBody;
use crate::data_plane::front_end::http2::server::{Connection, ServerError, ServerSettings};
use crate::data_plane::front_end::http2::Underway;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::http2::frame::{
    read_frame, ErrorCode, Frame, FrameError, MAX_FRAME_SIZE_LIMIT, PREFACE,
};

/// The body of a `/big` answer: more than the RFC's default window of 65,535.
const BIG: usize = 70_000;

/// The pipe's capacity each way: smaller than elbe's write buffer, so writes are cut short and resumed.
const PIPE: usize = 16 * 1024;

/// Rounds before a connection that keeps busy without ending is called a livelock.
const MAX_ROUNDS: usize = 10_000;

/// What the fuzzed connection announces: few streams and small windows, so the limits are reached.
const SETTINGS: ServerSettings = ServerSettings {
    max_concurrent_streams: 8,
    stream_window: 1024,
    connection_window: 65_535,
    max_header_list_size: 4096,
};

/// The RFC's default window (§6.9.2), the client's until its SETTINGS say otherwise.
const DEFAULT_WINDOW: u64 = 65_535;

/// Serves `data` (what a client sends after the preface) on elbe's HTTP/2 connection and checks the invariants
/// in the module's docs; panics when one breaks.
pub fn h2_connection(data: &[u8]) {
    RUNTIME.with(|runtime| {
        // Inside the runtime's context, as in production (a connection that reaches for tokio finds it), but not
        // in `block_on`: the rounds are polled by hand.
        let _context = runtime.enter();
        let mut sent = Vec::with_capacity(PREFACE.len() + data.len());
        sent.extend_from_slice(PREFACE);
        sent.extend_from_slice(data);
        let (received, result) = converse(&sent);
        check_output(data, &received, &result);
    });
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("h2_connection: no tokio runtime: {error}"),
    };
}

/// Whether the waker was called since the flag was last cleared.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs the conversation: `sent` written into the client's end, then its write side shut once the connection is
/// quiet; returns what elbe wrote and how the connection ended.
fn converse(sent: &[u8]) -> (Vec<u8>, Result<(), ServerError>) {
    let (mut client, server) = tokio::io::duplex(PIPE);
    let mut connection = Connection::new(server, Stack, SETTINGS, Arc::new(Underway::default()));
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut to_send = sent;
    let mut received = Vec::new();
    let mut shut = false;
    for round in 0..MAX_ROUNDS {
        flag.0.store(false, Ordering::SeqCst);
        let mut moved = write_some(&mut client, &mut cx, &mut to_send);
        if let Poll::Ready(result) = Pin::new(&mut connection).poll(&mut cx) {
            drop(connection);
            read_all(&mut client, &mut cx, &mut received);
            return (received, result);
        }
        moved |= read_all(&mut client, &mut cx, &mut received);
        if moved || flag.0.load(Ordering::SeqCst) {
            continue;
        }
        assert!(
            to_send.is_empty(),
            "round {round}: elbe stopped reading with {} of the client's {} bytes unread, and nothing will wake it",
            to_send.len(),
            sent.len()
        );
        assert!(
            !shut,
            "round {round}: the client closed and the connection hangs (nothing will wake it); elbe wrote {} bytes",
            received.len()
        );
        shut = Pin::new(&mut client).poll_shutdown(&mut cx).is_ready();
        assert!(shut, "the client's end of the pipe would not shut");
    }
    panic!(
        "the connection was still busy after {MAX_ROUNDS} rounds (a livelock); elbe wrote {} bytes",
        received.len()
    );
}

/// Writes what the pipe takes of `to_send`; `true` if anything was written. A pipe elbe closed takes nothing more.
fn write_some(client: &mut DuplexStream, cx: &mut Context<'_>, to_send: &mut &[u8]) -> bool {
    let mut moved = false;
    while !to_send.is_empty() {
        match Pin::new(&mut *client).poll_write(cx, to_send) {
            Poll::Ready(Ok(n)) if n > 0 => {
                *to_send = &to_send[n..];
                moved = true;
            }
            Poll::Ready(_) => *to_send = &[],
            Poll::Pending => break,
        }
    }
    moved
}

/// Reads everything elbe has written so far; `true` if anything was read.
fn read_all(client: &mut DuplexStream, cx: &mut Context<'_>, received: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    let mut moved = false;
    loop {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *client).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                received.extend_from_slice(buf.filled());
                moved = true;
            }
            Poll::Ready(_) | Poll::Pending => return moved,
        }
    }
}

/// What the client's frames allowed elbe to send.
#[derive(Default)]
struct Windows {
    largest_initial: u64,
    connection: u64,
    streams: HashMap<u32, u64>,
    /// The highest stream the client sent HEADERS on.
    last_opened: u32,
    /// Streams a frame of the client's named that elbe may reset without their being opened: a PRIORITY frame
    /// (allowed on an idle stream, §5.1) or any frame refused as a stream error (§5.4.2, e.g. a PRIORITY of the
    /// wrong length is a FRAME_SIZE_ERROR on its stream, §6.3).
    named: std::collections::HashSet<u32>,
}

/// The client's frames as elbe reads them (SETTINGS_MAX_FRAME_SIZE 16,384), up to the first connection error.
fn client_windows(data: &[u8]) -> Windows {
    let mut windows = Windows {
        largest_initial: DEFAULT_WINDOW,
        connection: DEFAULT_WINDOW,
        ..Windows::default()
    };
    let mut buf = BytesMut::from(data);
    loop {
        match read_frame(&mut buf, 16_384) {
            Ok(Some(Frame::Settings(update))) => {
                if let Some(size) = update.initial_window_size {
                    windows.largest_initial = windows.largest_initial.max(u64::from(size));
                }
            }
            Ok(Some(Frame::WindowUpdate {
                stream: 0,
                increment,
            })) => {
                windows.connection += u64::from(increment);
            }
            Ok(Some(Frame::WindowUpdate { stream, increment })) => {
                *windows.streams.entry(stream).or_default() += u64::from(increment);
            }
            Ok(Some(Frame::Headers(headers))) => {
                windows.last_opened = windows.last_opened.max(headers.stream);
            }
            Ok(Some(Frame::Priority { stream })) => {
                windows.named.insert(stream);
            }
            Err(FrameError::Stream {
                stream, headers, ..
            }) => {
                windows.named.insert(stream);
                if let Some(headers) = headers {
                    windows.last_opened = windows.last_opened.max(headers.stream);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(FrameError::Connection(_)) => return windows,
        }
    }
}

/// Checks what elbe wrote, and how the connection ended, against the client's frames in `data`.
fn check_output(data: &[u8], received: &[u8], result: &Result<(), ServerError>) {
    let windows = client_windows(data);
    let mut buf = BytesMut::from(received);
    let mut frames = Vec::new();
    loop {
        match read_frame(&mut buf, MAX_FRAME_SIZE_LIMIT) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => break,
            Err(error) => panic!(
                "elbe wrote an invalid frame after {} good ones: {error}",
                frames.len()
            ),
        }
    }
    assert!(
        buf.is_empty(),
        "elbe's output ends in a cut frame ({} bytes)",
        buf.len()
    );
    assert!(
        matches!(frames.first(), Some(Frame::Settings(_))),
        "elbe's first frame is not its SETTINGS: {:?}",
        frames.first()
    );
    let mut sent_on: HashMap<u32, u64> = HashMap::new();
    let mut sent_total = 0u64;
    for frame in &frames {
        let stream = match frame {
            Frame::Data(data) => {
                let len = u64::from(data.flow_controlled_len());
                *sent_on.entry(data.stream).or_default() += len;
                sent_total += len;
                data.stream
            }
            Frame::Headers(headers) => headers.stream,
            Frame::RstStream { stream, .. } if windows.named.contains(stream) => continue,
            Frame::RstStream { stream, .. } => *stream,
            _ => continue,
        };
        assert!(
            stream % 2 == 1 && stream <= windows.last_opened,
            "elbe wrote {frame:?} on stream {stream}, which the client never opened (last {})",
            windows.last_opened
        );
    }
    for (&stream, &sent) in &sent_on {
        let allowed = windows.largest_initial + windows.streams.get(&stream).copied().unwrap_or(0);
        assert!(
            sent <= allowed,
            "elbe sent {sent} bytes of DATA on stream {stream}; the client's windows allowed at most {allowed}"
        );
    }
    assert!(
        sent_total <= windows.connection,
        "elbe sent {sent_total} bytes of DATA on the connection; its window allowed at most {}",
        windows.connection
    );
    check_end(&frames, result);
}

/// A connection error's GOAWAY is the last frame, with the code the connection reports; no socket error.
fn check_end(frames: &[Frame], result: &Result<(), ServerError>) {
    match result {
        Ok(()) => {}
        Err(ServerError::GoAway { code, reason }) => {
            let last = frames.last();
            assert!(
                matches!(last, Some(Frame::GoAway { code: sent, .. }) if sent == code),
                "the connection ended with GOAWAY {code:?} ({reason}) but its last frame is {last:?}"
            );
            assert_ne!(
                *code,
                ErrorCode::NoError,
                "a connection error said NO_ERROR"
            );
        }
        Err(error @ ServerError::Io(_)) => {
            panic!("the connection ended with a socket error on a pipe that works: {error}")
        }
    }
}

/// The stand-in for the proxy stack (see the module's docs for what each path gets).
struct Stack;

impl Service<Request<RequestBody>> for Stack {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Answer {
        let path = request.uri().path();
        let body = if path.starts_with("/big") {
            Bytes::from(vec![b'x'; BIG])
        } else {
            Bytes::copy_from_slice(path.as_bytes())
        };
        Answer {
            yields: u8::from(path.starts_with("/slow")),
            read: path.starts_with("/body").then(|| request.into_body()),
            body,
        }
    }
}

/// One request's answer from the stand-in.
struct Answer {
    /// Times to yield (waking itself) before answering.
    yields: u8,
    /// The request body to read to its end before answering.
    read: Option<RequestBody>,
    body: Bytes,
}

impl Future for Answer {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.yields > 0 {
            self.yields -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        while let Some(body) = self.read.as_mut() {
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(None | Some(Err(_))) => self.read = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        let body = ResponseBody::full(self.body.clone());
        Poll::Ready(Ok(Response::new(body)))
    }
}

#[cfg(test)]
#[path = "h2_connection/tests.rs"]
mod tests;
