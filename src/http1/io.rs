//! Reading and writing HTTP/1 sockets, the same way at both ends: reads that clear the socket's readiness when
//! they drain it, writes that gather queued buffers into one `writev`, and the lazy timer both ends' idle and
//! header waits run on.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use crossbeam_utils::atomic::AtomicCell;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The most buffers one `writev` takes.
pub(crate) const MAX_IOVECS: usize = 16;

/// A socket HTTP/1 is spoken on: plain TCP, or TLS over it.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// Ready when a read would find something (bytes, the end of the stream, an error), without a buffer to read
    /// into: a keep-alive connection waits here between requests holding none, and takes one only when its
    /// client sends (nginx frees its buffer the same way). A stream that cannot tell says ready and is read.
    fn poll_readable(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Appends what arrived to `buf`; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        std::pin::pin!(self.read_buf(buf)).poll(cx)
    }
}

/// An HTTPS client's connection: readable when rustls already holds plaintext (or the peer's close), else when
/// the socket is (a partial record waits in rustls for the rest, which only the socket can bring).
impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (socket, tls) = self.get_ref();
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        socket.poll_read_ready(cx)
    }
}

/// An HTTPS instance's connection (`instance_protocol = "HTTPS"`): read through rustls's buffer.
impl Stream for tokio_rustls::client::TlsStream<TcpStream> {}

/// An in-memory stream, so tests run the servers' timers on tokio's paused clock: a real socket would let the
/// paused clock jump to a timer while the kernel still holds bytes on their way (tokio issue #4522).
#[cfg(test)]
impl Stream for tokio::io::DuplexStream {}

impl Stream for TcpStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }

    /// Clears the socket's readiness after a short read ([`poll_read_drained`]).
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        poll_read_drained(self, cx, buf)
    }
}

/// Reads what `stream` has into `buf`'s spare room; `Ok(0)` is the end of the stream.
///
/// A read that returns less than it asked for has emptied the socket, so the socket's readiness is cleared along
/// with it (as nginx does with edge-triggered epoll): the next poll waits for the reactor instead of spending a
/// system call to learn that nothing is there. The readiness seen *before* the read is what gets cleared, so bytes
/// that arrive after it raise a new event and are never missed. Both ends of elbe read TCP sockets this way.
pub(crate) fn poll_read_drained(
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

/// Bytes waiting to be written, front first, as the buffers they came in (a head, body frames, chunk framing):
/// written with one `writev` per call instead of being copied together.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    buffers: VecDeque<Bytes>,
    bytes: usize,
}

impl WriteQueue {
    pub(crate) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.bytes += bytes.len();
            self.buffers.push_back(bytes);
        }
    }

    pub(crate) fn push_static(&mut self, bytes: &'static [u8]) {
        self.push(Bytes::from_static(bytes));
    }

    /// Bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Buffers queued.
    pub(crate) fn buffers(&self) -> usize {
        self.buffers.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.buffers.clear();
        self.bytes = 0;
    }

    /// Gives the queue's room back when it is empty (a connection going idle keeps no allocation for it).
    pub(crate) fn release(&mut self) {
        if self.buffers.is_empty() && self.buffers.capacity() > 0 {
            self.buffers = VecDeque::new();
        }
    }

    /// Drops `n` written bytes from the front.
    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.buffers.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.buffers.pop_front();
            } else {
                front.advance(n);
                return;
            }
        }
    }
}

/// One `writev` of `first` (not queued: a request head the caller keeps, to send again if it must) and then the
/// queue's buffers; what was written of the queue leaves it. Returns the bytes written, `first`'s included.
pub(crate) fn poll_writev<W: AsyncWrite + Unpin>(
    io: &mut W,
    cx: &mut Context<'_>,
    first: &[u8],
    queue: &mut WriteQueue,
) -> Poll<io::Result<usize>> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let buffers = std::iter::once(first)
        .filter(|b| !b.is_empty())
        .chain(queue.buffers.iter().map(|b| &b[..]));
    let mut count = 0;
    for (slice, buf) in slices.iter_mut().zip(buffers) {
        *slice = IoSlice::new(buf);
        count += 1;
    }
    let written = ready!(Pin::new(io).poll_write_vectored(cx, &slices[..count]))?;
    if written == 0 && count > 0 {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
    }
    queue.advance(written.saturating_sub(first.len()));
    Poll::Ready(Ok(written))
}

