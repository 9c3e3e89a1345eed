//! elbe's HTTP/2 server: one client connection (RFC 9113), its frames read and written by elbe, its streams served
//! on the connection's own task.
//!
//! Why not hyper's server: per request it builds h2's stream state and frame queues, spawns a task, and the
//! stack's answer crosses back to the connection through them; measured with callgrind that was about half of
//! elbe's user-space instructions per HTTP/2 request (BENCHMARKS.md "HTTP/2"). Here a HEADERS frame is decoded
//! ([`crate::http2::hpack`]), made into the request the stack gets ([`request`]), and the stack's future is
//! polled on this task when its stream's waker says so ([`wake`]); the response goes out as HEADERS and DATA
//! frames into one write buffer ([`stream`]).
//!
//! The rules it keeps, beyond each frame's own (checked by [`crate::http2::frame`]):
//! - Streams: client-initiated odd ids, increasing (§5.1.1); at most `max_concurrent_streams` open, more are
//!   refused (`REFUSED_STREAM`, §5.1.2); a header block is not interrupted (§6.10); frames on a stream that was
//!   never opened are a connection error, on one that closed they are ignored (DATA still counts against the
//!   connection's window).
//! - Flow control (§6.9): the client's windows (the connection's and each stream's) bound what elbe sends; the
//!   windows elbe gives (`stream_window`, `connection_window`) are given back as the stack reads a request body,
//!   so an upload is never buffered past them.
//! - Abuse: a header block longer than the header-list limit, or one that decodes past it (an HPACK bomb), and
//!   more than [`MAX_NET_RESETS`] streams reset by the client before their answer (CVE-2023-44487) end the
//!   connection with `ENHANCE_YOUR_CALM`.
//! - Shutdown ([`Connection::graceful_shutdown`]): GOAWAY with the last stream taken, streams in flight finish,
//!   then the connection closes. ELB's idle timeout is the socket's ([`super::ClientIo`]).

mod frames;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;
mod wake;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use super::Underway;
use crate::data_plane::body::{ClientBody, RequestBody};
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::http2::frame::{
    check_preface, read_frame, write_goaway, write_ping_ack, write_rst_stream, write_settings_ack,
    write_window_update, Continuation, Data, ErrorCode, Frame, FrameError, Headers, Settings,
    SettingsUpdate, MAX_WINDOW_SIZE, PREFACE,
};
use crate::http2::hpack::{Decoder, DEFAULT_TABLE_SIZE};
use request::request_head;
use stream::{Out, Progress, Stream, Upload};
use wake::Ready;

/// Streams the client may reset before their answer, net of the answers sent, before the connection is cut.
pub(crate) const MAX_NET_RESETS: u32 = 100;

/// Rounds of read, poll, write in one poll of the connection before it yields to the worker's other tasks.
const TURNS: usize = 32;

/// What elbe announces and allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerSettings {
    pub(crate) max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: what a client may send on a stream before elbe gives it back.
    pub(crate) stream_window: u32,
    /// The connection's window, raised from 65,535 with a WINDOW_UPDATE at the start.
    pub(crate) connection_window: u32,
    pub(crate) max_header_list_size: u32,
}

/// Why a connection ended other than cleanly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerError {
    #[error("client socket: {0}")]
    Io(#[from] io::Error),
    #[error("sent GOAWAY {code:?}: {reason}")]
    GoAway { code: ErrorCode, reason: String },
}

/// A connection error: GOAWAY with `code`, then close.
#[derive(Debug)]
struct ConnectionError {
    code: ErrorCode,
    reason: String,
}

impl ConnectionError {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        ConnectionError {
            code,
            reason: reason.into(),
        }
    }
}

impl From<FrameError> for ConnectionError {
    fn from(error: FrameError) -> Self {
        ConnectionError::new(error.code(), error.to_string())
    }
}

/// A header block being received: HEADERS without END_HEADERS, waiting for its CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: BytesMut,
}

/// One client connection served over HTTP/2 (a future: it ends when the connection does).
pub(crate) struct Connection<IO, S: Service<Request<RequestBody>>> {
    io: IO,
    service: S,
    settings: ServerSettings,
    ours: Settings,
    peer: Settings,
    read: BytesMut,
    out: Out,
    decoder: Decoder,
    streams: HashMap<u32, Stream<S::Future>>,
    ready: Arc<Ready>,
    underway: Arc<Underway>,
    /// The highest stream id the client has opened.
    last_stream: u32,
    block: Option<Block>,
    /// What the client may still send on the connection, and what elbe owes back.
    recv_window: i64,
    recv_unreleased: u32,
    /// Streams waiting for the connection's send window, and for room in the write buffer.
    blocked_on_window: Vec<u32>,
    blocked_on_write: Vec<u32>,
    /// Streams whose request body is arriving.
    uploads: Vec<u32>,
    net_resets: u32,
    /// GOAWAY sent (graceful): streams above this id are not served.
    going_away: Option<u32>,
    /// The client closed its side of the socket.
    client_done: bool,
    /// The client sent GOAWAY: it opens no more streams.
    peer_goaway: bool,
    /// A connection error was written: flush it, then close.
    failed: Option<ServerError>,
    flushed: bool,
    preface_read: bool,
    /// The last streams elbe reset, whose late frames are ignored.
    recently_reset: [u32; 16],
    resets_seen: usize,
}

