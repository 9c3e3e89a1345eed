//! The request path: one HTTP request from a client, through elbe's layers, to an instance and back.
//!
//! The layers, outermost first, each a small tower `Service` that can be tested alone with `oneshot`:
//!
//! 1. [`track`]: the request counts as in flight on its connection (the connection's idle and 408 timers read
//!    that), is counted in the node's metrics when its response is known, and gets its access-log line.
//! 2. [`check`]: requests elbe must refuse (ambiguous framing, CONNECT, long methods and URIs, heads the HTTP/1
//!    server could not read) get ELB's 400/405/408/414/431 and never reach an instance (ELB-SPEC.md §1.1).
//! 3. [`forwarded`]: the request is rewritten for the instance: hop-by-hop headers removed, X-Forwarded-* set
//!    (ELB-SPEC.md §1.2), `Host` supplied for HTTP/1.0 and HTTP/2, `Expect` dropped (elbe answered it).
//! 4. [`forward`]: on the listener's snapshot, loaded once: its [`rules`] (ALB's model: the first matching one
//!    forwards, redirects or answers with a fixed response), its [`sticky`] policy (ELB-SPEC.md §6: a good AWSELB
//!    cookie names the instance; the response gets ELB's cookie where the policy gives one); then pick an instance
//!    (least outstanding requests), take a pooled connection, send, and turn every failure into ELB's response
//!    (503, 502, 504), retrying once on a fresh connection when a pooled one was closed under us and the request
//!    is safe to resend. Rules and stickiness are phases, not layers: a layer costs every request a move of the
//!    request and of its future, configured or not.
//!
//! ELB's own responses are made by [`answer`] and carried by [`response_body`] like an instance's; [`context`]
//! holds what a listener's requests share. What the stack knows of its connection (the listener's context, the
//! client, the request timer's slot: [`ConnectionFacts`]) is kept once, by the innermost service, and the layers
//! around it (and the HTTP/1 server holding the stack) read it through [`Facts`]: every connection carries its
//! stack, idle or not.
//!
//! Nothing here takes a lock: the routing snapshot is an `ArcSwap` load, counters are atomics, the pool is a
//! lock-free queue.
//!
//! Responses: elbe's own carry their headers in the response's map. An instance's response carries its header
//! lines as received, in the body ([`response_body::ResponseBody::take_raw_head`]), and the map holds only what
//! layers add: an HTTP/1 client gets the lines written on, an HTTP/2 client gets them HPACK-encoded.
//! A layer that must read an instance's response headers (stickiness) reads the raw head's lines
//! ([`crate::data_plane::back_end::http1::RawHead::values`]); the headers it adds go in the map.

pub(crate) mod answer;
pub(crate) mod check;
pub(crate) mod context;
pub(crate) mod forward;
pub(crate) mod forwarded;
pub(crate) mod response_body;
pub(crate) mod rules;
pub(crate) mod sticky;
pub(crate) mod track;

use std::sync::Arc;

use tower::Layer;

pub(crate) use answer::{ElbGenerated, Refused};
pub(crate) use context::{
    ClientFacts, ClientProtocol, ConnectionFacts, Facts, ListenerContext, ListenerLog,
};

use check::{Check, CheckLayer};
use forward::Forward;
use forwarded::{Forwarded, ForwardedLayer};
use track::{Track, TrackLayer};

/// The whole stack for one client connection, outermost layer first.
pub(crate) type Stack = Track<Check<Forwarded<Forward>>>;

/// The whole stack for one client connection; its request timer's sleep comes from and goes back to `timers`
/// (an HTTP/1 connection shares the slot with its own timer, [`crate::http1::io::LazyTimer::lend`]). What it knows
/// of the connection is kept once, by [`Forward`], and read by the layers around it ([`context::Facts`]).
pub(crate) fn stack(
    context: Arc<ListenerContext>,
    client: ClientFacts,
    protocol: ClientProtocol,
    timers: forward::TimerSlot,
) -> Stack {
    let connection = match protocol {
        ClientProtocol::Http1 => None,
        ClientProtocol::Http2(state) => Some(state),
    };
    let forward = Forward {
        facts: ConnectionFacts {
            context,
            client,
            timers,
        },
    };
    let check = CheckLayer.layer(ForwardedLayer.layer(forward));
    TrackLayer { connection }.layer(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection carries its stack, idle or not: the stack keeps what it knows of the connection once (the
    /// innermost service's [`ConnectionFacts`]) and, beside it, only an HTTP/2 connection's state. With each layer
    /// keeping its own copy of the context and of the client's address it was 144 bytes (release); 56 now.
    #[test]
    fn the_stack_keeps_its_connection_once() {
        let stack = std::mem::size_of::<Stack>();
        let facts = std::mem::size_of::<ConnectionFacts>();
        println!("the stack: {stack} bytes; what it knows of its connection: {facts}");
        assert!(
            stack <= facts + std::mem::size_of::<Option<Arc<crate::data_plane::body::ConnectionState>>>(),
            "the stack ({stack} bytes) keeps more than its connection's facts ({facts} bytes) and an HTTP/2 state"
        );
    }
}