/// A timer for waits whose deadline moves often (each request moves a keep-alive connection's idle deadline):
/// registering a timer with tokio and removing it take the timer wheel's lock, so the deadline is a plain value
/// and the sleep is reset only when the deadline moves earlier, or when the sleep fires before the deadline (then
/// it is re-armed for the deadline). A busy connection resets it about once per timeout instead of once per
/// request.
///
/// The sleep itself (112 bytes, boxed) can be lent out while this timer is not timing anything ([`Self::lend`]):
/// an HTTP/1 client connection lends it to the request it hands to the proxy stack, whose request timer
/// ([`TimerSlot`]) times the exchange with the instance, and takes it back when its own wait starts again. So a
/// connection keeps one sleep where it kept two, one for its own waits and one for its requests (BENCHMARKS.md
/// "Idle connections"). A timer with no sleep makes one when it is first polled.
#[derive(Debug)]
pub(crate) struct LazyTimer {
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LazyTimer {
    pub(crate) fn new(deadline: Instant) -> Self {
        LazyTimer {
            deadline,
            sleep: None,
        }
    }

    /// Moves the deadline, earlier or later.
    pub(crate) fn set(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// Ready once the deadline has passed; otherwise the task is woken when the sleep fires.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(self.deadline)));
        loop {
            if self.deadline < sleep.deadline() {
                sleep.as_mut().reset(self.deadline);
            }
            ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= self.deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(self.deadline);
        }
    }

    /// Puts the sleep in `slot` while this timer has nothing to time (a sleep already there is dropped: one is
    /// kept either way). Until [`Self::reclaim`], polling makes a new one.
    pub(crate) fn lend(&mut self, slot: &TimerSlot) {
        if let Some(sleep) = self.sleep.take() {
            slot.store(Some(sleep));
        }
    }

    /// Where the sleep is, if this timer holds one (tests check that one sleep goes round).
    #[cfg(test)]
    pub(crate) fn sleep_address(&self) -> Option<usize> {
        self.sleep
            .as_ref()
            .map(|sleep| &**sleep as *const Sleep as usize)
    }

    /// Takes the lent sleep back from `slot`, if this timer has none and the slot has one.
    pub(crate) fn reclaim(&mut self, slot: &TimerSlot) {
        if self.sleep.is_none() {
            self.sleep = slot.take();
        }
    }
}

/// Where a connection keeps a sleep that its parts use in turn: one pointer, swapped atomically (lock-free at
/// pointer size: a test checks), 24 bytes with its `Arc`'s counts where a padded queue took 512 on every
/// connection, idle or not. The proxy stack's request timer takes it for the exchange with an instance and gives
/// it back when the exchange has its answer; an HTTP/1 connection lends it its own ([`LazyTimer::lend`]).
pub(crate) type TimerSlot = Arc<AtomicCell<Option<Pin<Box<Sleep>>>>>;

/// An empty slot for a new connection.
pub(crate) fn timer_slot() -> TimerSlot {
    Arc::new(AtomicCell::new(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The slot is one atomic word, no lock and no padding: what makes it cheap on every idle connection.
    #[test]
    fn the_timer_slot_is_a_lock_free_pointer() {
        assert!(AtomicCell::<Option<Pin<Box<Sleep>>>>::is_lock_free());
        assert_eq!(
            std::mem::size_of::<AtomicCell<Option<Pin<Box<Sleep>>>>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lazy_timer_fires_at_its_latest_deadline_and_when_moved_earlier() {
        let start = Instant::now();
        let mut timer = LazyTimer::new(start + Duration::from_secs(1));
        timer.set(start + Duration::from_secs(3));
        std::future::poll_fn(|cx| timer.poll_expired(cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        timer.set(Instant::now() + Duration::from_secs(5));
        timer.set(Instant::now() + Duration::from_secs(2));
        let at = Instant::now();
        std::future::poll_fn(|cx| timer.poll_expired(cx)).await;
        assert_eq!(Instant::now() - at, Duration::from_secs(2));
    }

    #[tokio::test]
    async fn writev_takes_what_was_written_off_the_queue() {
        let (mut a, mut b) = tokio::io::duplex(5);
        let mut queue = WriteQueue::default();
        queue.push(Bytes::from_static(b"abc"));
        queue.push(Bytes::from_static(b"defg"));
        let n = std::future::poll_fn(|cx| poll_writev(&mut a, cx, b"12", &mut queue))
            .await
            .unwrap();
        assert_eq!(n, 5, "the duplex takes five bytes");
        assert_eq!((queue.bytes(), queue.buffers()), (4, 1));
        let mut out = [0u8; 5];
        tokio::io::AsyncReadExt::read_exact(&mut b, &mut out)
            .await
            .unwrap();
        assert_eq!(&out, b"12abc");
    }
}
