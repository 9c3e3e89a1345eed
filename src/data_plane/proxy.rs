//! The request path: one HTTP request from a client, through elbe's layers, to an instance and back.
//!
//! The layers, outermost first, each a small tower `Service` that can be tested alone with `oneshot`:
//!
//! 1. [`TrackLayer`]: the request counts as in flight on its connection (the connection's idle and 408 timers
//!    read that) and is counted in the node's metrics when its response is known.
//! 2. [`CheckLayer`]: requests elbe must refuse (ambiguous framing, CONNECT, long methods and URIs) get ELB's
//!    400/405/414 and never reach an instance (ELB-SPEC.md §1.1).
//! 3. [`ForwardedLayer`]: the request is rewritten for the instance: hop-by-hop headers removed, X-Forwarded-*
//!    set (ELB-SPEC.md §1.2), `Host` supplied for HTTP/1.0 and HTTP/2, `Expect` dropped (elbe answered it).
//! 4. [`Forward`]: pick an instance (least outstanding requests), take a pooled connection, send, and turn every
//!    failure into ELB's response (503, 502, 504), retrying once on a fresh connection when a pooled one was
//!    closed under us and the request is safe to resend.
//!
//! Nothing here takes a lock: the routing snapshot is an `ArcSwap` load, counters are atomics, the pool is a
//! lock-free queue.
//!
//! Responses: elbe's own carry their headers in the response's map. An instance's response to an HTTP/1 client
//! carries its header lines as received, in the body ([`ResponseBody::take_raw_head`]), and the map holds only
//! what layers add; for an HTTP/2 client the instance's headers are in the map (hyper's HTTP/2 server needs one).
//! A layer that must read an instance's response headers (stickiness, one day) parses the raw head.

pub mod response_body;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam_queue::ArrayQueue;
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, COOKIE, EXPECT, HOST};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use hyper::ext::ReasonPhrase;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::data_plane::back_end::error::BackendError;
use crate::data_plane::back_end::http1::{Exchange, Outgoing, Resend};
use crate::data_plane::back_end::target::Target;
use crate::data_plane::body::ConnectionState;
use crate::data_plane::body::{InFlight, RequestBody};
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::headers::{self, ForwardedProto};
use crate::data_plane::passive::PassiveReporter;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::routing::balancer;
use crate::data_plane::routing::surge::Outstanding;
use crate::data_plane::routing::surge::SurgeQueue;
use crate::data_plane::snapshot::SharedNodeSnapshot;
use crate::observability::access_log::{AccessLog, Dispatched, PendingEntry, RequestFacts};
use crate::observability::metrics::ZoneMetrics;

/// Everything a listener's requests share, built once when the listener starts.
pub struct ListenerContext {
    /// What this node may route to (swapped by the control plane).
    pub routes: SharedNodeSnapshot,
    /// `X-Forwarded-Proto`: `http` or `https`.
    pub proto: ForwardedProto,
    /// `X-Forwarded-Port`: the listener's port.
    pub port: HeaderValue,
    /// `Host` for HTTP/1.0 requests without one: the node's address (ELB-SPEC.md §1.1).
    pub node_host: HeaderValue,
    pub max_uri_bytes: usize,
    pub metrics: Arc<ZoneMetrics>,
    /// Where connection failures are reported, when passive health checks are on (elbe's extension).
    pub passive: Option<PassiveReporter>,
    /// The load balancer's access log, when enabled.
    pub access_log: Option<ListenerLog>,
    /// The node's surge queue (used only when instances have a request limit).
    pub surge: SurgeQueue,
}

/// A listener's access log and the facts every line of it shares.
pub struct ListenerLog {
    pub log: AccessLog,
    pub load_balancer: Arc<str>,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub port: u16,
}

/// What the access log needs to know about one client connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientFacts {
    pub peer: SocketAddr,
    /// (cipher, protocol) negotiated on an HTTPS listener.
    pub tls: Option<(&'static str, &'static str)>,
}

