//! Request and response headers on HTTP/HTTPS listeners: what elbe adds, what it strips, what it refuses.
//!
//! * [`set_forwarded`] writes ELB's `X-Forwarded-*` headers (ELB-SPEC §1.2): the peer address is *appended* to
//!   `X-Forwarded-For` with a comma and a space; `X-Forwarded-Proto` and `X-Forwarded-Port` are *replaced*.
//! * [`strip_hop_by_hop`] removes the headers that describe one connection, not the message (RFC 9110 §7.6.1), on
//!   the way to the instance and on the way back to the client.
//! * [`check_request`] refuses what ELB refuses (ELB-SPEC §1.1 and §9: `CONNECT`, over-long methods) and what would make
//!   the framing ambiguous between elbe and an instance (request smuggling).
//! * [`trusted_client_ip`](forwarded::trusted_client_ip) is for the instances: it reads `X-Forwarded-For` the only safe way, from the right.
//!
//! Everything here is on the request path, so it takes no lock and allocates little: the joined `X-Forwarded-For`
//! value when the client sent one, and a peer's text when the worker's cache of recent peers does not hold it
//! ([`peer_value`]); IP addresses are formatted into a stack buffer. These are plain functions over `http` types
//! so they are tested without sockets.
//!
//! The proxy calls [`strip_hop_by_hop`] *before* [`set_forwarded`]: otherwise a client sending
//! `Connection: X-Forwarded-For` would make elbe delete the very entry it vouches for.

mod checks;
pub(crate) mod forwarded;
mod hop_by_hop;
pub(crate) mod sticky_cookie;
pub(crate) mod websocket;

pub(crate) use checks::{check_framing, check_request, Rejection};
pub(crate) use forwarded::{
    forwarded_port, peer_value, set_forwarded, set_forwarded_for, ForwardedProto,
};
pub(crate) use hop_by_hop::{asks_for_websocket, strip_hop_by_hop};
