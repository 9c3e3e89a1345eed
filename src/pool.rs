//! The pool of idle keep-alive HTTP/1.1 connections to one instance.
//!
//! ELB-SPEC.md §1.1: the load balancer keeps connections to its instances open and reuses them across clients.
//! The hot path never takes a lock here: idle connections sit in a bounded lock-free queue (`crossbeam`'s
//! `ArrayQueue`), a request pops one, and the response body pushes it back once it has been read to the end.
//! hyper-util's legacy `Client` pool guards its idle lists with a mutex; this is the lock-free replacement.
//! A connection that the instance closed, or that sat idle longer than the idle timeout, is dropped when popped
//! (ELB closes back-end connections idle longer than its idle timeout, ELB-SPEC.md §5).

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::error::ProxyError;

struct IdleConnection {
    sender: SendRequest<RequestBody>,
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

    /// Pops an idle connection that is still open and has not been idle too long. The caller still awaits
    /// `ready()`: a connection returned a moment ago may be finishing its previous exchange.
    pub fn checkout(&self) -> Option<SendRequest<RequestBody>> {
        while let Some(conn) = self.idle.pop() {
            if conn.sender.is_closed() || conn.since.elapsed() >= self.idle_timeout {
                continue;
            }
            return Some(conn.sender);
        }
        None
    }

    /// Returns a connection whose last response was read to the end. A full pool closes it instead.
    pub fn checkin(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let _ = self.idle.push(IdleConnection {
            sender,
            since: Instant::now(),
        });
    }

    /// Opens a new connection to the instance, bounded by the connect timeout.
    pub async fn connect(&self) -> Result<SendRequest<RequestBody>, ProxyError> {
        let addr = self.addr;
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
                Err(_) => return Err(ProxyError::ConnectTimeout { addr }),
            };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|err| ProxyError::Connect {
                addr,
                source: std::io::Error::other(err),
            })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%addr, error = %err, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }
}
