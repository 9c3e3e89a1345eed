//! The Forwarded layer: the request is rewritten for the instance (ELB-SPEC.md §1.1, §1.2): hop-by-hop headers
//! removed, X-Forwarded-For appended and X-Forwarded-Proto/-Port replaced, `Host` supplied for HTTP/1.0 (the
//! node's address) and HTTP/2 (`:authority`), `Expect` dropped (elbe answered it), HTTP/2's split `Cookie` lines
//! joined, and the target made origin-form HTTP/1.1. An HTTP/2 WebSocket (RFC 8441 §4's extended CONNECT) becomes
//! the HTTP/1.1 handshake, a `GET` with `Upgrade: websocket` and a fresh `Sec-WebSocket-Key`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::header::{HeaderValue, CONNECTION, COOKIE, EXPECT, HOST, UPGRADE};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use tower::{Layer, Service};

use crate::data_plane::headers::{self, websocket};
use crate::data_plane::proxy::context::{ConnectionFacts, Facts, ListenerContext};
use crate::data_plane::proxy::response_body::ResponseBody;

/// Rewrites the request for the instance (X-Forwarded-*, hop-by-hop headers, Host, Expect, origin-form target).
#[derive(Clone)]
pub(crate) struct ForwardedLayer;

impl<S> Layer<S> for ForwardedLayer {
    type Service = Forwarded<S>;
    fn layer(&self, inner: S) -> Forwarded<S> {
        Forwarded { inner }
    }
}

/// Keeps nothing of its own: the client's address and the listener's are the connection's ([`Facts`]).
#[derive(Clone)]
pub(crate) struct Forwarded<S> {
    inner: S,
}

impl<S: Facts> Facts for Forwarded<S> {
    fn facts(&self) -> &ConnectionFacts {
        self.inner.facts()
    }
}

impl<S, B> Service<Request<B>> for Forwarded<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible> + Facts,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let facts = self.inner.facts();
        // Not kept per connection (40 bytes of every one, for an address its stack has): the worker caches it.
        let peer = headers::peer_value(facts.client.ip());
        rewrite_for_instance(&mut request, &peer, &facts.context);
        self.inner.call(request)
    }
}

/// Turns a client's request into the HTTP/1.1 request an instance gets.
pub(crate) fn rewrite_for_instance<B>(
    request: &mut Request<B>,
    peer: &HeaderValue,
    context: &ListenerContext,
) {
    let version = request.version();
    let authority = request.uri().authority().cloned();
    // RFC 8441 §4: an HTTP/2 client's WebSocket is a CONNECT with `:protocol = websocket`; the instance gets the
    // HTTP/1.1 handshake (RFC 6455 §4.1), a GET, with a key elbe makes (the response check holds it to it).
    let extended = websocket::is_extended_websocket(request);
    if extended {
        *request.method_mut() = http::Method::GET;
    }
    let websocket = extended
        || (version == Version::HTTP_11
            && request.method() == http::Method::GET
            && headers::asks_for_websocket(request.headers()));
    let headers = request.headers_mut();
    headers::strip_hop_by_hop(headers);
    if websocket {
        // The one upgrade elbe passes on (elbe's departure from ELB, DESIGN.md "WebSockets"): the instance's 101
        // turns the connection into a tunnel. Any other Upgrade (h2c included) was just stripped.
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if extended {
        match websocket::fresh_key() {
            Some(key) => {
                headers.insert(websocket::SEC_WEBSOCKET_KEY, key);
            }
            None => tracing::warn!("no random bytes for a Sec-WebSocket-Key"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::proxy::context::test_support::{context, inner, mirror};
    use crate::data_plane::proxy::context::ClientFacts;
    use crate::observability::metrics::Metrics;
    use tower::ServiceExt;

    #[tokio::test]
    async fn forwarded_sets_elb_headers_and_origin_form() {
        let metrics = Metrics::new();
        let mut instance = inner(context(&metrics), mirror());
        instance.facts.client = ClientFacts::new("198.51.100.22:4000".parse().unwrap(), None);
        let request = Request::get("http://app.example/a?b=c")
            .version(Version::HTTP_2)
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-proto", "http")
            .header("expect", "100-continue")
            .body(())
            .unwrap();
        let response = ForwardedLayer
            .layer(instance)
            .oneshot(request)
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 198.51.100.22");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-port"], "443");
        assert_eq!(headers["host"], "app.example");
        assert_eq!(headers["x-seen-uri"], "/a?b=c");
        assert!(!headers.contains_key("expect"));
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
