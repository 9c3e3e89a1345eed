//! The response body sent to the client, which carries the request's bookkeeping.
//!
//! Bodies stream frame by frame. When the response ends cleanly the backend connection goes back to the pool; when
//! the body is dropped (finished or not) the instance's outstanding-request count and the client connection's
//! in-flight count go down, and the access-log line is written. That is the one place a request is over.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::data_plane::back_end::http1::InstanceStream;
use crate::data_plane::back_end::http1::{Exchange, RawHead};
use crate::data_plane::body::InFlight;
use crate::data_plane::routing::surge::Outstanding;
use crate::observability::access_log::PendingEntry;

/// The response body sent to the client.
pub(crate) struct ResponseBody {
    kind: Kind,
    in_flight: Option<InFlight>,
    /// The request's access-log entry, written when this body is dropped (the request is over).
    log: Option<Box<PendingEntry>>,
    /// Body bytes handed to the client so far (the access log's `sent_bytes`).
    sent: u64,
}

enum Kind {
    Empty,
    /// A body elbe made whole (a listener rule's fixed response), sent as one frame.
    Full(Option<Bytes>),
    Backend {
        /// The exchange with the instance; taken when the response ends (its connection goes back to the pool).
        /// Boxed: a response is moved several times on its way to the client (tower, hyper), and copying the
        /// exchange each time measured as 10 % of elbe's user-space time per request.
        exchange: Option<Box<Exchange>>,
        outstanding: Outstanding,
    },
    /// Frames a test hands over one by one, ending when its sender is dropped: a streaming body without an
    /// instance's socket, so the front end's timers can be tested on tokio's paused clock.
    #[cfg(test)]
    Scripted(tokio::sync::mpsc::Receiver<Bytes>),
}

impl ResponseBody {
    /// An empty body (ELB's own responses).
    pub(crate) fn empty() -> Self {
        ResponseBody {
            kind: Kind::Empty,
            in_flight: None,
            log: None,
            sent: 0,
        }
    }

    /// A body elbe made whole (a listener rule's fixed response).
    pub(crate) fn full(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            in_flight: None,
            log: None,
            sent: 0,
        }
    }

    /// An instance's response body. When it ends cleanly, the connection goes back to the instance's pool; the
    /// request stays outstanding on its instance until the body is dropped.
    pub(crate) fn backend(exchange: Box<Exchange>, outstanding: Outstanding) -> Self {
        let mut body = ResponseBody {
            kind: Kind::Backend {
                exchange: Some(exchange),
                outstanding,
            },
            in_flight: None,
            log: None,
            sent: 0,
        };
        // A body that is already complete (Content-Length: 0, 204, HEAD) may never be polled.
        if body.is_end_stream() {
            body.release_connection();
        }
        body
    }

    /// A body whose frames are what the test sends on `frames`, of unknown length (chunked to an HTTP/1.1
    /// client); it ends when the sender is dropped.
    #[cfg(test)]
    pub(crate) fn scripted(frames: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Scripted(frames),
            in_flight: None,
            log: None,
            sent: 0,
        }
    }

    /// The instance's response head as received, for an HTTP/1 client (taken once).
    pub(crate) fn take_raw_head(&mut self) -> Option<RawHead> {
        match &mut self.kind {
            Kind::Backend {
                exchange: Some(exchange),
                ..
            } => exchange.take_raw_head(),
            _ => None,
        }
    }

    /// After the instance's `101 Switching Protocols`: its socket and the bytes it already sent, for the tunnel
    /// (taken once). The body stays the request's bookkeeping until the tunnel ends.
    pub(crate) fn take_switched(&mut self) -> Option<(InstanceStream, Bytes)> {
        match &mut self.kind {
            Kind::Backend { exchange, .. }
                if exchange.as_deref().is_some_and(Exchange::is_switched) =>
            {
                exchange
                    .take()
                    .and_then(|exchange| exchange.into_switched())
            }
            _ => None,
        }
    }

    /// The instance's response head as received, for an HTTP/1 client, left in place.
    pub(crate) fn raw_head(&self) -> Option<&RawHead> {
        match &self.kind {
            Kind::Backend {
                exchange: Some(exchange),
                ..
            } => exchange.raw_head(),
            _ => None,
        }
    }

    /// Bytes a tunnel passed on to the client count as the response's (the access log's `sent_bytes`).
    pub(crate) fn count_sent(&mut self, bytes: u64) {
        self.sent += bytes;
    }

    /// Logs the request's access-log entry when this body is dropped.
    pub(crate) fn with_log(mut self, entry: Box<PendingEntry>) -> Self {
        self.log = Some(entry);
        self
    }

    /// The request counts as in flight on its client connection until this body is dropped.
    pub(crate) fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// The response is over: a connection that ended its exchange cleanly goes back to the pool, any other closes.
    fn release_connection(&mut self) {
        if let Kind::Backend {
            exchange,
            outstanding,
        } = &mut self.kind
        {
            // A connection the instance switched to WebSocket is the tunnel's, taken by the client connection.
            if exchange.as_deref().is_some_and(Exchange::is_switched) {
                return;
            }
            if let Some(conn) = exchange
                .take()
                .and_then(|exchange| exchange.into_reusable())
            {
                outstanding.target().checkin(conn);
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Empty | Kind::Backend { exchange: None, .. } => return Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|data| Ok(Frame::data(data)))),
            Kind::Backend {
                exchange: Some(exchange),
                ..
            } => exchange.poll_body(cx),
            #[cfg(test)]
            Kind::Scripted(frames) => frames
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(Frame::data(data)))),
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            this.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        match &polled {
            Poll::Ready(None) => this.release_connection(),
            Poll::Ready(Some(Ok(_))) if this.is_end_stream() => this.release_connection(),
            // An error on the backend body: the connection is not reusable; dropping the exchange closes it.
            Poll::Ready(Some(Err(_))) => {
                if let Kind::Backend { exchange, .. } = &mut this.kind {
                    exchange.take();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Backend { exchange, .. } => {
                exchange.as_deref().is_none_or(Exchange::is_end_stream)
            }
            #[cfg(test)]
            Kind::Scripted(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Backend { exchange, .. } => exchange
                .as_deref()
                .map_or(SizeHint::with_exact(0), Exchange::size_hint),
            #[cfg(test)]
            Kind::Scripted(_) => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(entry) = self.log.take() {
            entry.finish(self.sent);
        }
    }
}
