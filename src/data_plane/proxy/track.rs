//! The Track layer, outermost: the request counts as in flight on its connection (the connection's idle and 408
//! timers read that), it is counted in the node's metrics when its response is known (`HTTPCode_ELB_*` for elbe's
//! own, `HTTPCode_Backend_*` for an instance's, ELB-SPEC §10), and its access-log entry starts here and is written
//! when the response body is dropped (ELB-SPEC §11).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::data_plane::body::{ConnectionState, InFlight};
use crate::data_plane::proxy::answer::{ElbGenerated, Refused};
use crate::data_plane::proxy::context::{ConnectionFacts, Facts, ListenerContext};
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::proxy::rules::RuleAnswer;
use crate::data_plane::tls::Negotiated;
use crate::observability::access_log::{Dispatched, PendingEntry, RequestFacts};

/// Counts the request as in flight on its connection and in the node's metrics.
#[derive(Clone)]
pub(crate) struct TrackLayer {
    /// An HTTP/2 connection's state, whose idle timer counts its requests in flight; `None` for HTTP/1.
    pub(super) connection: Option<Arc<ConnectionState>>,
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            connection: self.connection.clone(),
        }
    }
}

/// Keeps only an HTTP/2 connection's state: the listener and the client are the connection's ([`Facts`]).
#[derive(Clone)]
pub(crate) struct Track<S> {
    inner: S,
    connection: Option<Arc<ConnectionState>>,
}

impl<S: Facts> Facts for Track<S> {
    fn facts(&self) -> &ConnectionFacts {
        self.inner.facts()
    }
}

impl<S, B> Service<Request<B>> for Track<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible> + Facts,
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
        let ConnectionFacts {
            context, client, ..
        } = self.inner.facts();
        context.metrics.requests.inc();
        let refused = request.extensions().get::<Refused>().is_some();
        let log = context.access_log.as_ref().map(|l| {
            let line = (!refused).then(|| RequestFacts {
                method: request.method(),
                uri: request.uri(),
                version: request.version(),
                headers: request.headers(),
            });
            Box::new(PendingEntry::begin(
                &l.log,
                &l.load_balancer,
                client.peer(),
                l.scheme,
                l.port,
                client.tls.map(Negotiated::names),
                line,
            ))
        });
        let context = context.clone();
        TrackFuture {
            inner: self.inner.call(request),
            in_flight,
            context,
            log,
        }
    }
}

pub(crate) struct TrackFuture<F> {
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
        let mut elb_generated = response.extensions().get::<ElbGenerated>().is_some();
        // A listener rule's redirect or fixed response is the load balancer's own answer too (ALB counts it in
        // HTTPCode_ELB_* as well as in its own count), and is logged as one.
        if let Some(answer) = response.extensions().get::<RuleAnswer>() {
            match answer {
                RuleAnswer::Redirect => metrics.redirects.inc(),
                RuleAnswer::FixedResponse => metrics.fixed_responses.inc(),
            }
            elb_generated = true;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::elb_response::ElbResponse;
    use crate::data_plane::proxy::answer::elb_answer;
    use crate::data_plane::proxy::context::test_support::{context, inner, mirror};
    use crate::observability::metrics::Metrics;
    use tower::ServiceExt;

    #[tokio::test]
    async fn track_counts_elb_and_backend_responses_apart() {
        let metrics = Metrics::new();
        let context = context(&metrics);
        let track = TrackLayer { connection: None };
        let ok = track
            .layer(inner(context.clone(), mirror()))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let answers_503 = tower::service_fn(|_: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(elb_answer(ElbResponse::NoInstance)))
        });
        let elb = track
            .layer(inner(context.clone(), answers_503))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(elb.status(), 503);
        assert_eq!(context.metrics.requests.get(), 2);
        assert_eq!(context.metrics.backend[0].get(), 1);
        assert_eq!(context.metrics.elb_5xx.get(), 1);
        assert_eq!(context.metrics.backend[3].get(), 0);
    }
}
