//! A client stream with bytes put back in front: what was read past a PROXY header belongs to what follows it (an
//! SSL or HTTPS listener's TLS handshake, an HTTP listener's first request), so reads serve those bytes first, then
//! the socket's. Writes go straight through. Only listeners with `accept_proxy_protocol` use it: the others serve
//! the bare socket, with nothing in the way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http1::io::Stream;

pub(crate) struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub(crate) fn new(prefix: Bytes, io: IO) -> Self {
        Prefixed { prefix, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// elbe's HTTP/1 server reads through [`Stream::poll_fill`]: the prefix first, then the stream's own way of
/// filling (a plain socket's [`crate::http1::io::poll_read_drained`]).
impl<IO: Stream> Stream for Prefixed<IO> {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        if self.prefix.is_empty() {
            return self.io.poll_fill(cx, buf);
        }
        let prefix = std::mem::take(&mut self.prefix);
        buf.extend_from_slice(&prefix);
        Poll::Ready(Ok(prefix.len()))
    }
}

/// An HTTPS listener's connections with a PROXY header: TLS over the socket with the header's leftovers in front.
impl Stream for tokio_rustls::server::TlsStream<Prefixed<TcpStream>> {}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_prefix_comes_before_the_stream() {
        let (mut near, far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut near, b" world")
            .await
            .unwrap();
        drop(near);
        let mut stream = Prefixed::new(Bytes::from_static(b"hello"), far);
        let mut all = String::new();
        stream.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[tokio::test]
    async fn elbes_http_server_fills_from_the_prefix_then_the_stream() {
        let (mut near, far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut near, b"world")
            .await
            .unwrap();
        let mut stream = Prefixed::new(Bytes::from_static(b"hello "), far);
        let mut buf = BytesMut::with_capacity(64);
        let first = std::future::poll_fn(|cx| stream.poll_fill(cx, &mut buf)).await;
        assert_eq!(first.unwrap(), 6);
        let second = std::future::poll_fn(|cx| stream.poll_fill(cx, &mut buf)).await;
        assert_eq!(second.unwrap(), 5);
        assert_eq!(&buf[..], b"hello world");
    }
}