/// The server a client connection is on, which decides what the stack tells it and how it hands responses over.
#[derive(Debug, Clone)]
pub enum ClientProtocol {
    /// elbe's HTTP/1 server ([`crate::data_plane::front_end::http1`]): it knows when a request is over itself, and writes an
    /// instance's response head as received ([`crate::data_plane::back_end::http1::RawHead`]).
    Http1,
    /// hyper's HTTP/2 server: the connection's idle timer counts requests in flight through this state, and
    /// responses carry their headers as a map.
    Http2(Arc<ConnectionState>),
}

/// Marks a response elbe made itself, so it is counted as `HTTPCode_ELB_*`, not `HTTPCode_Backend_*`, and written
/// as ELB writes it ([`ElbResponse::http1_bytes`]).
#[derive(Debug, Clone, Copy)]
pub struct ElbGenerated(pub ElbResponse);

/// Marks a request the HTTP/1 server refused before it could be made into a request (a head that does not parse,
/// is too large, or did not arrive in time): the stack answers it with ELB's response, counts it and logs it
/// (`"- - - "` for the request), exactly as it does the requests it refuses itself.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub ElbResponse);

/// ELB's own response (ELB-SPEC.md §9), whoever detected the condition: empty body, `Content-Length: 0`, ELB's
/// reason phrase (HTTP/1.x only; HTTP/2 has none), marked [`ElbGenerated`].
pub fn elb_answer(kind: ElbResponse) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = kind.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    let connection = if kind.closes_connection() {
        "close"
    } else {
        "keep-alive"
    };
    headers.insert(CONNECTION, HeaderValue::from_static(connection));
    let extensions = response.extensions_mut();
    extensions.insert(ReasonPhrase::from_static(kind.reason().as_bytes()));
    extensions.insert(ElbGenerated(kind));
    response
}

/// ELB's response to a client whose request failed at the instance (ELB-SPEC.md §9). A refused connection is ELB's
/// 503: the instance cannot take the request, exactly as when none is healthy.
fn answer_for(error: &BackendError) -> ElbResponse {
    match error {
        BackendError::Connect { .. } | BackendError::ConnectTimeout { .. } => {
            ElbResponse::NoInstance
        }
        BackendError::Closed(_) => ElbResponse::GatewayTimeout,
        BackendError::BadResponse(_) => ElbResponse::BadGateway,
        BackendError::ClientBody(_) => ElbResponse::BadRequest,
    }
}

/// The whole stack for one client connection.
pub fn stack(
    context: Arc<ListenerContext>,
    client: ClientFacts,
    protocol: ClientProtocol,
) -> Track<Check<Forwarded<Forward>>> {
    let peer = client.peer;
    let (connection, raw_responses) = match protocol {
        ClientProtocol::Http1 => (None, true),
        ClientProtocol::Http2(state) => (Some(state), false),
    };
    let forward = Forward {
        context: context.clone(),
        timers: Arc::new(ArrayQueue::new(1)),
        raw_responses,
    };
    let forwarded = ForwardedLayer {
        context: context.clone(),
        peer: peer.ip(),
    }
    .layer(forward);
    let check = CheckLayer {
        max_uri_bytes: context.max_uri_bytes,
    }
    .layer(forwarded);
    TrackLayer {
        context,
        connection,
        client,
    }
    .layer(check)
}

/// A response now (elbe's own) or later (the inner service's).
pub enum Respond<F> {
    /// Boxed: refusals are rare, and the future of every request should stay small.
    Now(Option<Box<Response<ResponseBody>>>),
    Later(F),
}

impl<F> Future for Respond<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Respond::Now(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(*response)),
                None => Poll::Pending,
            },
            Respond::Later(future) => Pin::new(future).poll(cx),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Track

/// Counts the request as in flight on its connection and in the node's metrics.
#[derive(Clone)]
pub struct TrackLayer {
    context: Arc<ListenerContext>,
    connection: Option<Arc<ConnectionState>>,
    client: ClientFacts,
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            context: self.context.clone(),
            connection: self.connection.clone(),
            client: self.client,
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    context: Arc<ListenerContext>,
    connection: Option<Arc<ConnectionState>>,
    client: ClientFacts,
}

