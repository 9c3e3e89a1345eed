//! One stream of a client connection (RFC 9113 §5.1): the request's body as it arrives (DATA frames, within the
//! window elbe gave), the stack's future until the response head, then the response body sent as DATA frames
//! within the client's windows.
//!
//! A stream's frames go into the connection's write buffer ([`Out`]); a body is polled only while that buffer is
//! below [`WRITE_HIGH`], so a client that reads nothing holds at most that much per connection, never a body.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Response};
use http_body::{Body, Frame};
use tokio::io::{AsyncWrite, DuplexStream};

use super::response::{encode_head, encode_trailers};
use super::wake::{waker, Ready, StreamWaker};
use crate::data_plane::body::BodySender;
use crate::data_plane::front_end::http2::{Tracked, Underway};
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::http2::frame::{
    write_data, write_headers, write_rst_stream, write_window_update, ErrorCode,
};
use crate::http2::hpack::Encoder;

/// Past this many bytes waiting to be written, no stream adds more (and the connection stops reading frames).
pub(crate) const WRITE_HIGH: usize = 64 * 1024;

/// What the connection's streams write into, and the connection-wide limits on sending.
pub(crate) struct Out {
    pub(crate) buf: BytesMut,
    pub(crate) encoder: Encoder,
    /// The connection's send window (§6.9): DATA may take this many bytes more.
    pub(crate) window: i64,
    /// The client's SETTINGS_MAX_FRAME_SIZE.
    pub(crate) max_frame: u32,
    /// Bytes of the client's that went where they were going (a tunnel): the connection's window to give back.
    pub(crate) release: u32,
    scratch: BytesMut,
    name: Vec<u8>,
}

impl Out {
    pub(crate) fn new(window: i64, max_frame: u32) -> Self {
        Out {
            buf: BytesMut::with_capacity(16 * 1024),
            encoder: Encoder::default(),
            window,
            max_frame,
            release: 0,
            scratch: BytesMut::new(),
            name: Vec::new(),
        }
    }

    pub(crate) fn has_room(&self) -> bool {
        self.buf.len() < WRITE_HIGH
    }

    /// A whole header block (HEADERS, CONTINUATION as needed) from what `encode` writes.
    fn headers(
        &mut self,
        stream: u32,
        end_stream: bool,
        encode: impl FnOnce(&mut Encoder, &mut BytesMut, &mut Vec<u8>),
    ) {
        self.scratch.clear();
        encode(&mut self.encoder, &mut self.scratch, &mut self.name);
        write_headers(
            &mut self.buf,
            stream,
            &self.scratch,
            end_stream,
            self.max_frame,
        );
    }
}

/// A request body arriving: the window elbe gave the client for it, and its bytes not yet given back.
pub(crate) struct Upload {
    pub(crate) sender: BodySender,
    /// `content-length`: the DATA frames must add up to it (§8.1.1).
    pub(crate) expected: Option<u64>,
    pub(crate) received: u64,
    /// What the client may still send on this stream.
    pub(crate) window: i64,
    /// Bytes handed to the body and not yet given back with a WINDOW_UPDATE.
    pub(crate) unreleased: u32,
}

/// The connection's end of a WebSocket's tunnel (RFC 8441): the client's DATA written into it, the tunnel's
/// bytes read out of it as DATA.
pub(crate) struct TunnelEnd {
    io: DuplexStream,
    inbound: VecDeque<Bytes>,
    /// The client ended its side: once `inbound` is written, the tunnel reads its end.
    pub(crate) in_ended: bool,
    shut: bool,
    /// What the client may still send on this stream.
    pub(crate) window: i64,
}

impl TunnelEnd {
    pub(crate) fn new(io: DuplexStream, window: u32) -> Box<Self> {
        Box::new(TunnelEnd {
            io,
            inbound: VecDeque::new(),
            in_ended: false,
            shut: false,
            window: i64::from(window),
        })
    }

