//! HTTP/2 client connections: elbe's server ([`server`]), its WebSockets ([`websocket`], RFC 8441), and its
//! timers (HTTP/1 connections keep theirs in [`crate::data_plane::front_end::http1`]).
//!
//! ELB-SPEC.md §5: the idle timeout closes a front-end connection on which no byte moves. elbe keeps it for
//! HTTP/2 in a wrapper around the socket, [`ClientIo`], which fails the socket operation
//! that would block once one of three rules says the connection is over:
//!
//! 1. **Idle**: no request in flight (the proxy reports requests through [`ConnectionState`]) for the idle timeout
//!    since the last response ended. Frames that carry no request (PING, SETTINGS) do not keep it open.
//! 2. **Client not reading**: elbe has bytes to write and the client has taken none of them for the idle timeout.
//!    h2 stops reading while it cannot write its answers (a PING's or a SETTINGS' ACK), so without this rule a
//!    client that floods PINGs or SETTINGS and reads nothing would hold its connection, blocked, for ever.
//! 3. **Response stalled**: a response is under way (its head went out, its body has not ended; [`Underway`]) and
//!    no byte has moved either way for the idle timeout, e.g. a client that opens no flow-control window
//!    (`SETTINGS_INITIAL_WINDOW_SIZE = 0`), which would otherwise keep the response, and its instance's
//!    connection, for ever.
//!
//! A request waiting for its instance's response is timed by the proxy (504), not here. The timer is lazy: one
//! `Sleep`, set to the earliest deadline when an operation would block and reset only when it fires early or a
//! nearer deadline appears, so a busy connection pays no timer work per read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::data_plane::body::ConnectionState;
use crate::observability::metrics::ZoneMetrics;

pub(crate) mod server;
#[cfg(test)]
mod tests;
pub(crate) mod websocket;

pub(crate) use websocket::WebSockets;

/// The responses of one connection that are under way: head handed to hyper, body not ended. Shared by the
/// connection's streams (which count them, on their own tasks) and its [`ClientIo`] (which times them).
#[derive(Debug, Default)]
pub(crate) struct Underway {
    open: AtomicUsize,
    /// Responses started so far. The socket sees a change as progress: the new response's head is about to be
    /// written, so the stall is timed from now and not from the last byte before the instance answered.
    started: AtomicUsize,
}

impl Underway {
    /// `body`, counted as under way until it ends or is dropped (a body that is already complete is not counted).
    pub(crate) fn track<B: Body>(self: &Arc<Self>, body: B) -> Tracked<B> {
        let guard = (!body.is_end_stream()).then(|| {
            self.started.fetch_add(1, Ordering::Release);
            self.open.fetch_add(1, Ordering::Release);
            OpenResponse(self.clone())
        });
        Tracked { body, guard }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::Acquire)
    }
}

/// One response under way; dropping it ends the count.
#[derive(Debug)]
struct OpenResponse(Arc<Underway>);