impl<S, B> Service<Request<B>> for Track<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_flight = self.connection.clone().map(InFlight::begin);
        self.context.metrics.requests.inc();
        let refused = request.extensions().get::<Refused>().is_some();
        let log = self.context.access_log.as_ref().map(|l| {
            let line = (!refused).then(|| RequestFacts {
                method: request.method(),
                uri: request.uri(),
                version: request.version(),
                headers: request.headers(),
            });
            Box::new(PendingEntry::begin(
                &l.log,
                &l.load_balancer,
                self.client.peer,
                l.scheme,
                l.port,
                self.client.tls,
                line,
            ))
        });
        TrackFuture {
            inner: self.inner.call(request),
            in_flight,
            context: self.context.clone(),
            log,
        }
    }
}

pub struct TrackFuture<F> {
    inner: F,
    in_flight: Option<InFlight>,
    context: Arc<ListenerContext>,
    log: Option<Box<PendingEntry>>,
}

impl<F> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(Ok(response)) = Pin::new(&mut this.inner).poll(cx) else {
            return Poll::Pending;
        };
        let status = response.status().as_u16();
        let metrics = &this.context.metrics;
        let elb_generated = response.extensions().get::<ElbGenerated>().is_some();
        if elb_generated {
            metrics.elb_status(status);
        } else {
            metrics.backend_status(status);
        }
        let response = match this.log.take() {
            Some(mut entry) => {
                entry.respond(
                    status,
                    elb_generated,
                    response.extensions().get::<Dispatched>(),
                );
                response.map(|body| body.with_log(entry))
            }
            None => response,
        };
        let response = match this.in_flight.take() {
            Some(in_flight) => response.map(|body| body.with_in_flight(in_flight)),
            None => response,
        };
        Poll::Ready(Ok(response))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Check

/// Refuses requests that must not reach an instance, with ELB's status.
#[derive(Clone)]
pub struct CheckLayer {
    pub max_uri_bytes: usize,
}

impl<S> Layer<S> for CheckLayer {
    type Service = Check<S>;
    fn layer(&self, inner: S) -> Check<S> {
        Check {
            inner,
            max_uri_bytes: self.max_uri_bytes,
        }
    }
}

#[derive(Clone)]
pub struct Check<S> {
    inner: S,
    max_uri_bytes: usize,
}

impl<S, B> Service<Request<B>> for Check<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Respond<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(Refused(kind)) = request.extensions().get::<Refused>() {
            return Respond::Now(Some(Box::new(elb_answer(*kind))));
        }
        let checked = headers::check_request(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
            self.max_uri_bytes,
        );
        match checked {
            Ok(()) => Respond::Later(self.inner.call(request)),
            Err(rejection) => {
                tracing::debug!(%rejection, "request refused");
                let kind = match rejection {
                    headers::Rejection::BadRequest(_) => ElbResponse::BadRequest,
                    headers::Rejection::MethodNotAllowed => ElbResponse::MethodNotAllowed,
                    headers::Rejection::UriTooLong => ElbResponse::UriTooLong,
                };
                Respond::Now(Some(Box::new(elb_answer(kind))))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Forwarded

/// Rewrites the request for the instance (X-Forwarded-*, hop-by-hop headers, Host, Expect, origin-form target).
#[derive(Clone)]
pub struct ForwardedLayer {
    context: Arc<ListenerContext>,
    peer: IpAddr,
}

impl<S> Layer<S> for ForwardedLayer {
    type Service = Forwarded<S>;
    fn layer(&self, inner: S) -> Forwarded<S> {
        Forwarded {
            inner,
            context: self.context.clone(),
            peer: headers::peer_value(self.peer),
        }
    }
}

#[derive(Clone)]
pub struct Forwarded<S> {
    inner: S,
    context: Arc<ListenerContext>,
    /// The client's address as `X-Forwarded-For` text, made once per connection.
    peer: HeaderValue,
}

impl<S, B> Service<Request<B>> for Forwarded<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        rewrite_for_instance(&mut request, &self.peer, &self.context);
        self.inner.call(request)
    }
}

