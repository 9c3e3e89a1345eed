//! What one TCP/SSL connection counts and logs (ELB-SPEC §10, §11).
//!
//! Metrics: RequestCount counts connections made to instances, Latency is the time to connect to the instance,
//! bytes both ways are counted as they move (the tunnel does that), BackendConnectionErrors as connects fail
//! (`connect`). The access log gets one line per connection when it ends, with `-` for both status codes and
//! `"- - - "` for the request: `request_processing_time` runs from the accept to the first byte sent to the
//! instance, `backend_processing_time` is the connect time, `response_processing_time` runs from the first byte
//! read from the instance to the first byte written to the client. The backend is `-` when no instance was
//! reached or the connection ended on the idle timeout, as ELB writes it. A connection that never got an
//! instance is logged too, with the three times `-1`.
//!
//! Trade-off: a connection whose bytes never moved one way logs that phase as 0, not `-1`: it was dispatched,
//! and `-1` means it was not.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::data_plane::proxy::ListenerContext;
use crate::data_plane::tunnel::FirstBytes;
use crate::observability::access_log::Entry;

/// A connection from its accept on: who it is from, and what TLS it negotiated.
pub(super) struct Record {
    received_at: SystemTime,
    accepted: Instant,
    /// The peer, or the client a trusted upstream's PROXY header named.
    pub client: SocketAddr,
    /// (cipher, protocol) on an SSL listener.
    pub tls: Option<(&'static str, &'static str)>,
}

/// How a connection that reached an instance went.
pub(super) struct Relayed {
    pub backend: SocketAddr,
    pub connect_time: Duration,
    /// When the instance's connection was ready.
    pub connected_at: Instant,
    pub first_bytes: FirstBytes,
    pub received: u64,
    pub sent: u64,
    /// It ended on the idle timeout.
    pub idle: bool,
}

impl Record {
    pub(super) fn begin(peer: SocketAddr) -> Self {
        Record {
            received_at: SystemTime::now(),
            accepted: Instant::now(),
            client: peer,
            tls: None,
        }
    }

    /// Counts a connection made to an instance: RequestCount, and its connect time as Latency.
    pub(super) fn connected(context: &ListenerContext, connect_time: Duration) {
        context.metrics.requests.inc();
        context.metrics.latency.observe(connect_time.as_secs_f64());
    }

    /// The connection is over: its access-log line, when the load balancer logs.
    pub(super) fn finish(self, context: &ListenerContext, relayed: Option<Relayed>) {
        let Some(log) = &context.access_log else {
            return;
        };
        let mut entry = Entry {
            received_at: self.received_at,
            load_balancer: log.load_balancer.clone(),
            client: self.client,
            backend: None,
            request_processing: None,
            backend_processing: None,
            response_processing: None,
            elb_status: None,
            backend_status: None,
            received_bytes: 0,
            sent_bytes: 0,
            request: None,
            user_agent: None,
            ssl_cipher: self.tls.map(|(cipher, _)| cipher),
            ssl_protocol: self.tls.map(|(_, protocol)| protocol),
        };
        if let Some(relayed) = relayed {
            let first = relayed.first_bytes;
            let to_instance = first.to_instance.unwrap_or(relayed.connected_at);
            let response = match (first.from_instance, first.to_client) {
                (Some(read), Some(written)) => written.saturating_duration_since(read),
                _ => Duration::ZERO,
            };
            entry.backend = (!relayed.idle).then_some(relayed.backend);
            entry.request_processing = Some(to_instance.saturating_duration_since(self.accepted));
            entry.backend_processing = Some(relayed.connect_time);
            entry.response_processing = Some(response);
            entry.received_bytes = relayed.received;
            entry.sent_bytes = relayed.sent;
        }
        log.log.log(entry);
    }
}