    /// The client's bytes, to be written into the tunnel.
    pub(crate) fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.inbound.push_back(data);
        }
    }

    /// Writes what the client sent into the tunnel, giving the windows back for what it took.
    fn flush_inbound(&mut self, id: u32, cx: &mut Context<'_>, out: &mut Out) {
        let mut taken = 0usize;
        while let Some(front) = self.inbound.front_mut() {
            match Pin::new(&mut self.io).poll_write(cx, front) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    front.advance(n);
                    taken += n;
                    if front.is_empty() {
                        self.inbound.pop_front();
                    }
                }
                // The tunnel is gone: what the client sends now goes nowhere.
                Poll::Ready(_) => {
                    taken += self.inbound.iter().map(Bytes::len).sum::<usize>();
                    self.inbound.clear();
                }
                Poll::Pending => break,
            }
        }
        if self.inbound.is_empty() && self.in_ended && !self.shut {
            self.shut = Pin::new(&mut self.io).poll_shutdown(cx).is_ready();
        }
        if taken > 0 {
            let taken = taken as u32;
            if !self.in_ended {
                write_window_update(&mut out.buf, id, taken);
                self.window += i64::from(taken);
            }
            out.release += taken;
        }
    }

    /// The tunnel's next bytes for the client; empty at its end.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        let mut chunk = BytesMut::with_capacity(16 * 1024);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut chunk) {
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(chunk.freeze())),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Where the response is.
enum Phase<F> {
    /// The stack is working on it.
    Waiting(F),
    Sending(Box<Sending>),
    Done,
}

struct Sending {
    source: Source,
    /// A body chunk not yet sent whole (the windows or the frame size cut it).
    pending: Bytes,
    /// The body said it ended: the last of `pending` carries END_STREAM.
    ended: bool,
}

/// Where a response's DATA comes from.
enum Source {
    Body(Tracked<ResponseBody>),
    /// The stream's [`TunnelEnd`].
    Tunnel,
}

/// How far a poll got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Waiting for the stack, the body, or the client's window on this stream: the stream's waker, or a
    /// WINDOW_UPDATE on the stream, calls it back.
    Pending,
    /// Waiting for the connection's window.
    ConnectionWindow,
    /// The write buffer is full: poll again once it drains.
    WriteFull,
    /// The response is sent (or the stream was reset): the stream has nothing more to send.
    Sent,
}

pub(crate) struct Stream<F> {
    waker: Arc<StreamWaker>,
    task_waker: Waker,
    phase: Phase<F>,
    /// The client's window for this stream's DATA (§6.9.2: may go below zero when its SETTINGS shrink it).
    pub(crate) send_window: i64,
    pub(crate) upload: Option<Upload>,
    /// An extended CONNECT's tunnel (RFC 8441), once its request is made.
    pub(crate) tunnel: Option<Box<TunnelEnd>>,
    /// The client sent END_STREAM (or the stream was reset).
    pub(crate) remote_ended: bool,
    head_request: bool,
}

impl<F> Stream<F>
where
    F: Future<Output = Result<Response<ResponseBody>, std::convert::Infallible>> + Unpin,
{
    /// A stream whose request the stack is working on (`future`); it is queued to be polled at once.
    pub(crate) fn new(
        id: u32,
        ready: &Arc<Ready>,
        future: F,
        method: &Method,
        send_window: i64,
        upload: Option<Upload>,
        tunnel: Option<Box<TunnelEnd>>,
    ) -> Self {
        let stream_waker = StreamWaker::new(id, ready.clone());
        Stream {
            task_waker: waker(&stream_waker),
            waker: stream_waker,
            phase: Phase::Waiting(future),
            send_window,
            remote_ended: upload.is_none() && tunnel.is_none(),
            upload,
            tunnel,
            head_request: method == Method::HEAD,
        }
    }

    /// Queues the stream to be polled (its tunnel has the client's bytes to take).
    pub(crate) fn wake(&self) {
        self.task_waker.wake_by_ref();
    }

    /// Whether the response head has gone out.
    pub(crate) fn answered(&self) -> bool {
        !matches!(self.phase, Phase::Waiting(_))
    }

    /// Moves the response on as far as it can go now.
    pub(crate) fn poll(&mut self, id: u32, out: &mut Out, underway: &Arc<Underway>) -> Progress {
        self.waker.unqueue();
        let waker = self.task_waker.clone();
        let mut cx = Context::from_waker(&waker);
        let answered = self.answered();
        if let Some(tunnel) = self.tunnel.as_mut().filter(|_| answered) {
            tunnel.flush_inbound(id, &mut cx, out);
        }
        loop {
            match &mut self.phase {
                Phase::Waiting(future) => match Pin::new(future).poll(&mut cx) {
                    Poll::Pending => return Progress::Pending,
                    Poll::Ready(Ok(response)) => self.start(id, response, out, underway),
                    Poll::Ready(Err(never)) => match never {},
                },
                Phase::Sending(sending) => {
                    let tunnel = self.tunnel.as_deref_mut();
                    let progress = sending.poll(id, &mut cx, out, &mut self.send_window, tunnel);
                    if progress == Progress::Sent {
                        self.phase = Phase::Done;
                    }
                    return progress;
                }
                Phase::Done => return Progress::Sent,
            }
        }
    }

    /// The response head goes out; a body that is already over ends the stream with it.
    fn start(
        &mut self,
        id: u32,
        response: Response<ResponseBody>,
        out: &mut Out,
        underway: &Arc<Underway>,
    ) {
        let (parts, mut body) = response.into_parts();
        let raw = body.take_raw_head();
        if self.tunnel.is_some() && !parts.status.is_success() {
            self.tunnel = None;
        }
        let source = if self.tunnel.is_some() {
            // The tunnel's task holds the request's bookkeeping; the body here is empty.
            Source::Tunnel
        } else {
            Source::Body(underway.track(body))
        };
        let end_stream = match &source {
            Source::Body(body) => self.head_request || body.is_end_stream(),
            Source::Tunnel => false,
        };
        out.headers(id, end_stream, |encoder, block, name| {
            encode_head(
                encoder,
                parts.status,
                raw.as_ref(),
                &parts.headers,
                block,
                name,
            )
        });
        self.phase = if end_stream {
            Phase::Done
        } else {
            Phase::Sending(Box::new(Sending {
                source,
                pending: Bytes::new(),
                ended: false,
            }))
        };
    }
}

