//! The Check layer: requests elbe must refuse (ambiguous framing, CONNECT, long methods and URIs, and heads its
//! HTTP/1 server could not make into requests) get ELB's 400/405/408/414/431 and never reach an instance
//! (ELB-SPEC.md §1.1, §9). The one CONNECT let through is an HTTP/2 client's WebSocket (RFC 8441 §4, `:protocol =
//! websocket`), checked as the `GET` it becomes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower::{Layer, Service};

use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::headers::{self, websocket};
use crate::data_plane::proxy::answer::{elb_answer, Refused};
use crate::data_plane::proxy::context::{ConnectionFacts, Facts};
use crate::data_plane::proxy::response_body::ResponseBody;

/// Refuses requests that must not reach an instance, with ELB's status.
#[derive(Clone)]
pub(crate) struct CheckLayer;

impl<S> Layer<S> for CheckLayer {
    type Service = Check<S>;
    fn layer(&self, inner: S) -> Check<S> {
        Check { inner }
    }
}

/// Keeps nothing of its own: the URI limit is the listener's ([`Facts`]).
#[derive(Clone)]
pub(crate) struct Check<S> {
    inner: S,
}

impl<S: Facts> Facts for Check<S> {
    fn facts(&self) -> &ConnectionFacts {
        self.inner.facts()
    }
}

impl<S, B> Service<Request<B>> for Check<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible> + Facts,
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
        // RFC 8441's WebSocket CONNECT is checked as the GET the instance gets; any other CONNECT is refused.
        let method = if websocket::is_extended_websocket(&request) {
            &Method::GET
        } else {
            request.method()
        };
        let checked = headers::check_request(
            method,
            request.uri(),
            request.version(),
            request.headers(),
            self.inner.facts().context.max_uri_bytes,
        );
        match checked {
            Ok(()) => Respond::Later(self.inner.call(request)),
            Err(rejection) => {
                tracing::debug!(%rejection, "request refused");
                let kind = match rejection {
                    headers::Rejection::BadRequest(_) => ElbResponse::BadRequest,
                    headers::Rejection::MethodNotAllowed => ElbResponse::MethodNotAllowed,
                    headers::Rejection::UriTooLong => ElbResponse::UriTooLong,
                    headers::Rejection::ExpectationFailed => ElbResponse::ExpectationFailed,
                };
                Respond::Now(Some(Box::new(elb_answer(kind))))
            }
        }
    }
}

/// A response now (elbe's own) or later (the inner service's).
pub(crate) enum Respond<F> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::proxy::context::test_support::{context, inner};
    use crate::observability::metrics::Metrics;
    use tower::ServiceExt;

    /// The stand-in listener's URI limit is 64 bytes.
    #[tokio::test]
    async fn check_refuses_connect_and_long_uris_without_calling_the_instance() {
        let metrics = Metrics::new();
        let instance = tower::service_fn(
            |_: Request<()>| -> std::future::Ready<Result<Response<ResponseBody>, Infallible>> {
                panic!("a refused request reached the instance")
            },
        );
        let check = CheckLayer.layer(inner(context(&metrics), instance));
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
    async fn check_lets_rfc_8441_websocket_connects_through_and_refuses_other_protocols() {
        let metrics = Metrics::new();
        let instance = tower::service_fn(|_: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(Response::new(ResponseBody::empty())))
        });
        let check = CheckLayer.layer(inner(context(&metrics), instance));
        let connect = |protocol| {
            let mut request = Request::connect("https://app.example/chat")
                .version(http::Version::HTTP_2)
                .body(())
                .unwrap();
            request
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static(protocol));
            request
        };
        let response = check.clone().oneshot(connect("websocket")).await.unwrap();
        assert_eq!(response.status(), 200);
        let response = check.oneshot(connect("connect-udp")).await.unwrap();
        assert_eq!(response.status(), 400);
    }
}
