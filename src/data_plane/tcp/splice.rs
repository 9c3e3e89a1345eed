//! The TCP -> TCP copy loop: splice(2) through a pipe per direction, so a byte goes socket -> pipe -> socket inside
//! the kernel and never through a user-space buffer.
//!
//! Measured against elbe's buffered tunnel ([`crate::data_plane::tunnel`], which SSL listeners and WebSockets keep)
//! and tokio's `copy_bidirectional` with `benches/tcp_copy.rs` (BENCHMARKS.md, "TCP copy loop"): splice costs the
//! relay the least CPU per GiB, so plain TCP listeners use it. It behaves as the tunnel does (ELB-SPEC §1.3, §5): a
//! side's end of stream is passed on as a half-close and the other direction goes on, ELB's idle timeout closes a
//! connection in which no byte moved either way, and the first byte each way is timed for the access log.
//!
//! Readiness stays tokio's: each splice runs inside `try_io`, so an `EAGAIN` clears the socket's readiness and the
//! task waits for the next event. A direction reads into its pipe only when the pipe is empty, so an `EAGAIN` from
//! socket -> pipe always means the socket has nothing, and one from pipe -> socket means the socket is full. The
//! cost: two pipes (four descriptors) per connection while it lives.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use prometheus::IntCounter;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::data_plane::tunnel::{FirstBytes, IdleClock, TunnelEnd};

/// The most one splice moves: a pipe's default capacity (16 pages).
const CHUNK: usize = 64 * 1024;

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// One direction: its pipe, how much of what it holds is not written yet, and how far the end of stream got.
struct Direction {
    /// Bytes read before the tunnel began (past a PROXY header), written first.
    pending: Bytes,
    pipe_read: OwnedFd,
    pipe_write: OwnedFd,
    in_pipe: usize,
    read_done: bool,
    shut: bool,
    moved: u64,
    first_read: Option<Instant>,
    first_written: Option<Instant>,
    counted: IntCounter,
}

impl Direction {
    fn new(pending: Bytes, counted: IntCounter) -> io::Result<Self> {
        let (pipe_read, pipe_write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        Ok(Direction {
            pending,
            pipe_read,
            pipe_write,
            in_pipe: 0,
            read_done: false,
            shut: false,
            moved: 0,
            first_read: None,
            first_written: None,
            counted,
        })
    }

    fn wrote(&mut self, written: usize, progress: &mut u64) {
        if self.moved == 0 {
            self.first_written = Some(Instant::now());
        }
        self.moved += written as u64;
        self.counted.inc_by(written as u64);
        *progress += 1;
    }

    /// Moves bytes from `reader` to `writer` until this direction has ended (`Ready(Ok)`) or both sockets would
    /// wait. `progress` counts every splice (the idle clock reads it).
    fn poll_move(
        &mut self,
        cx: &mut Context<'_>,
        reader: &TcpStream,
        writer: &mut TcpStream,
        progress: &mut u64,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                ready!(writer.poll_write_ready(cx))?;
                match writer.try_write(&self.pending) {
                    Ok(written) => {
                        self.pending.advance(written);
                        self.wrote(written, progress);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
                continue;
            }
            if self.in_pipe > 0 {
                ready!(writer.poll_write_ready(cx))?;
                let written = match writer.try_io(Interest::WRITABLE, || {
                    let pipe = self.pipe_read.as_fd();
                    Ok(splice(
                        pipe,
                        None,
                        writer.as_fd(),
                        None,
                        self.in_pipe,
                        FLAGS,
                    )?)
                }) {
                    Ok(written) => written,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(error) => return Poll::Ready(Err(error)),
                };
                self.in_pipe -= written;
                self.wrote(written, progress);
                continue;
            }
            if self.read_done {
                if !self.shut {
                    ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
            ready!(reader.poll_read_ready(cx))?;
            let read = match reader.try_io(Interest::READABLE, || {
                let pipe = self.pipe_write.as_fd();
                Ok(splice(reader.as_fd(), None, pipe, None, CHUNK, FLAGS)?)
            }) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            };
            if read == 0 {
                self.read_done = true;
            } else {
                self.first_read.get_or_insert_with(Instant::now);
                self.in_pipe = read;
                *progress += 1;
            }
        }
    }
}

/// Bytes both ways between a TCP listener's client and its instance, by splice(2).
pub(crate) struct SpliceTunnel {
    client: TcpStream,
    instance: TcpStream,
    up: Direction,
    down: Direction,
    idle: IdleClock,
}

impl SpliceTunnel {
    /// A tunnel between `client` and `instance`, `from_client` (read past a PROXY header) going first;
    /// `received` counts bytes from the client, `sent` bytes to it. Fails only when the process is out of
    /// descriptors for the pipes.
    pub(crate) fn new(
        client: TcpStream,
        instance: TcpStream,
        from_client: Bytes,
        idle_timeout: Duration,
        received: IntCounter,
        sent: IntCounter,
    ) -> io::Result<Self> {
        Ok(SpliceTunnel {
            client,
            instance,
            up: Direction::new(from_client, received)?,
            down: Direction::new(Bytes::new(), sent)?,
            idle: IdleClock::new(idle_timeout),
        })
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
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<TunnelEnd>> {
        let progress = self.idle.progress();
        let up = self
            .up
            .poll_move(cx, &self.client, &mut self.instance, progress);
        let down = self
            .down
            .poll_move(cx, &self.instance, &mut self.client, progress);
        match (up, down) {
            (Poll::Ready(Err(error)), _) | (_, Poll::Ready(Err(error))) => Poll::Ready(Err(error)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(TunnelEnd::Closed)),
            _ => self.idle.poll_idle(cx).map(|()| Ok(TunnelEnd::Idle)),
        }
    }
}
