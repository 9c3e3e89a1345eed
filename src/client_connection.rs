//! One client connection's timers: ELB's idle timeout on the front end, and the request-head timeout (408).
//!
//! ELB-SPEC.md §5 and §9: a front-end connection on which no request is in flight is closed after the idle timeout;
//! a client that starts a request head and stalls gets `408 REQUEST_TIMEOUT` and the connection is closed; a
//! connection that never sends a byte is closed after the request-head timeout (so idle sockets cannot pile up).
//!
//! hyper's own `header_read_timeout` starts on every keep-alive wait (so it would close idle keep-alive connections
//! long before ELB's 60 s idle timeout) and never answers 408, so elbe keeps these timers itself, in a wrapper
//! around the socket: the wrapper sees every byte read, and the proxy tells it through [`ConnectionState`] when a
//! request head has been parsed and when its response is over. A request in flight is timed by the proxy (504).
//! Timers are lazy: a deadline is computed only when a read would block, and the timer is reset only when the
//! deadline moves.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::ZoneMetrics;

/// ELB's 408, written byte for byte as captured (ELB-SPEC.md §9), including `Content-Length:0` without a space.
pub const REQUEST_TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 REQUEST_TIMEOUT\r\nContent-Length:0\r\nConnection: Close\r\n\r\n";

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the proxy tells the connection's timers: requests parsed, and requests still in flight.
#[derive(Debug, Default)]
pub struct ConnectionState {
    in_flight: AtomicUsize,
    started: AtomicU64,
    framing: AtomicU8,
    /// The connection task, woken when the last in-flight response ends so the idle timer starts even if hyper
    /// has no reason to poll the socket again.
    waker: AtomicWaker,
}

const SAW_CONTENT_LENGTH: u8 = 1;
const SAW_TWO_CONTENT_LENGTHS: u8 = 2;
const SAW_TRANSFER_ENCODING: u8 = 4;

impl ConnectionState {
    /// A request head was parsed and handed to the proxy.
    pub fn begin_request(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Release);
    }

    /// A request's response is over (its body was dropped).
    pub fn end_request(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }

    /// Whether the last request head carried framing that hyper would silently repair but ELB refuses (400):
    /// both Content-Length and Transfer-Encoding (hyper drops the length), or Content-Length twice (hyper keeps
    /// one when they agree). Request smuggling hides in exactly these repairs, so elbe refuses them instead.
    pub fn ambiguous_framing(&self) -> Option<&'static str> {
        let seen = self.framing.load(Ordering::Acquire);
        if seen & SAW_CONTENT_LENGTH != 0 && seen & SAW_TRANSFER_ENCODING != 0 {
            Some("both Content-Length and Transfer-Encoding")
        } else if seen & SAW_TWO_CONTENT_LENGTHS != 0 {
            Some("more than one Content-Length")
        } else {
            None
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// The two client-side timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// The whole request head must arrive within this (and a new connection must send its first byte within it).
    pub request_header: Duration,
    /// A connection with no request in flight is closed after this (ELB's idle timeout).
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected, nothing received yet.
    Fresh,
    /// A request head is arriving; `started` is the request count when it began.
    Head { started: u64 },
    /// At least one request is in flight.
    Busy,
    /// Keep-alive, waiting for the next request.
    Idle,
}

/// Reads the header names of one HTTP/1.x request head as its bytes arrive, line by line, to note the framing
/// headers hyper would otherwise repair out of sight. Stops at the blank line that ends the head.
#[derive(Debug, Default)]
struct HeadScan {
    active: bool,
    /// The start of the current line, lower-cased, when it began in an earlier read.
    carry: [u8; 20],
    carry_len: usize,
    /// The current line began in an earlier read and is longer than `carry` holds: skip to its end.
    skipping: bool,
    seen: u8,
}

impl HeadScan {
    fn start(&mut self) {
        *self = HeadScan {
            active: true,
            ..HeadScan::default()
        };
    }

    /// Scans `bytes`; returns true when the head ended inside them.
    fn scan(&mut self, mut bytes: &[u8]) -> bool {
        while self.active && !bytes.is_empty() {
            let (line, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => (&bytes[..end], true),
                None => (bytes, false),
            };
            bytes = if complete {
                &bytes[line.len() + 1..]
            } else {
                &[]
            };
            if !self.skipping {
                let room = self.carry.len() - self.carry_len;
                let take = line.len().min(room);
                for (slot, byte) in self.carry[self.carry_len..].iter_mut().zip(&line[..take]) {
                    *slot = byte.to_ascii_lowercase();
                }
                self.carry_len += take;
                self.skipping = !complete && take == room;
            }
            if complete {
                self.end_line();
            }
        }
        !self.active
    }

    fn end_line(&mut self) {
        let line = &self.carry[..self.carry_len];
        if line.is_empty() || line == b"\r" {
            // The blank line, unless it is the one before the request line (tolerated by RFC 9112 §2.2).
            if self.seen & 0x80 != 0 {
                self.active = false;
            }
        } else if self.seen & 0x80 == 0 {
            self.seen |= 0x80; // the request line
        } else if line.starts_with(b"content-length:") || line.starts_with(b"content-length ") {
            if self.seen & SAW_CONTENT_LENGTH != 0 {
                self.seen |= SAW_TWO_CONTENT_LENGTHS;
            }
            self.seen |= SAW_CONTENT_LENGTH;
        } else if line.starts_with(b"transfer-encoding") {
            self.seen |= SAW_TRANSFER_ENCODING;
        }
        self.carry_len = 0;
        self.skipping = false;
    }
}