impl Drop for OpenResponse {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body counted in its connection's [`Underway`].
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    body: B,
    guard: Option<OpenResponse>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            || this.body.is_end_stream()
        {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An HTTP/2 client socket with ELB's idle timeout (the three rules of this module).
pub(crate) struct ClientIo<IO> {
    inner: IO,
    /// Bytes already read from the socket (by the HTTP/1 server, which saw the preface), read again first.
    prefix: Bytes,
    state: Arc<ConnectionState>,
    underway: Arc<Underway>,
    idle_timeout: Duration,
    busy: bool,
    /// Rule 1: when the connection, idle now, is closed.
    idle_deadline: Instant,
    /// Rule 2: since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
    /// Rule 3: the last byte moved while a response was under way (or the last response start seen).
    last_progress: Instant,
    seen_started: usize,
    timer: Pin<Box<Sleep>>,
    metrics: Option<Arc<ZoneMetrics>>,
}

impl<IO> ClientIo<IO> {
    /// `state` counts the connection's requests in flight, `underway` its responses under way.
    pub(crate) fn new(
        inner: IO,
        state: Arc<ConnectionState>,
        underway: Arc<Underway>,
        idle_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        let idle_deadline = now + idle_timeout;
        ClientIo {
            inner,
            prefix: Bytes::new(),
            state,
            underway,
            idle_timeout,
            busy: false,
            idle_deadline,
            write_blocked_since: None,
            last_progress: now,
            seen_started: 0,
            timer: Box::pin(tokio::time::sleep_until(idle_deadline)),
            metrics: None,
        }
    }

    /// Reads `prefix` (already read from the socket and counted) before the socket itself.
    pub(crate) fn with_prefix(mut self, prefix: Bytes) -> Self {
        self.prefix = prefix;
        self
    }

    /// Counts bytes in the node's metrics.
    pub(crate) fn with_metrics(mut self, metrics: Arc<ZoneMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Bytes moved on the socket: what rule 3 times. The clock is read only while a response is under way.
    fn progressed(&mut self) {
        if self.underway.open() > 0 {
            self.last_progress = Instant::now();
        }
    }

    fn count_written(&mut self, n: usize) {
        if n > 0 {
            self.write_blocked_since = None;
            self.progressed();
        }
        if let Some(metrics) = &self.metrics {
            metrics.sent_bytes.inc_by(n as u64);
        }
    }

    /// Brings `busy` up to date with what the proxy reported, starting the idle wait when the last request ends.
    fn refresh(&mut self, cx: &mut Context<'_>) {
        if self.state.in_flight() > 0 {
            self.busy = true;
            // Not timed by rule 1; the last response ending wakes this task.
            self.state.register(cx.waker());
            // Look again in case the last one ended between the load and the registration.
            if self.state.in_flight() > 0 {
                return;
            }
        }
        if self.busy {
            self.busy = false;
            self.idle_deadline = Instant::now() + self.idle_timeout;
        }
    }

    /// The earliest moment one of the module's rules closes the connection, as things stand; `None` while only a
    /// request waiting for its instance is in flight (the proxy times it).
    fn close_at(&mut self, cx: &mut Context<'_>) -> Option<Instant> {
        self.refresh(cx);
        let idle = (!self.busy).then_some(self.idle_deadline);
        let not_reading = self
            .write_blocked_since
            .map(|since| since + self.idle_timeout);
        let stalled = if self.underway.open() > 0 {
            let started = self.underway.started();
            if started != self.seen_started {
                self.seen_started = started;
                self.last_progress = Instant::now();
            }
            Some(self.last_progress + self.idle_timeout)
        } else {
            None
        };
        [idle, not_reading, stalled].into_iter().flatten().min()
    }

    /// Called when a socket operation would block: fails it once a rule says the connection is over.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let Some(at) = self.close_at(cx) else {
                return Poll::Pending;
            };
            if at < self.timer.deadline() {
                self.timer.as_mut().reset(at);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let fired_at = self.timer.deadline();
                    match self.close_at(cx) {
                        None => return Poll::Pending,
                        Some(at) if at <= fired_at => {
                            return Poll::Ready(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "idle timeout",
                            ))
                        }
                        Some(at) => self.timer.as_mut().reset(at),
                    }
                }
            }
        }
    }

    /// A write (or flush, or shutdown) would block: rule 2 starts timing, and the timers may end the connection.
    fn write_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.write_blocked_since.is_none() {
            self.write_blocked_since = Some(Instant::now());
        }
        self.poll_close(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.progressed();
                }
                if let Some(metrics) = &this.metrics {
                    metrics.received_bytes.inc_by(n as u64);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.poll_close(cx).map(Err),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ClientIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.count_written(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.write_blocked(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.count_written(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.write_blocked(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.write_blocked_since = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.write_blocked(cx).map(Err),
        }
    }

    /// A close (TLS's close_notify, after a GOAWAY) to a client that reads nothing is timed like any write.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.write_blocked(cx).map(Err),
            done => done,
        }
    }
}
