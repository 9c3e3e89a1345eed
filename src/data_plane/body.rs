//! A client's request body on its way to an instance, and the client connection's count of requests in flight.
//!
//! Bodies stream frame by frame (nothing is buffered whole), so a 1 GiB upload costs a few frames of memory. These
//! types sit below the front end, the proxy and the back end, which all hand them on: the front end feeds a
//! [`ClientBody`], the back end sends it, and the proxy counts requests in flight on their connection
//! ([`ConnectionState`]) for the front end's timers. The response body is the proxy's
//! ([`crate::data_plane::proxy::response_body`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;
use tokio::sync::mpsc;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// A request body sent to an instance: a client's (read by its connection, HTTP/1 or HTTP/2), or none.
pub(crate) enum RequestBody {
    Client(ClientBody),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            RequestBody::Client(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(body) => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(body) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A request body arriving on the client connection, handed to the stack. The connection reads the socket only
/// when this body asks for more, so a slow instance slows the client down instead of filling memory.
pub(crate) struct ClientBody {
    frames: mpsc::UnboundedReceiver<io::Result<Frame<Bytes>>>,
    demand: Arc<Demand>,
    /// `Content-Length`, when the client gave one.
    length: Option<u64>,
    received: u64,
    ended: bool,
}

/// The body asking its connection for more.
#[derive(Default)]
struct Demand {
    wanted: AtomicBool,
    connection: AtomicWaker,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.frames.poll_recv(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received += frame.data_ref().map_or(0, |d| d.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.ended = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                if this.length.is_some_and(|length| this.received < length) {
                    let cut =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "request body cut short");
                    return Poll::Ready(Some(Err(cut)));
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                // Wake the connection only when demand starts: the body is polled on the connection's own task,
                // so waking it on every poll would spin while the client pauses its upload.
                if !this.demand.wanted.swap(true, Ordering::AcqRel) {
                    this.demand.connection.wake();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}

impl ClientBody {
    /// A body of `length` bytes (`None`: unknown, chunked), and the sender its connection feeds it through.
    pub(crate) fn channel(length: Option<u64>) -> (ClientBody, BodySender) {
        let (frames, receiver) = mpsc::unbounded_channel();
        let demand = Arc::new(Demand::default());
        let body = ClientBody {
            frames: receiver,
            demand: demand.clone(),
            length,
            received: 0,
            ended: false,
        };
        (body, BodySender { frames, demand })
    }
}

/// The connection's end of a [`ClientBody`]: it reads the socket only while the body wants more.
pub(crate) struct BodySender {
    frames: mpsc::UnboundedSender<io::Result<Frame<Bytes>>>,
    demand: Arc<Demand>,
}

impl BodySender {
    /// The connection's task, woken when the body starts wanting more.
    pub(crate) fn register(&self, waker: &Waker) {
        self.demand.connection.register(waker);
    }

    /// Whether the body has asked for more since the last frame was sent.
    pub(crate) fn wanted(&self) -> bool {
        self.demand.wanted.load(Ordering::Acquire)
    }

    /// Hands the body a frame (or its failure); the body asks again when it wants the next one.
    pub(crate) fn send(&self, frame: io::Result<Frame<Bytes>>) {
        self.demand.wanted.store(false, Ordering::Release);
        let _ = self.frames.send(frame);
    }
}

/// What the proxy tells the connection's timer: requests still in flight.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    in_flight: AtomicUsize,
    /// The connection task, woken when the last in-flight response ends so the idle timer starts even if hyper
    /// has no reason to poll the socket again (streams end on other tasks).
    waker: AtomicWaker,
}

impl ConnectionState {
    /// A request was handed to the proxy.
    pub(crate) fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Release);
    }

    /// A request's response is over (its body was dropped).
    pub(crate) fn end_request(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The connection's task, woken when the last request in flight ends.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }
}

/// Counts a request as in flight on its client connection until dropped (the connection's timers read it).
pub(crate) struct InFlight(Arc<ConnectionState>);

impl InFlight {
    pub(crate) fn begin(state: Arc<ConnectionState>) -> Self {
        state.begin_request();
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// Whether a body on a request with this method has no defined meaning (RFC 9110 §9.3: GET, HEAD, DELETE; TRACE
/// must not have one). Instances often ignore such a body, and a body an instance ignores becomes the start of the
/// next request on its connection (AWS's desync guardian calls it `UndefinedContentLengthSemantics`). elbe forwards
/// the body framed exactly, then closes the client's connection and the instance's after the response.
pub(crate) fn body_is_ignored_on(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::TRACE
    )
}
