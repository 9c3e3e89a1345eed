//! Bytes both ways between a client and an instance: after a WebSocket upgrade (the instance answered `101
//! Switching Protocols`), and for the whole of a TCP/SSL listener's connection (ELB-SPEC §1.3), every byte either
//! side sends is passed on unchanged.
//!
//! Each direction reads into a buffer and writes it on as the other side takes it, so a slow reader slows its
//! sender instead of filling memory. A side's end of stream is passed on as a half-close (the other direction goes
//! on, so the rest of an answer still comes back); the tunnel is over when both directions have ended. ELB's idle
//! timeout (ELB-SPEC §5) closes a tunnel in which no byte moved either way for that long, on the connection's lazy
//! timer, read only when the tunnel would otherwise wait.
//!
//! Each direction also notes when its first byte was read and written, for the access log's three timings of a
//! TCP connection (ELB-SPEC §11): one clock read per direction, not per byte.
//!
//! Trade-off: bytes go through a user-space buffer (16 KiB each way) rather than splice(2); a TLS side could not
//! splice anyway, splice needs a pipe pair per connection and `unsafe` or a new dependency (the crate forbids
//! `unsafe`; nix is only a dev-dependency), and the copy costs what a proxied response body already costs.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;

use crate::http1::io::LazyTimer;

/// The most each direction holds before it waits for its writer.
const BUFFER: usize = 16 * 1024;

/// One direction of a tunnel: what was read and not yet written, and how far the end of stream got.
struct Direction {
    pending: BytesMut,
    /// The reader reached its end of stream.
    read_done: bool,
    /// The end of stream was passed on (the writer was shut down).
    shut: bool,
    /// Bytes written so far.
    moved: u64,
    /// When the first byte was read from the reader, and when the first was written to the writer.
    first_read: Option<Instant>,
    first_written: Option<Instant>,
}

impl Direction {
    fn new(already_read: Bytes) -> Self {
        let mut pending = BytesMut::with_capacity(BUFFER.max(already_read.len()));
        pending.extend_from_slice(&already_read);
        Direction {
            pending,
            read_done: false,
            shut: false,
            moved: 0,
            first_read: None,
            first_written: None,
        }
    }

    /// Moves bytes from `reader` to `writer` until this direction has ended (`Ready(Ok)`) or both sides would
    /// wait. `progress` counts every read and write (the idle timer reads it); `counted` gets the bytes written.
    fn poll_move<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        progress: &mut u64,
        counted: Option<&IntCounter>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            if !self.pending.is_empty() {
                let written = ready!(Pin::new(&mut *writer).poll_write(cx, &self.pending))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pending.advance(written);
                if self.moved == 0 {
                    self.first_written = Some(Instant::now());
                }
                self.moved += written as u64;
                *progress += 1;
                if let Some(counter) = counted {
                    counter.inc_by(written as u64);
                }
                if self.pending.is_empty() {
                    // TLS holds what the socket did not take until it is flushed.
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                }
                continue;
            }
            if self.read_done {
                if !self.shut {
                    ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
            self.pending.reserve(BUFFER);
            let n = ready!(poll_read_buf(Pin::new(&mut *reader), cx, &mut self.pending))?;
            if n == 0 {
                self.read_done = true;
            } else {
                if self.first_read.is_none() {
                    self.first_read = Some(Instant::now());
                }
                *progress += 1;
            }
        }
    }
}

/// A tunnel between a client (polled by whoever owns it, the client connection) and an instance's connection.
pub(crate) struct Tunnel<B> {
    backend: B,
    /// Client to instance.
    up: Direction,
    /// Instance to client.
    down: Direction,
    idle: IdleClock,
    /// Bytes from the client and to the client, for the node's metrics (none where the client's socket counts
    /// them itself).
    received: Option<IntCounter>,
    sent: Option<IntCounter>,
}

