//! The pool of idle keep-alive HTTP/1.1 connections to one instance, sized by the instance's demand.
//!
//! ELB-SPEC.md §1.1: the load balancer keeps connections to its instances open and reuses them across clients.
//! The hot path never takes a lock here: idle connections sit in a lock-free queue (`crossbeam`'s `SegQueue`,
//! with an atomic count beside it), a request pops one, and the response body pushes it back once it has been read
//! to the end. hyper-util's legacy `Client` pool guards its idle lists with a mutex; this is the lock-free
//! replacement.
//!
//! **How many are kept.** A connection coming back is kept while the pool holds fewer idle connections than the
//! instance's recent demand: the peak of its concurrent requests over the last one to two idle timeouts, and never
//! less than `backend_idle_connections` (the floor, which a quiet instance keeps room for). A fixed cap under the
//! demand churns: 640 concurrent HTTP/2 streams (h2load -c64 -m10) against a pool of 128 closed the surplus after
//! every burst and connected again for the next one (7,855 new connections per 100,000 requests; BENCHMARKS.md
//! "HTTP/2"). Sized by the peak, a burst's connections stay for the next burst (321 new ones, once); when the peak
//! is an idle timeout old the reaper closes the surplus, oldest first. The queue allocates in blocks of 31 slots as
//! it grows and frees them as it drains (keeping the current one), so an instance costs no slots before it is used
//! and about one block after, not a preallocated cap. A connection waits here holding no read buffer (it gives
//! its buffer to the worker's pool first: [`BackendConnection::trim_for_pool`]), so the connections a burst left
//! cost their sockets, not 8 KiB each.
//!
//! A connection that the instance closed, or that sat idle longer than the idle timeout, is dropped when popped
//! (ELB closes back-end connections idle longer than its idle timeout, ELB-SPEC.md §5), and a reaper task
//! ([`Pool::reap_every`]) drops them between requests too, so a quiet instance's pool does not keep sockets the
//! instance already closed. Plain and TLS connections (`instance_protocol = "HTTPS"`) pool alike; a checkout takes
//! only a connection made with the listener's current TLS client, so a reload that changes `backend_ca` is
//! obeyed by the next request rather than after the old connections idle out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_queue::SegQueue;
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
    idle: SegQueue<IdleConnection>,
    /// `idle`'s length, kept beside it: `SegQueue::len` walks the queue's indices, and checkin reads this on
    /// every response. Approximate under races (a push counted a moment late), which only moves the cap by one.
    idle_count: AtomicUsize,
    /// `backend_idle_connections`: room kept whatever the demand.
    floor: usize,
    /// The highest demand (concurrent requests to the instance) seen in this window and the one before it. The
    /// reaper rolls the windows once per idle timeout, so a peak is remembered one to two idle timeouts.
    peak: AtomicUsize,
    previous_peak: AtomicUsize,
    /// When the current window began (only the reaper reads and moves it).
    window_start: AtomicU64,
    created: Instant,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("idle", &self.idle_len())
            .field("keeps", &self.keeps())
            .finish()
    }
}

impl Pool {
    /// At least `floor` idle connections are kept; more while the instance's recent demand needs them.
    pub fn new(
        addr: SocketAddr,
        floor: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        Pool {
            addr,
            idle: SegQueue::new(),
            idle_count: AtomicUsize::new(0),
            floor: floor.max(1),
            peak: AtomicUsize::new(0),
            previous_peak: AtomicUsize::new(0),
            window_start: AtomicU64::new(0),
            created: Instant::now(),
            idle_timeout,
            connect_timeout,
        }
    }

