//! An open HTTP/1.1 connection to an instance: connected under a timeout, checked for a close while it sat idle
//! in the pool, read with growing buffers, written with one `writev` per call.

use std::io;
use std::net::SocketAddr;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::data_plane::back_end::error::BackendError;
use crate::http1::io::{poll_read_drained, poll_writev, WriteQueue};

/// Reads start this large and double while they fill the buffer (a large download), up to `MAX_READ`.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

/// An open HTTP/1.1 connection to an instance, idle or carrying one exchange.
pub struct BackendConnection {
    stream: TcpStream,
    /// Bytes read from the instance and not consumed yet.
    pub(super) read_buf: BytesMut,
    /// How much the next read asks for.
    read_size: usize,
}

impl BackendConnection {
    /// Connects to an instance, bounded by the connect timeout.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, BackendError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(BackendError::Connect { addr, source }),
            Err(_) => return Err(BackendError::ConnectTimeout { addr }),
        };
        // Request heads are written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        Ok(BackendConnection {
            stream,
            read_buf: BytesMut::new(),
            read_size: MIN_READ,
        })
    }

    /// Whether the instance closed this idle connection (or sent something unasked) while it sat in the pool.
    /// Costs a system call only when the reactor has seen the socket become readable; a close it has not seen
    /// yet is the keep-alive race, which the caller handles by replaying (or answering 504, as ELB does).
    pub fn closed_while_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => match self.stream.try_read_buf(&mut self.read_buf) {
                Err(error) => error.kind() != io::ErrorKind::WouldBlock,
                // End of stream, or bytes nobody asked for: either way not a connection to send on.
                Ok(_) => true,
            },
        }
    }

    /// Reads what the instance sent into `read_buf`; `Ok(0)` is the end of the stream. Reads grow while they
    /// fill the buffer (a large download).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < self.read_size / 2 {
            self.read_buf.reserve(self.read_size);
        }
        let asked = self.read_buf.capacity() - self.read_buf.len();
        let n = ready!(poll_read_drained(&self.stream, cx, &mut self.read_buf))?;
        if n == asked {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Writes `head` from `head_written` on, then `queue`, front first, dropping each queued buffer once written
    /// and moving `head_written` on. `Ok`: all written; on `Pending` or an error, what was written is accounted.
    pub(super) fn poll_write_all(
        &mut self,
        head: &[u8],
        head_written: &mut usize,
        queue: &mut WriteQueue,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while *head_written < head.len() || !queue.is_empty() {
            let first = &head[*head_written..];
            let written = ready!(poll_writev(&mut self.stream, cx, first, queue))?;
            *head_written += written.min(first.len());
        }
        Poll::Ready(Ok(()))
    }

    /// The socket and what was read from it and not consumed (after a `101`, for a tunnel).
    pub(crate) fn into_parts(self) -> (TcpStream, Bytes) {
        (self.stream, self.read_buf.freeze())
    }
}