/// A client socket with ELB's front-end timers.
pub struct ClientIo<IO> {
    inner: IO,
    state: Arc<ConnectionState>,
    timeouts: ClientTimeouts,
    phase: Phase,
    /// HTTP/2 (prior knowledge): requests are streams, so only the idle timer applies.
    h2: bool,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    scan: HeadScan,
    metrics: Option<Arc<ZoneMetrics>>,
}

impl<IO> ClientIo<IO> {
    pub fn new(inner: IO, state: Arc<ConnectionState>, timeouts: ClientTimeouts) -> Self {
        let deadline = Instant::now() + timeouts.request_header;
        ClientIo {
            inner,
            state,
            timeouts,
            phase: Phase::Fresh,
            h2: false,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            scan: HeadScan::default(),
            metrics: None,
        }
    }

    /// Counts bytes and elbe's 408s in the node's metrics.
    pub fn with_metrics(mut self, metrics: Arc<ZoneMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count_written(&mut self, n: usize) {
        if let Some(metrics) = &self.metrics {
            metrics.sent_bytes.inc_by(n as u64);
        }
    }

    /// Bytes arrived: a new request head may have started.
    fn on_bytes(&mut self, bytes: &[u8]) {
        if let Some(metrics) = &self.metrics {
            metrics.received_bytes.inc_by(bytes.len() as u64);
        }
        match self.phase {
            Phase::Fresh => {
                let n = bytes.len().min(H2_PREFACE.len());
                self.h2 = bytes[..n] == H2_PREFACE[..n];
                self.start_head();
            }
            Phase::Idle if !self.h2 && self.state.in_flight() == 0 => self.start_head(),
            _ => {}
        }
        if self.scan.active && self.scan.scan(bytes) {
            self.state
                .framing
                .store(self.scan.seen & 0x7f, Ordering::Release);
        }
    }

    fn start_head(&mut self) {
        if self.h2 {
            self.phase = Phase::Busy;
            return;
        }
        self.phase = Phase::Head {
            started: self.state.started(),
        };
        self.scan.start();
        self.state.framing.store(0, Ordering::Release);
        self.deadline = Instant::now() + self.timeouts.request_header;
    }

    /// Brings the phase up to date with what the proxy reported, moving the deadline when the phase changes.
    fn refresh_phase(&mut self, cx: &mut Context<'_>) {
        let in_flight = self.state.in_flight();
        match self.phase {
            Phase::Head { started } if self.state.started() != started => {
                self.phase = Phase::Busy;
            }
            Phase::Fresh | Phase::Head { .. } if self.h2 => self.phase = Phase::Busy,
            _ => {}
        }
        match (self.phase, in_flight) {
            (Phase::Busy, 0) => {
                self.phase = Phase::Idle;
                self.deadline = Instant::now() + self.timeouts.idle;
            }
            (Phase::Idle, n) if n > 0 => self.phase = Phase::Busy,
            _ => {}
        }
        if self.phase == Phase::Busy {
            // Not timed here (the proxy times requests); the last response ending wakes this task.
            self.state.waker.register(cx.waker());
        }
    }

    /// Called when a read would block: fires the timer if the deadline has passed.
    ///
    /// The timer is lazy: it is moved earlier when a deadline comes sooner than it (a request head starting),
    /// never later; when it fires before the phase's deadline it is re-armed. So a keep-alive connection resets
    /// it about once per header timeout instead of twice per request, and the clock is read only when a phase
    /// begins.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error>
    where
        IO: AsyncWrite + Unpin,
    {
        self.refresh_phase(cx);
        loop {
            if self.phase != Phase::Busy && self.deadline < self.timer.deadline() {
                self.timer.as_mut().reset(self.deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let fired_at = self.timer.deadline();
                    self.refresh_phase(cx);
                    if self.phase != Phase::Busy && self.deadline <= fired_at {
                        return Poll::Ready(self.expire(cx));
                    }
                    // Early for a deadline that moved later, or a request in flight (look again later in case
                    // the last response ended while nothing polled this socket: HTTP/2 streams end on other tasks).
                    let next = if self.phase == Phase::Busy {
                        fired_at + self.timeouts.idle
                    } else {
                        self.deadline
                    };
                    self.timer.as_mut().reset(next);
                }
            }
        }
    }

    fn expire(&mut self, cx: &mut Context<'_>) -> io::Error
    where
        IO: AsyncWrite + Unpin,
    {
        match self.phase {
            Phase::Head { .. } => {
                // Best effort: the socket is about to be closed, a short write loses nothing that matters.
                if let Some(metrics) = &self.metrics {
                    metrics.elb_4xx.inc();
                }
                let _ = Pin::new(&mut self.inner).poll_write(cx, REQUEST_TIMEOUT_RESPONSE);
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
                io::Error::new(io::ErrorKind::TimedOut, "request head timeout (408)")
            }
            Phase::Fresh => io::Error::new(io::ErrorKind::TimedOut, "no request on new connection"),
            _ => io::Error::new(io::ErrorKind::TimedOut, "idle timeout"),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if !fresh.is_empty() {
                    this.on_bytes(fresh);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Ready(err) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
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
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.count_written(*n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            this.count_written(*n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
