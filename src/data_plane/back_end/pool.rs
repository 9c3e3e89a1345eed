//! The pool of idle keep-alive HTTP/1.1 connections to one instance.
//!
//! ELB-SPEC.md §1.1: the load balancer keeps connections to its instances open and reuses them across clients.
//! The hot path never takes a lock here: idle connections sit in a bounded lock-free queue (`crossbeam`'s
//! `ArrayQueue`), a request pops one, and the response body pushes it back once it has been read to the end.
//! hyper-util's legacy `Client` pool guards its idle lists with a mutex; this is the lock-free replacement.
//! A connection that the instance closed, or that sat idle longer than the idle timeout, is dropped when popped
//! (ELB closes back-end connections idle longer than its idle timeout, ELB-SPEC.md §5), and a reaper task
//! ([`Pool::reap_every`]) drops them between requests too, so a quiet instance's pool does not keep sockets the
//! instance already closed. Plain and TLS connections (`instance_protocol = "HTTPS"`) pool alike; a checkout takes
//! only a connection made with the listener's current TLS client, so a reload that changes `backend_ca` is
//! obeyed by the next request rather than after the old connections idle out.

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::time::Instant;

use crate::data_plane::back_end::error::BackendError;
use tokio::net::TcpStream;

use crate::data_plane::back_end::http1::{self, BackendConnection, InstanceTls};

struct IdleConnection {
    conn: BackendConnection,
    since: Instant,
}

/// Idle connections to one instance address.
pub struct Pool {
    addr: SocketAddr,
    idle: ArrayQueue<IdleConnection>,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("idle", &self.idle.len())
            .finish()
    }
}

impl Pool {
    /// `capacity` idle connections at most are kept (more are closed when returned).
    pub fn new(
        addr: SocketAddr,
        capacity: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        Pool {
            addr,
            idle: ArrayQueue::new(capacity.max(1)),
            idle_timeout,
            connect_timeout,
        }
    }

    /// Idle connections waiting in the pool now.
    pub fn idle_len(&self) -> usize {
        self.idle.len()
    }

    /// Pops an idle connection that has not been idle too long and was made with `tls` (a connection from before
    /// a reload changed the instance port's TLS client is closed instead). For a request that could not be
    /// replayed (`check_open`: it has a body), a connection the instance is known to have closed is skipped too; a
    /// body-less request skips that check and is replayed if it loses the keep-alive race.
    pub fn checkout(&self, check_open: bool, tls: &InstanceTls) -> Option<BackendConnection> {
        while let Some(mut idle) = self.idle.pop() {
            if idle.since.elapsed() >= self.idle_timeout || !idle.conn.made_with(tls) {
                continue;
            }
            if check_open && idle.conn.closed_while_idle() {
                continue;
            }
            return Some(idle.conn);
        }
        None
    }

    /// Returns a connection whose exchange ended cleanly. A full pool closes it instead.
    pub fn checkin(&self, conn: BackendConnection) {
        let _ = self.idle.push(IdleConnection {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes every idle connection (the instance is leaving).
    pub(crate) fn clear(&self) {
        while self.idle.pop().is_some() {}
    }

    /// Drops the idle connections that sat idle longer than the idle timeout or that the instance closed, keeping
    /// the others (each is taken out and put back: a request meanwhile may open a new connection instead). Returns
    /// how many were dropped.
    pub fn reap(&self) -> usize {
        let mut dropped = 0;
        for _ in 0..self.idle.len() {
            let Some(mut idle) = self.idle.pop() else {
                break;
            };
            if idle.since.elapsed() >= self.idle_timeout || idle.conn.closed_while_idle() {
                dropped += 1;
            } else {
                let _ = self.idle.push(idle);
            }
        }
        dropped
    }

    /// How often [`Pool::reap`] runs: twice per idle timeout, at most every 30 s, at least every 100 ms.
    pub fn reap_every(&self) -> Duration {
        (self.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// Opens a new connection to the instance, in TLS with `tls` when given, bounded by the connect timeout.
    pub async fn connect(&self, tls: &InstanceTls) -> Result<BackendConnection, BackendError> {
        BackendConnection::connect(self.addr, self.connect_timeout, tls).await
    }

    /// Opens a TCP connection to the instance for a TCP/SSL listener (which writes its PROXY line before any TLS),
    /// bounded by the connect timeout.
    pub(crate) async fn connect_tcp(&self) -> Result<TcpStream, BackendError> {
        http1::connect_tcp(self.addr, self.connect_timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn reaping_drops_connections_the_instance_closed_or_that_idled_too_long() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(
            listener.local_addr().unwrap(),
            4,
            Duration::from_millis(300),
            Duration::from_secs(1),
        );
        let closed = pool.connect(&None).await.unwrap();
        let (closed_by_instance, _) = listener.accept().await.unwrap();
        let kept = pool.connect(&None).await.unwrap();
        let (_kept_by_instance, _) = listener.accept().await.unwrap();
        pool.checkin(closed);
        pool.checkin(kept);
        drop(closed_by_instance);
        // The close is seen once the reactor has had the event.
        let mut dropped = 0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            dropped += pool.reap();
            if dropped > 0 {
                break;
            }
        }
        assert_eq!(dropped, 1, "the connection the instance closed goes");
        assert_eq!(pool.idle_len(), 1, "the open one stays");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.reap(), 1, "past the idle timeout it goes too");
        assert_eq!(pool.idle_len(), 0);
    }
}
