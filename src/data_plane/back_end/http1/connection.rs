//! An open HTTP/1.1 connection to an instance, in plain TCP or in TLS (`instance_protocol = "HTTPS"`, ELB-SPEC §1):
//! connected under a timeout (the TLS handshake included), checked for a close while it sat idle in the pool,
//! read with growing buffers, written with one `writev` per call.
//!
//! Trade-off: the TLS stream is boxed, so a plain connection stays as small and as direct as it was: each read and
//! write costs one branch more. TLS reads go through rustls's buffer rather than [`poll_read_drained`], and TLS
//! writes end with a flush, since rustls keeps what the socket did not take.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::data_plane::back_end::error::BackendError;
use crate::http1::buffers::{self, MIN_READ};
use crate::http1::io::{poll_read_drained, poll_writev, Stream, WriteQueue};

/// Reads start at [`MIN_READ`] and double while they fill the buffer (a large download), up to `MAX_READ`.
const MAX_READ: usize = 256 * 1024;

/// A TLS connection to an instance.
pub(crate) type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// An instance's socket: plain TCP, or TLS over it (boxed: rustls's state is large and plain connections are
/// the common case). What a tunnel runs over after a `101`, and what a TCP/SSL listener's connection runs over.
pub(crate) type InstanceStream = Either<TcpStream, Box<TlsStream>>;

/// The TLS client a connection was made with, or `None` for plain TCP. Connections are told apart by it: a pooled
/// connection made with another client (before a reload changed `backend_ca`) is not reused.
pub(crate) type InstanceTls = Option<Arc<rustls::ClientConfig>>;

/// An open HTTP/1.1 connection to an instance, idle or carrying one exchange.
pub struct BackendConnection {
    stream: InstanceStream,
    /// The TLS client the connection was made with (`None`: plain TCP).
    tls: InstanceTls,
    /// TLS only: bytes written into rustls that it has not handed to the socket yet.
    unflushed: bool,
    /// Bytes read from the instance and not consumed yet.
    pub(super) read_buf: BytesMut,
    /// How much the next read asks for.
    read_size: usize,
}