/// Turns a client's request into the HTTP/1.1 request an instance gets.
pub fn rewrite_for_instance<B>(
    request: &mut Request<B>,
    peer: &HeaderValue,
    context: &ListenerContext,
) {
    let version = request.version();
    let authority = request.uri().authority().cloned();
    let headers = request.headers_mut();
    headers::strip_hop_by_hop(headers);
    headers.remove(EXPECT);
    if !headers.contains_key(HOST) {
        match authority {
            // HTTP/2's :authority, or an absolute-form HTTP/1.1 target, becomes Host.
            Some(authority) => {
                if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                    headers.insert(HOST, value);
                }
            }
            None if version == Version::HTTP_10 || version == Version::HTTP_09 => {
                headers.insert(HOST, context.node_host.clone());
            }
            None => {}
        }
    }
    if version == Version::HTTP_2 {
        join_cookies(headers);
    }
    headers::set_forwarded_for(headers, peer, &context.proto, &context.port);
    // Instances get origin-form targets over HTTP/1.1, whatever the client spoke (ELB-SPEC.md §1.1).
    if request.uri().scheme().is_some() || request.uri().authority().is_some() {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
    }
    *request.version_mut() = Version::HTTP_11;
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 wants one, joined with "; " (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut cookies = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Forward

/// Sends the request to an instance and returns its response, or ELB's.
#[derive(Clone)]
pub struct Forward {
    context: Arc<ListenerContext>,
    /// The connection's request timer, between requests (see [`RequestTimer`]).
    timers: Arc<ArrayQueue<Pin<Box<Sleep>>>>,
    /// Instances' response heads are passed on as received (an HTTP/1 client's connection).
    raw_responses: bool,
}

impl<B: Into<RequestBody>> Service<Request<B>> for Forward {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let context = self.context.clone();
        // Serialized now: the future then carries a few words instead of the whole request.
        let mut request = Outgoing::new(request.map(Into::into));
        request.raw_response = self.raw_responses;
        let timer = RequestTimer::take(&self.timers);
        Box::pin(async move { Ok(forward(&context, request, timer).await) })
    }
}

/// The idle timeout of one request, on a timer the connection's requests share in turn.
///
/// A timer made per request is registered with tokio's timer wheel and removed from it again, both under the
/// wheel's lock, and that measured as several percent of a request's work. A timer that is only ever moved *later*
/// is updated with one atomic operation, no lock: so each connection keeps one, a request takes it (or makes one
/// when the connection has several requests in flight, as HTTP/2 may), moves its deadline on, and gives it back
/// when done. The wheel sees such a timer about once per idle timeout.
struct RequestTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    home: Arc<ArrayQueue<Pin<Box<Sleep>>>>,
}

impl RequestTimer {
    fn take(home: &Arc<ArrayQueue<Pin<Box<Sleep>>>>) -> Self {
        RequestTimer {
            sleep: home.pop(),
            home: home.clone(),
        }
    }

    /// Runs `future` until it completes (`Some`) or the deadline passes (`None`).
    async fn run<F: Future>(
        &mut self,
        deadline: tokio::time::Instant,
        future: F,
    ) -> Option<F::Output> {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            let _ = self.home.push(sleep);
        }
    }
}

