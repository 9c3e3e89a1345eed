//! elbe's HTTP/1.1 client: one keep-alive connection to an instance, and the exchange of one request on it.
//!
//! Why elbe speaks HTTP/1.1 to instances itself rather than through hyper's client connection: hyper runs every
//! client connection on a task of its own and passes each request and response across channels, so a proxied
//! request costs two extra task wake-ups. Measured, that hop was the largest part of elbe's per-request cost
//! (BENCHMARKS.md). Here an [`Exchange`] is driven by whoever polls it, the client connection's own task: a
//! request costs one write and one read on the instance's socket and nothing else. Between requests a
//! [`BackendConnection`] is a plain value sitting in the lock-free pool.
//!
//! Scope, RFC 9112: requests go out with `Content-Length` or chunked framing (whatever the client's body needs,
//! [`request`]); responses are read with `Content-Length`, chunked or close-delimited framing ([`response`]);
//! the [`exchange`] drives both over a [`connection`].

mod connection;
mod exchange;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub(crate) use connection::{connect_tcp, BackendConnection, InstanceStream, InstanceTls};
pub(crate) use exchange::{Exchange, Resend};
pub(crate) use request::Outgoing;
pub(crate) use response::{read_head, RawHead};
