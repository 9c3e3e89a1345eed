//! Reading and writing HTTP/1 sockets, the same way at both ends.

use std::io;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Reads what `stream` has into `buf`'s spare room; `Ok(0)` is the end of the stream.
///
/// A read that returns less than it asked for has emptied the socket, so the socket's readiness is cleared along
/// with it (as nginx does with edge-triggered epoll): the next poll waits for the reactor instead of spending a
/// system call to learn that nothing is there. The readiness seen *before* the read is what gets cleared, so bytes
/// that arrive after it raise a new event and are never missed. Both ends of elbe read TCP sockets this way.
pub fn poll_read_drained(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let asked = buf.capacity() - buf.len();
    loop {
        ready!(stream.poll_read_ready(cx))?;
        let mut drained = None;
        let result = stream.try_io(Interest::READABLE, || {
            let n = stream.try_read_buf(buf)?;
            if n > 0 && n < asked {
                drained = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        return Poll::Ready(match (result, drained) {
            (_, Some(n)) | (Ok(n), None) => Ok(n),
            (Err(error), None) if error.kind() == io::ErrorKind::WouldBlock => continue,
            (Err(error), None) => Err(error),
        });
    }
}
