//! What a request in flight on an HTTP/1 connection needs, apart from the connection: boxed while there is one,
//! so that an idle keep-alive connection (most open ones) carries its socket, its stack, its timer and its
//! settings, and one pointer (BENCHMARKS.md "Idle connections").

use crate::data_plane::back_end::http1::InstanceStream;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::tunnel::Tunnel;
use crate::http1::io::WriteQueue;

use super::request::{Current, Feed};
use super::response::Responding;

/// What the connection is doing while it has an [`Exchange`] (with none, it waits for a request head).
pub(super) enum Stage<F> {
    /// Waiting for a request head.
    Head,
    /// The stack is working out the response.
    Call(F),
    /// Writing the response (inline: the exchange is boxed already).
    Respond(Responding),
    /// Writing what is queued, then closing; `linger`: then reading and discarding what the client still sends.
    Close { linger: bool },
    /// Closed for writing, discarding what the client sends until it closes or [`super::LINGER`] passes.
    Linger,
    /// The instance switched to WebSocket: bytes pass both ways until either side closes or the tunnel idles.
    Tunnel(Box<Tunneling>),
}

/// A WebSocket tunnel, and the upgrade request's bookkeeping (its access-log line is written when it ends).
pub(super) struct Tunneling {
    pub(super) tunnel: Tunnel<InstanceStream>,
    pub(super) body: ResponseBody,
}

/// A request in flight on a connection: its stage, what the connection remembers of it, its body's feed and the
/// bytes queued for the client. One allocation per request that follows an idle wait (the response's state is
/// inline here, where it was a box of its own), none for pipelined or back-to-back requests.
pub(super) struct Exchange<F> {
    pub(super) stage: Stage<F>,
    pub(super) feed: Option<Feed>,
    pub(super) current: Current,
    /// Bytes for the client, front first.
    pub(super) out: WriteQueue,
    /// Response frames queued and writes made, and the count when the streaming response's idle wait began: the
    /// wait's timer, when it fires, looks at these instead of the clock being read on every frame.
    pub(super) progress: u64,
    pub(super) progress_mark: u64,
}

impl<F> Exchange<F> {
    /// The connection's exchange, made if it has none.
    pub(super) fn of(slot: &mut Option<Box<Exchange<F>>>) -> &mut Exchange<F> {
        slot.get_or_insert_with(|| {
            Box::new(Exchange {
                stage: Stage::Head,
                feed: None,
                current: Current::default(),
                out: WriteQueue::default(),
                progress: 0,
                progress_mark: 0,
            })
        })
    }
}
