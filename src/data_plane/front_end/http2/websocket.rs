//! WebSockets for HTTP/2 clients (RFC 8441, elbe's departure from ELB: README "WebSockets"). A `CONNECT` with
//! `:protocol = websocket` goes to the instance as the HTTP/1.1 handshake (the Forwarded layer makes it a `GET`
//! with a fresh key, the back end checks the instance's `101` and its `Sec-WebSocket-Accept`); this layer, around
//! the whole stack, answers the client `200` (RFC 8441 §5) and tunnels the HTTP/2 stream to the instance's
//! connection with the same [`Tunnel`] as HTTP/1 clients: ELB's idle timeout (ELB-SPEC §5), half-closes as
//! END_STREAM, one access-log line with status 101, written when the tunnel ends.
//!
//! The tunnel runs on its own task, reading and writing the client's stream through a [`ClientTunnel`]: an
//! in-memory pipe whose other end the connection ([`super::server`]) turns into the stream's DATA frames, within
//! the stream's windows. The request's bookkeeping (its log line, its in-flight count on the connection, which
//! keeps the idle rule of [`super::ClientIo`] off the connection while the tunnel times itself) moves to the task
//! and ends with the tunnel.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_utils::atomic::AtomicCell;
use http::header::{HeaderName, HeaderValue, CONNECTION, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use tokio::io::DuplexStream;
use tower::Service;

use crate::data_plane::back_end::http1::{InstanceStream, RawHead};
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::headers::websocket::{is_extended_websocket, SEC_WEBSOCKET_ACCEPT};
use crate::data_plane::proxy::answer::elb_answer;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::tunnel::Tunnel;
use crate::observability::metrics::ZoneMetrics;

/// The tunnel's end of an extended CONNECT stream, put in the request's extensions by the connection and taken
/// once by the tunnel (`Clone` as extensions must be; the slot is lock-free).
#[derive(Clone)]
pub(crate) struct ClientTunnel(Arc<AtomicCell<Option<Box<DuplexStream>>>>);

impl ClientTunnel {
    pub(crate) fn new(end: DuplexStream) -> Self {
        ClientTunnel(Arc::new(AtomicCell::new(Some(Box::new(end)))))
    }

    fn take(&self) -> Option<DuplexStream> {
        self.0.take().map(|end| *end)
    }
}

/// The proxy stack of an HTTP/2 connection, with RFC 8441's WebSockets turned into tunnels.
#[derive(Clone)]
pub(crate) struct WebSockets<S> {
    inner: S,
    idle_timeout: Duration,
    metrics: Arc<ZoneMetrics>,
}

impl<S> WebSockets<S> {
    /// `idle_timeout` closes a silent tunnel; `metrics` count the upgrades.
    pub(crate) fn new(inner: S, idle_timeout: Duration, metrics: Arc<ZoneMetrics>) -> Self {
        WebSockets {
            inner,
            idle_timeout,
            metrics,
        }
    }
}

impl<S, B> Service<Request<B>> for WebSockets<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Upgrading<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let client = request.extensions_mut().remove::<ClientTunnel>();
        let upgrade = client
            .filter(|_| is_extended_websocket(&request))
            .map(|client| {
                Box::new(Upgrade {
                    client,
                    idle_timeout: self.idle_timeout,
                    metrics: self.metrics.clone(),
                })
            });
        Upgrading {
            inner: self.inner.call(request),
            upgrade,
        }
    }
}

/// The stack's response; for a WebSocket, made the client's `200` and its tunnel started.
pub(crate) struct Upgrading<F> {
    inner: F,
    /// Boxed: most requests are not WebSockets, and every request's future should stay small.
    upgrade: Option<Box<Upgrade>>,
}

impl<F> Future for Upgrading<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = ready!(Pin::new(&mut this.inner).poll(cx))?;
        Poll::Ready(Ok(match this.upgrade.take() {
            Some(upgrade) => upgrade.answer(response),
            None => response,
        }))
    }
}

/// A WebSocket request's client stream, to be had once its response is sent.
struct Upgrade {
    client: ClientTunnel,
    idle_timeout: Duration,
    metrics: Arc<ZoneMetrics>,
}

impl Upgrade {
    /// The client's answer to the instance's: its `101` becomes `200` with the instance's subprotocol and
    /// extensions (RFC 8441 §5) and starts the tunnel. A refusal (4xx, 5xx, ELB's own) goes to the client as it
    /// is; a 2xx that is not a switch would open a tunnel to nothing, so it is ELB's 502.
    fn answer(self, response: Response<ResponseBody>) -> Response<ResponseBody> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            if response.status().is_success() {
                tracing::debug!(status = %response.status(), "instance did not switch to WebSocket");
                return elb_answer(ElbResponse::BadGateway);
            }
            return response;
        }
        let (mut parts, mut body) = response.into_parts();
        // The instance's lines (its subprotocol, its extensions) go to the client in the map: the body that
        // carried them is the tunnel's now.
        if let Some(raw) = body.raw_head() {
            append_lines(&mut parts.headers, raw);
        }
        let Some((backend, from_backend)) = body.take_switched() else {
            return elb_answer(ElbResponse::BadGateway);
        };
        parts.status = StatusCode::OK;
        // The HTTP/1.1 handshake's own lines; HTTP/2 has no Connection or Upgrade, and the accept was elbe's.
        for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_ACCEPT] {
            parts.headers.remove(name);
        }
        self.metrics.websocket_upgrades.inc();
        tokio::spawn(self.tunnel(backend, from_backend, body));
        Response::from_parts(parts, ResponseBody::empty())
    }

    /// Bytes both ways between the client's stream and the instance until both end or the tunnel idles; then the
    /// request is over (`body` dropped: its log line is written).
    async fn tunnel(self, backend: InstanceStream, from_backend: Bytes, mut body: ResponseBody) {
        let Some(mut client) = self.client.take() else {
            tracing::debug!("HTTP/2 WebSocket stream ended before the tunnel");
            return;
        };
        // The client's bytes are counted by its connection's socket (`ClientIo`), DATA frames and all.
        let mut tunnel = Tunnel::uncounted(backend, Bytes::new(), from_backend, self.idle_timeout);
        let ended = std::future::poll_fn(|cx| tunnel.poll(cx, &mut client)).await;
        let sent = tunnel.sent();
        body.count_sent(sent);
        match ended {
            Ok(end) => tracing::debug!(?end, sent, "HTTP/2 WebSocket tunnel ended"),
            Err(error) => tracing::debug!(%error, sent, "HTTP/2 WebSocket tunnel failed"),
        }
    }
}

/// An instance's header lines, as fields of `headers` (a line that is not a valid field is left out).
fn append_lines(headers: &mut HeaderMap, raw: &RawHead) {
    for (name, value) in raw.fields() {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
}