impl Sending {
    fn poll(
        &mut self,
        id: u32,
        cx: &mut Context<'_>,
        out: &mut Out,
        window: &mut i64,
        mut tunnel: Option<&mut TunnelEnd>,
    ) -> Progress {
        loop {
            if !self.pending.is_empty() {
                if let Some(blocked) = self.send_pending(id, out, window) {
                    return blocked;
                }
                if self.pending.is_empty() && self.ended {
                    return Progress::Sent;
                }
                continue;
            }
            if self.ended {
                write_data(&mut out.buf, id, &[], true);
                return Progress::Sent;
            }
            if !out.has_room() {
                return Progress::WriteFull;
            }
            match self.poll_source(cx, tunnel.as_deref_mut()) {
                Poll::Pending => return Progress::Pending,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.pending = data;
                        self.ended = match &self.source {
                            Source::Body(body) => body.is_end_stream(),
                            Source::Tunnel => false,
                        };
                    }
                    Err(frame) => {
                        self.send_trailers(id, frame, out);
                        return Progress::Sent;
                    }
                },
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(stream = id, %error, "response body failed; stream reset");
                    write_rst_stream(&mut out.buf, id, ErrorCode::InternalError);
                    return Progress::Sent;
                }
            }
        }
    }

    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
        tunnel: Option<&mut TunnelEnd>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match (&mut self.source, tunnel) {
            (Source::Body(body), _) => Pin::new(body).poll_frame(cx),
            (Source::Tunnel, Some(tunnel)) => match tunnel.poll_chunk(cx) {
                Poll::Ready(Ok(chunk)) if chunk.is_empty() => Poll::Ready(None),
                Poll::Ready(Ok(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                Poll::Pending => Poll::Pending,
            },
            (Source::Tunnel, None) => Poll::Ready(None),
        }
    }

    /// Sends what the windows allow of `pending`; `Some` when they, or the write buffer, stop it.
    fn send_pending(&mut self, id: u32, out: &mut Out, window: &mut i64) -> Option<Progress> {
        if *window <= 0 {
            return Some(Progress::Pending);
        }
        if out.window <= 0 {
            return Some(Progress::ConnectionWindow);
        }
        if !out.has_room() {
            return Some(Progress::WriteFull);
        }
        let allowed = (*window).min(out.window).min(i64::from(out.max_frame)) as usize;
        let chunk = self.pending.split_to(self.pending.len().min(allowed));
        let end_stream = self.pending.is_empty() && self.ended;
        write_data(&mut out.buf, id, &chunk, end_stream);
        *window -= chunk.len() as i64;
        out.window -= chunk.len() as i64;
        None
    }

    fn send_trailers(&mut self, id: u32, frame: Frame<Bytes>, out: &mut Out) {
        match frame.into_trailers() {
            Ok(trailers) => out.headers(id, true, |encoder, block, _| {
                encode_trailers(encoder, &trailers, block)
            }),
            Err(_) => write_data(&mut out.buf, id, &[], true),
        }
    }
}