async fn forward(
    context: &ListenerContext,
    mut request: Outgoing,
    mut timer: RequestTimer,
) -> Response<ResponseBody> {
    let (mut target, idle_timeout) = {
        let routes = context.routes.load();
        match balancer::pick_least_outstanding(&routes.candidates) {
            Some(target) => (target.clone(), routes.idle_timeout),
            None => return elb_answer(ElbResponse::NoInstance),
        }
    };
    if !context.surge.has_room(&target) {
        let deadline = tokio::time::Instant::now() + idle_timeout;
        match context
            .surge
            .wait_for_instance(&context.routes, &context.metrics, deadline)
            .await
        {
            Ok(free) => target = free,
            Err(kind) => return elb_answer(kind),
        }
    }
    let sent_at = tokio::time::Instant::now();
    // One idle timeout for the whole exchange, a retry on another instance included.
    let deadline = sent_at + idle_timeout;
    let mut retried = false;
    loop {
        let outstanding = Outstanding::begin(target.clone());
        let result = timer.run(deadline, send(&target, request)).await;
        let failed = match result {
            Some(Ok((response, exchange))) => {
                context
                    .metrics
                    .latency
                    .observe(sent_at.elapsed().as_secs_f64());
                let (mut parts, ()) = response.into_parts();
                if context.access_log.is_some() {
                    parts.extensions.insert(Dispatched {
                        backend: target.addr,
                        request_sent: sent_at,
                        headers_received: tokio::time::Instant::now(),
                    });
                }
                return Response::from_parts(parts, ResponseBody::backend(exchange, outstanding));
            }
            Some(Err(failed)) => failed,
            None => {
                tracing::debug!(instance = %target.instance_id, "instance did not answer within the idle timeout");
                return elb_answer(ElbResponse::GatewayTimeout);
            }
        };
        drop(outstanding);
        tracing::debug!(instance = %target.instance_id, error = %failed.error, "request failed");
        if failed.error.is_connection_error() {
            context.metrics.backend_connection_errors.inc();
        }
        let Some(passive) = &context.passive else {
            return elb_answer(answer_for(&failed.error));
        };
        if failed.error.is_instance_failure() {
            passive.report(&target);
        }
        // A request that never left elbe goes once to another instance (passive health checks only).
        let other = {
            let routes = context.routes.load();
            balancer::pick_least_outstanding_except(&routes.candidates, &target).cloned()
        };
        match (retried, failed.unsent, other) {
            (false, Some(unsent), Some(other)) => {
                retried = true;
                request = unsent;
                target = other;
            }
            _ => return elb_answer(answer_for(&failed.error)),
        }
    }
}

/// A dispatch that failed, with the request given back when none of it left elbe.
struct Failed {
    error: BackendError,
    unsent: Option<Outgoing>,
}

impl From<BackendError> for Failed {
    fn from(error: BackendError) -> Self {
        Failed {
            error,
            unsent: None,
        }
    }
}