impl BackendConnection {
    /// Connects to an instance, in TLS when `tls` is given, the handshake and the TCP connect bounded together by
    /// the connect timeout.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: &InstanceTls,
    ) -> Result<Self, BackendError> {
        let stream = match tls {
            None => Either::Left(connect_tcp(addr, timeout).await?),
            // Boxed: the handshake's state (rustls's connection) is large, and every request's future holds the
            // space of this one whether it connects in TLS, in plain TCP or not at all (measured: unboxed, it
            // doubled the memcpy of each request's future, 2% of a plain request's instructions).
            Some(config) => {
                match Box::pin(tokio::time::timeout(timeout, open_tls(addr, config))).await {
                    Ok(opened) => opened?,
                    Err(_) => return Err(BackendError::ConnectTimeout { addr }),
                }
            }
        };
        Ok(BackendConnection {
            stream,
            tls: tls.clone(),
            unflushed: false,
            read_buf: BytesMut::new(),
            read_size: MIN_READ,
        })
    }

    /// Whether this connection was made with `tls` (the same client, or both plain): only then may the listener
    /// now asking reuse it.
    pub(crate) fn made_with(&self, tls: &InstanceTls) -> bool {
        match (&self.tls, tls) {
            (None, None) => true,
            (Some(made), Some(wanted)) => Arc::ptr_eq(made, wanted),
            _ => false,
        }
    }

    /// Whether the instance closed this idle connection (or sent something unasked) while it sat in the pool.
    /// Costs a system call only when the reactor has seen the socket become readable; a close it has not seen
    /// yet is the keep-alive race, which the caller handles by replaying (or answering 504, as ELB does).
    ///
    /// A TLS connection is read through rustls: a TLS 1.3 instance sends session tickets after the handshake,
    /// which make the socket readable without closing anything, and a close_notify reads as the end of stream.
    pub fn closed_while_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let tcp = match &self.stream {
            Either::Left(tcp) => tcp,
            Either::Right(tls) => tls.get_ref().0,
        };
        match tcp.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => match &mut self.stream {
                Either::Left(tcp) => match tcp.try_read_buf(&mut self.read_buf) {
                    Err(error) => error.kind() != io::ErrorKind::WouldBlock,
                    // End of stream, or bytes nobody asked for: either way not a connection to send on.
                    Ok(_) => true,
                },
                Either::Right(tls) => {
                    self.read_buf.reserve(MIN_READ);
                    tls_fill(tls, &mut cx, &mut self.read_buf).is_ready()
                }
            },
        }
    }

    /// Before the connection waits in the pool: its read buffer, empty, goes to the worker's pool
    /// ([`buffers::give_back`]; one a large download grew goes to the allocator), and reads start small again. The
    /// pool keeps as many connections as the instance's recent peak of demand, so a burst would otherwise pin
    /// 8 KiB (up to 256 KiB after a download) per idle connection for an idle timeout or two: measured, a burst of
    /// 8,000 clients left 4,000 idle instance connections holding 33 MB (BENCHMARKS.md "Idle connections"). The
    /// next exchange takes a buffer when the instance's answer arrives, the one last given back first.
    pub(crate) fn trim_for_pool(&mut self) {
        if self.read_buf.is_empty() {
            buffers::give_back(&mut self.read_buf);
        }
        self.read_size = MIN_READ;
    }

    /// Reads what the instance sent into `read_buf`; `Ok(0)` is the end of the stream. Reads grow while they
    /// fill the buffer (a large download).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() == 0 {
            self.read_buf = buffers::take();
        }
        if self.read_buf.capacity() - self.read_buf.len() < self.read_size / 2 {
            self.read_buf.reserve(self.read_size);
        }
        let asked = self.read_buf.capacity() - self.read_buf.len();
        let n = ready!(match &mut self.stream {
            Either::Left(tcp) => poll_read_drained(tcp, cx, &mut self.read_buf),
            Either::Right(tls) => tls_fill(tls, cx, &mut self.read_buf),
        })?;
        if n == asked {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Writes `head` from `head_written` on, then `queue`, front first, dropping each queued buffer once written
    /// and moving `head_written` on; on TLS, flushes. `Ok`: all written; on `Pending` or an error, what was
    /// written is accounted.
    pub(super) fn poll_write_all(
        &mut self,
        head: &[u8],
        head_written: &mut usize,
        queue: &mut WriteQueue,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while *head_written < head.len() || !queue.is_empty() {
            let first = &head[*head_written..];
            let written = ready!(match &mut self.stream {
                Either::Left(tcp) => poll_writev(tcp, cx, first, queue),
                Either::Right(tls) => {
                    self.unflushed = true;
                    poll_writev(&mut **tls, cx, first, queue)
                }
            })?;
            *head_written += written.min(first.len());
        }
        if let (Either::Right(tls), true) = (&mut self.stream, self.unflushed) {
            ready!(Pin::new(&mut **tls).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// TLS only: written bytes rustls still holds, which [`BackendConnection::poll_write_all`] flushes.
    pub(super) fn is_unflushed(&self) -> bool {
        self.unflushed
    }

    /// The socket and what was read from it and not consumed (after a `101`, for a tunnel).
    pub(crate) fn into_parts(self) -> (InstanceStream, Bytes) {
        (self.stream, self.read_buf.freeze())
    }
}

/// A TCP connection to an instance, bounded by the connect timeout (a TCP/SSL listener's, which writes its PROXY
/// line before any TLS).
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, BackendError> {
    match tokio::time::timeout(timeout, open_tcp(addr)).await {
        Ok(opened) => opened,
        Err(_) => Err(BackendError::ConnectTimeout { addr }),
    }
}

async fn open_tcp(addr: SocketAddr) -> Result<TcpStream, BackendError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| BackendError::Connect { addr, source })?;
    // Request heads are written whole; Nagle would only delay them.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// TCP, then the TLS handshake with `config`.
async fn open_tls(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> Result<InstanceStream, BackendError> {
    let tcp = open_tcp(addr).await?;
    // ELB sends no SNI to instances (ELB-SPEC §12); rustls needs a name all the same, and the client
    // configuration has SNI off, so the address stands in (it is not checked, `back_end::tls`).
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map(|tls| Either::Right(Box::new(tls)))
        .map_err(|source| BackendError::Tls { addr, source })
}

/// Reads from a TLS connection into `buf`. An instance that closes the TCP connection without a close_notify is
/// taken as having ended the stream: many HTTPS servers do, framed responses still detect a truncation (the
/// stream ends short of their length), and only a close-delimited body could be cut short unnoticed, as it can
/// in plain HTTP.
fn tls_fill(
    tls: &mut TlsStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    match ready!(tls.poll_fill(cx, buf)) {
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
        read => Poll::Ready(read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connection going into the pool holds no read buffer (the grown one of a download went to the allocator,
    /// a small one to the worker's pool), and reads start small again; a buffer still holding bytes stays.
    #[tokio::test]
    async fn a_pooled_connection_holds_no_read_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conn = BackendConnection::connect(addr, Duration::from_secs(1), &None)
            .await
            .unwrap();
        conn.read_buf = BytesMut::with_capacity(MAX_READ);
        conn.read_size = MAX_READ;
        conn.trim_for_pool();
        assert_eq!(conn.read_buf.capacity(), 0, "the grown buffer went");
        assert_eq!(conn.read_size, MIN_READ, "reads start small again");

        conn.read_buf = buffers::take();
        let small = conn.read_buf.as_ptr();
        conn.trim_for_pool();
        assert_eq!(conn.read_buf.capacity(), 0, "the small buffer went too");
        assert_eq!(
            buffers::take().as_ptr(),
            small,
            "to the worker's pool, for the next connection to read into"
        );

        conn.read_buf = BytesMut::from(&b"unasked"[..]);
        conn.trim_for_pool();
        assert_eq!(&conn.read_buf[..], b"unasked", "bytes not consumed stay");
    }
}