    /// Idle connections waiting in the pool now.
    pub fn idle_len(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed)
    }

    /// How many idle connections the pool keeps now: the floor, or the recent peak of demand if higher.
    pub fn keeps(&self) -> usize {
        self.floor
            .max(self.peak.load(Ordering::Relaxed))
            .max(self.previous_peak.load(Ordering::Relaxed))
    }

    fn pop(&self) -> Option<IdleConnection> {
        let idle = self.idle.pop()?;
        self.idle_count.fetch_sub(1, Ordering::Relaxed);
        Some(idle)
    }

    fn push(&self, idle: IdleConnection) {
        self.idle_count.fetch_add(1, Ordering::Relaxed);
        self.idle.push(idle);
    }

    /// Pops an idle connection that has not been idle too long and was made with `tls` (a connection from before
    /// a reload changed the instance port's TLS client is closed instead). For a request that could not be
    /// replayed (`check_open`: it has a body), a connection the instance is known to have closed is skipped too; a
    /// body-less request skips that check and is replayed if it loses the keep-alive race.
    pub fn checkout(&self, check_open: bool, tls: &InstanceTls) -> Option<BackendConnection> {
        while let Some(mut idle) = self.pop() {
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

    /// Returns a connection whose exchange ended cleanly; `demand` is the instance's concurrent requests now (this
    /// one included), which raises the recent peak. A pool already holding what the demand needs closes it.
    pub fn checkin(&self, conn: BackendConnection, demand: usize) {
        // A load first: the read-modify-write only when the peak moves, so a steady load shares the line.
        if demand > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(demand, Ordering::Relaxed);
        }
        if self.idle_len() >= self.keeps() {
            return;
        }
        self.push(IdleConnection {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes every idle connection (the instance is leaving).
    pub(crate) fn clear(&self) {
        while self.pop().is_some() {}
    }

    /// Drops the idle connections that sat idle longer than the idle timeout or that the instance closed, and,
    /// once the demand that needed them is an idle timeout old, the surplus over what the pool keeps now (oldest
    /// first), keeping the others (each is taken out and put back: a request meanwhile may open a new connection
    /// instead). Returns how many were dropped.
    pub fn reap(&self) -> usize {
        self.roll_window();
        let mut dropped = 0;
        for _ in 0..self.idle_len() {
            let Some(mut idle) = self.pop() else {
                break;
            };
            let surplus = self.idle_len() >= self.keeps();
            if surplus || idle.since.elapsed() >= self.idle_timeout || idle.conn.closed_while_idle()
            {
                dropped += 1;
            } else {
                self.push(idle);
            }
        }
        dropped
    }

    /// Starts a new demand window when the current one is an idle timeout old: the peak so far becomes the
    /// previous one, and the new window starts from nothing (the next responses raise it again).
    fn roll_window(&self) {
        let now = self.created.elapsed().as_millis() as u64;
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) < self.idle_timeout.as_millis() as u64 {
            return;
        }
        self.window_start.store(now, Ordering::Relaxed);
        let peak = self.peak.swap(0, Ordering::Relaxed);
        self.previous_peak.store(peak, Ordering::Relaxed);
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
        pool.checkin(closed, 1);
        pool.checkin(kept, 1);
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

    /// A burst larger than the floor keeps its connections for the next burst, and the surplus goes once the
    /// burst is an idle timeout or two old, even while the kept connections are in use (so not by idling out).
    #[tokio::test]
    async fn the_pool_keeps_what_the_recent_peak_needs_and_sheds_the_surplus_after_it() {
        const IDLE_TIMEOUT: Duration = Duration::from_millis(300);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(
            listener.local_addr().unwrap(),
            2,
            IDLE_TIMEOUT,
            Duration::from_secs(1),
        );
        let mut accepted = Vec::new();
        let mut burst = Vec::new();
        for _ in 0..10 {
            burst.push(pool.connect(&None).await.unwrap());
            accepted.push(listener.accept().await.unwrap());
        }
        // Ten requests in flight together come back: the demand was ten, so ten are kept, not the floor's two.
        for (n, conn) in burst.into_iter().enumerate() {
            pool.checkin(conn, 10 - n);
        }
        assert_eq!(pool.idle_len(), 10);
        assert_eq!(pool.reap(), 0, "the peak is recent: nothing is surplus");
        assert_eq!(pool.idle_len(), 10);

        // One request at a time from now on, each taking a connection and giving it back, so none idles out.
        let start = Instant::now();
        let deadline = start + IDLE_TIMEOUT * 10;
        while pool.idle_len() > 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for _ in 0..pool.idle_len() {
                let conn = pool.checkout(false, &None).expect("a pooled connection");
                pool.checkin(conn, 1);
            }
            pool.reap();
        }
        assert_eq!(pool.idle_len(), 2, "the surplus went, down to the floor");
        assert!(
            start.elapsed() >= IDLE_TIMEOUT,
            "not before the peak was an idle timeout old ({:?})",
            start.elapsed()
        );
        assert_eq!(pool.keeps(), 2);
    }
}