/// When a tunnel's first bytes moved, for the access log: `None` where no byte did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FirstBytes {
    /// The first byte written to the instance.
    pub to_instance: Option<Instant>,
    /// The first byte read from the instance.
    pub from_instance: Option<Instant>,
    /// The first byte written to the client.
    pub to_client: Option<Instant>,
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TunnelEnd {
    /// Both sides closed their end.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle,
}

impl<B: AsyncRead + AsyncWrite + Unpin> Tunnel<B> {
    /// A tunnel over `backend`, with what each side already sent that has not been passed on yet.
    pub(crate) fn new(
        backend: B,
        from_client: Bytes,
        from_backend: Bytes,
        idle_timeout: Duration,
        received: IntCounter,
        sent: IntCounter,
    ) -> Self {
        let mut tunnel = Self::uncounted(backend, from_client, from_backend, idle_timeout);
        tunnel.received = Some(received);
        tunnel.sent = Some(sent);
        tunnel
    }

    /// A tunnel whose client bytes are counted elsewhere: an HTTP/2 client's stream (RFC 8441), whose connection's
    /// socket counts every frame.
    pub(crate) fn uncounted(
        backend: B,
        from_client: Bytes,
        from_backend: Bytes,
        idle_timeout: Duration,
    ) -> Self {
        Tunnel {
            backend,
            up: Direction::new(from_client),
            down: Direction::new(from_backend),
            idle: IdleClock::new(idle_timeout),
            received: None,
            sent: None,
        }
    }

    /// Bytes passed on to the client so far.
    pub(crate) fn sent(&self) -> u64 {
        self.down.moved
    }

    /// Bytes passed on to the instance so far.
    pub(crate) fn received(&self) -> u64 {
        self.up.moved
    }

    /// When the first bytes moved each way.
    pub(crate) fn first_bytes(&self) -> FirstBytes {
        FirstBytes {
            to_instance: self.up.first_written,
            from_instance: self.down.first_read,
            to_client: self.down.first_written,
        }
    }

    /// Moves bytes both ways until both directions have ended or the tunnel idled for the idle timeout.
    pub(crate) fn poll<C: AsyncRead + AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
    ) -> Poll<io::Result<TunnelEnd>> {
        let progress = self.idle.progress();
        let up = self.up.poll_move(
            cx,
            client,
            &mut self.backend,
            progress,
            self.received.as_ref(),
        );
        let down = self
            .down
            .poll_move(cx, &mut self.backend, client, progress, self.sent.as_ref());
        match (up, down) {
            (Poll::Ready(Err(error)), _) | (_, Poll::Ready(Err(error))) => {
                return Poll::Ready(Err(error))
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => {
                return Poll::Ready(Ok(TunnelEnd::Closed))
            }
            _ => {}
        }
        self.idle.poll_idle(cx).map(|()| Ok(TunnelEnd::Idle))
    }
}

/// ELB's idle timeout for a tunnel (ELB-SPEC §5): the copy loops count every read and write in `progress`, and the
/// clock, polled only when both directions wait, fires once no byte moved for the timeout. The timer is lazy: it
/// is moved only when it is polled, not on every byte.
pub(crate) struct IdleClock {
    timeout: Duration,
    timer: LazyTimer,
    progress: u64,
    mark: u64,
}

impl IdleClock {
    pub(crate) fn new(timeout: Duration) -> Self {
        IdleClock {
            timeout,
            timer: LazyTimer::new(Instant::now() + timeout),
            progress: 0,
            mark: 0,
        }
    }

    /// The counter the copy loops move on every read and write.
    pub(crate) fn progress(&mut self) -> &mut u64 {
        &mut self.progress
    }

    /// Ready once no byte has moved for the idle timeout; call it when both directions wait.
    pub(crate) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.progress != self.mark {
                self.mark = self.progress;
                self.timer.set(Instant::now() + self.timeout);
            }
            ready!(self.timer.poll_expired(cx));
            if self.progress == self.mark {
                return Poll::Ready(());
            }
        }
    }
}
