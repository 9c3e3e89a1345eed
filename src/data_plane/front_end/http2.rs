//! The idle timer of an HTTP/2 client connection (HTTP/1 connections keep theirs in [`crate::data_plane::front_end::http1`]).
//!
//! ELB-SPEC.md §5: a front-end connection on which no request is in flight is closed after the idle timeout.
//! hyper's HTTP/2 server has no such timer, so elbe keeps it in a wrapper around the socket: the proxy tells it
//! through [`ConnectionState`] when a request (a stream) starts and when its response is over, and the wrapper
//! fails the next read that would block once the connection has been idle for the timeout. A request in flight is
//! timed by the proxy (504). The timer is lazy: the deadline is computed when the connection goes idle, and the
//! timer is reset only when it fires early.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::data_plane::body::ConnectionState;
use crate::observability::metrics::ZoneMetrics;

/// An HTTP/2 client socket with ELB's idle timer.
pub(crate) struct ClientIo<IO> {
    inner: IO,
    /// Bytes already read from the socket (by the HTTP/1 server, which saw the preface), read again first.
    prefix: Bytes,
    state: Arc<ConnectionState>,
    idle_timeout: Duration,
    busy: bool,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    metrics: Option<Arc<ZoneMetrics>>,
}

impl<IO> ClientIo<IO> {
    pub(crate) fn new(inner: IO, state: Arc<ConnectionState>, idle_timeout: Duration) -> Self {
        let deadline = Instant::now() + idle_timeout;
        ClientIo {
            inner,
            prefix: Bytes::new(),
            state,
            idle_timeout,
            busy: false,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
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

    fn count_written(&mut self, n: usize) {
        if let Some(metrics) = &self.metrics {
            metrics.sent_bytes.inc_by(n as u64);
        }
    }

    /// Brings `busy` up to date with what the proxy reported, starting the idle wait when the last request ends.
    fn refresh(&mut self, cx: &mut Context<'_>) {
        if self.state.in_flight() > 0 {
            self.busy = true;
            // Not timed here (the proxy times requests); the last response ending wakes this task.
            self.state.register(cx.waker());
            // Look again in case the last one ended between the load and the registration.
            if self.state.in_flight() > 0 {
                return;
            }
        }
        if self.busy {
            self.busy = false;
            self.deadline = Instant::now() + self.idle_timeout;
        }
    }

    /// Called when a read would block: fails it once the connection has been idle for the timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.refresh(cx);
        if self.busy {
            return Poll::Pending;
        }
        loop {
            if self.deadline < self.timer.deadline() {
                self.timer.as_mut().reset(self.deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let fired_at = self.timer.deadline();
                    self.refresh(cx);
                    if self.busy {
                        return Poll::Pending;
                    }
                    if self.deadline <= fired_at {
                        return Poll::Ready(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "idle timeout",
                        ));
                    }
                    let deadline = self.deadline;
                    self.timer.as_mut().reset(deadline);
                }
            }
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
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(metrics) = &this.metrics {
                    metrics
                        .received_bytes
                        .inc_by((buf.filled().len() - before) as u64);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.poll_idle(cx) {
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