/// Sends on a pooled connection if one is alive, else on a new one. A request that a dead pooled connection took
/// none of goes on the next connection; one lost after sending is replayed once on a fresh connection when it is
/// body-less and idempotent (DESIGN.md: the keep-alive race behind many ELB 504s).
async fn send(
    target: &Target,
    mut request: Outgoing,
) -> Result<(Response<()>, Box<Exchange>), Failed> {
    while let Some(conn) = target.pool.checkout(request.has_body()) {
        let mut exchange = Box::new(Exchange::new(conn, request));
        let error = match exchange.response_head().await {
            Ok(response) => return Ok((response, exchange)),
            Err(error) => error,
        };
        match exchange.resend(&error) {
            Resend::Anywhere(unsent) => request = unsent,
            Resend::Once(unsent) => {
                tracing::debug!(%error, "pooled connection lost a request; replaying it once");
                request = unsent;
                break;
            }
            Resend::Never => return Err(error.into()),
        }
    }
    let conn = match target.pool.connect().await {
        Ok(conn) => conn,
        Err(error) => {
            return Err(Failed {
                error,
                unsent: Some(request),
            })
        }
    };
    let mut exchange = Box::new(Exchange::new(conn, request));
    match exchange.response_head().await {
        Ok(response) => Ok((response, exchange)),
        Err(error) => {
            let unsent = match exchange.resend(&error) {
                Resend::Anywhere(unsent) => Some(unsent),
                Resend::Once(_) | Resend::Never => None,
            };
            Err(Failed { error, unsent })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observability::metrics::Metrics;
    use arc_swap::ArcSwap;
    use std::time::Duration;
    use tower::ServiceExt;

    fn context(metrics: &Metrics) -> Arc<ListenerContext> {
        Arc::new(ListenerContext {
            routes: Arc::new(ArcSwap::from_pointee(
                crate::data_plane::snapshot::NodeSnapshot {
                    candidates: Vec::new(),
                    idle_timeout: Duration::from_secs(60),
                },
            )),
            proto: ForwardedProto::https(),
            port: HeaderValue::from_static("443"),
            node_host: HeaderValue::from_static("127.0.0.11"),
            max_uri_bytes: 64,
            metrics: Arc::new(metrics.zone("web", "zone-a")),
            passive: None,
            access_log: None,
            surge: SurgeQueue::new(0, 1024),
        })
    }

    /// An instance stand-in that answers 200 with the request's headers copied into the response.
    fn mirror() -> impl Service<
        Request<()>,
        Response = Response<ResponseBody>,
        Error = Infallible,
        Future = std::future::Ready<Result<Response<ResponseBody>, Infallible>>,
    > + Clone {
        tower::service_fn(|request: Request<()>| {
            let mut response = Response::new(ResponseBody::empty());
            *response.headers_mut() = request.headers().clone();
            if let Ok(uri) = HeaderValue::from_str(&request.uri().to_string()) {
                response.headers_mut().insert("x-seen-uri", uri);
            }
            std::future::ready(Ok(response))
        })
    }

    #[tokio::test]
    async fn check_refuses_connect_and_long_uris_without_calling_the_instance() {
        let check = CheckLayer { max_uri_bytes: 64 }.layer(tower::service_fn(
            |_: Request<()>| -> std::future::Ready<Result<Response<ResponseBody>, Infallible>> {
                panic!("a refused request reached the instance")
            },
        ));
        let connect = Request::connect("example.test:443").body(()).unwrap();
        let response = check.clone().oneshot(connect).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["connection"], "close");
        let long = Request::get(format!("/{}", "a".repeat(100)))
            .body(())
            .unwrap();
        assert_eq!(check.oneshot(long).await.unwrap().status(), 414);
    }

    #[tokio::test]
    async fn forwarded_sets_elb_headers_and_origin_form() {
        let metrics = Metrics::new();
        let layer = ForwardedLayer {
            context: context(&metrics),
            peer: "198.51.100.22".parse().unwrap(),
        };
        let request = Request::get("http://app.example/a?b=c")
            .version(Version::HTTP_2)
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-proto", "http")
            .header("expect", "100-continue")
            .body(())
            .unwrap();
        let response = layer.layer(mirror()).oneshot(request).await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 198.51.100.22");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-port"], "443");
        assert_eq!(headers["host"], "app.example");
        assert_eq!(headers["x-seen-uri"], "/a?b=c");
        assert!(!headers.contains_key("expect"));
    }

    #[tokio::test]
    async fn track_counts_elb_and_backend_responses_apart() {
        let metrics = Metrics::new();
        let context = context(&metrics);
        let track = TrackLayer {
            context: context.clone(),
            connection: None,
            client: ClientFacts {
                peer: "127.0.0.1:1".parse().unwrap(),
                tls: None,
            },
        };
        let ok = track
            .layer(mirror())
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let elb = track
            .layer(tower::service_fn(|_: Request<()>| {
                std::future::ready(Ok::<_, Infallible>(elb_answer(ElbResponse::NoInstance)))
            }))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(elb.status(), 503);
        assert_eq!(context.metrics.requests.get(), 2);
        assert_eq!(context.metrics.backend[0].get(), 1);
        assert_eq!(context.metrics.elb_5xx.get(), 1);
        assert_eq!(context.metrics.backend[3].get(), 0);
    }

    #[test]
    fn http10_without_host_gets_the_node_address() {
        let metrics = Metrics::new();
        let context = context(&metrics);
        let mut request = Request::get("/")
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        let peer = headers::peer_value("203.0.113.7".parse().unwrap());
        rewrite_for_instance(&mut request, &peer, &context);
        assert_eq!(request.headers()["host"], "127.0.0.11");
        assert_eq!(request.version(), Version::HTTP_11);
    }
}