impl<IO, S> Connection<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    /// A connection whose preface has not been read yet (`io` starts with it). Elbe's SETTINGS go out first.
    pub(crate) fn new(
        io: IO,
        service: S,
        settings: ServerSettings,
        underway: Arc<Underway>,
    ) -> Self {
        let ours = Settings {
            max_concurrent_streams: Some(settings.max_concurrent_streams),
            initial_window_size: settings.stream_window,
            max_header_list_size: Some(settings.max_header_list_size),
            enable_connect_protocol: true,
            ..Settings::default()
        };
        let peer = Settings::default();
        let mut out = Out::new(i64::from(peer.initial_window_size), peer.max_frame_size);
        ours.write(&mut out.buf);
        let default_window = Settings::default().initial_window_size;
        if settings.connection_window > default_window {
            write_window_update(&mut out.buf, 0, settings.connection_window - default_window);
        }
        Connection {
            io,
            service,
            settings,
            ours,
            peer,
            read: BytesMut::with_capacity(16 * 1024),
            out,
            decoder: Decoder::new(DEFAULT_TABLE_SIZE, settings.max_header_list_size as usize),
            streams: HashMap::new(),
            ready: Arc::new(Ready::default()),
            underway,
            last_stream: 0,
            block: None,
            recv_window: i64::from(settings.connection_window.max(default_window)),
            recv_unreleased: 0,
            blocked_on_window: Vec::new(),
            blocked_on_write: Vec::new(),
            uploads: Vec::new(),
            net_resets: 0,
            going_away: None,
            client_done: false,
            peer_goaway: false,
            failed: None,
            flushed: true,
            preface_read: false,
            recently_reset: [0; 16],
            resets_seen: 0,
        }
    }

    /// Stops taking new streams (GOAWAY with the last one taken); the connection ends when those in flight do.
    pub(crate) fn graceful_shutdown(&mut self) {
        if self.going_away.is_none() && self.failed.is_none() {
            self.going_away = Some(self.last_stream);
            write_goaway(&mut self.out.buf, self.last_stream, ErrorCode::NoError, b"");
        }
    }

    fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServerError>> {
        self.ready.register(cx);
        for _ in 0..TURNS {
            let mut progress = false;
            if self.failed.is_none() {
                progress |= self.poll_read(cx)?;
            }
            if self.failed.is_none() {
                progress |= self.poll_streams();
                self.release_uploads(cx);
            }
            progress |= self.poll_write(cx)?;
            if self.is_over() && self.out.buf.is_empty() {
                ready!(self.poll_close(cx))?;
                return Poll::Ready(self.failed.take().map_or(Ok(()), Err));
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Busy for a while: let the worker's other tasks run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn is_over(&self) -> bool {
        self.failed.is_some()
            || ((self.going_away.is_some() || self.client_done || self.peer_goaway)
                && self.streams.is_empty())
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.flushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.flushed = true;
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    /// Reads what the socket has and handles every whole frame in it; `true` if anything was read.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Result<bool, ServerError> {
        if self.client_done || !self.out.has_room() {
            return Ok(false);
        }
        if self.read.capacity() - self.read.len() < 4096 {
            self.read.reserve(16 * 1024);
        }
        let n = match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read) {
            Poll::Pending => return Ok(false),
            Poll::Ready(result) => result?,
        };
        if n == 0 {
            self.client_done = true;
            // Whatever was in flight is cut with the connection (the client cannot read the answers of a
            // half-closed TLS connection reliably); a clean close with nothing in flight is the usual end.
            self.streams.clear();
            return Ok(true);
        }
        if let Err(error) = self.handle_frames() {
            self.fail(error);
        }
        Ok(true)
    }

    fn handle_frames(&mut self) -> Result<(), ConnectionError> {
        if !self.preface_read {
            // The preface first, then the client's frames, SETTINGS first among them (§3.4).
            if !check_preface(&self.read)? {
                return Ok(());
            }
            let _ = self.read.split_to(PREFACE.len());
            self.preface_read = true;
        }
        loop {
            match read_frame(&mut self.read, self.ours.max_frame_size) {
                Ok(Some(frame)) => self.handle_frame(frame)?,
                Ok(None) => return Ok(()),
                Err(FrameError::Stream {
                    stream,
                    violation,
                    headers,
                }) => {
                    if let Some(headers) = headers {
                        self.decode_block(&headers.fragment)?;
                    }
                    self.reset(stream, violation.code());
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

impl<IO, S> Future for Connection<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Unpin,
    S::Future: Unpin,
{
    type Output = Result<(), ServerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_serve(cx)
    }
}
