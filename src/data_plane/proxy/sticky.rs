//! The Sticky layer: a listener's sticky-session policy (ELB-SPEC §6), between the request's rewriting and
//! Forward.
//!
//! On the way in, a request's `AWSELB` cookie is checked (its tag, [`sticky_cookie`]) and, if it names an instance
//! this node may route to now, Forward is told to send it there ([`StickTo`]). On the way out, the response gets a
//! new `AWSELB` when ELB would give one:
//!
//! | policy | cookie good, instance routable | no cookie | cookie tampered, or its instance not routable |
//! |---|---|---|---|
//! | LB cookie | nothing (ELB does not refresh it) | new cookie, `MAX-AGE` | new pick, new cookie |
//! | app cookie | only when the instance sets the app cookie | only when the instance sets the app cookie | new pick, and AWSELB moved to it for good |
//!
//! An app cookie's AWSELB lives as long as the app cookie (and takes its `Secure` and `HttpOnly`); a moved AWSELB
//! whose new instance does not set the app cookie is a session cookie. ELB's own answers (503...) carry no cookie.
//!
//! Trade-off: the instance that answered is reported by Forward ([`Picked`]) rather than chosen here, so a retry on
//! another instance (passive health checks) gets the cookie of the instance that really answered. With no policy
//! a request pays one snapshot load and a test.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::Guard;
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use crate::data_plane::back_end::target::Target;
use crate::data_plane::headers::sticky_cookie::{
    self, app_cookie, app_set_cookie, lb_set_cookie, AppCookie, Lifetime, AWSELB,
};
use crate::data_plane::proxy::context::ListenerContext;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::routing::balancer;
use crate::data_plane::snapshot::{NodeSnapshot, StickyPolicy};

/// A request extension for Forward: the listener is sticky, and the request goes to this target if it is `Some`
/// (the instance its cookie names), else to the usual pick.
#[derive(Debug, Clone)]
pub(crate) struct StickTo(pub Option<Arc<Target>>);

/// A response extension from Forward, on requests that carried [`StickTo`]: the instance that answered.
#[derive(Debug, Clone)]
pub(crate) struct Picked(pub Arc<str>);

/// Applies the listener's stickiness policy, if it has one.
#[derive(Clone)]
pub(crate) struct StickyLayer {
    pub(super) context: Arc<ListenerContext>,
}

impl<S> Layer<S> for StickyLayer {
    type Service = Sticky<S>;
    fn layer(&self, inner: S) -> Sticky<S> {
        Sticky {
            inner,
            context: self.context.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Sticky<S> {
    inner: S,
    context: Arc<ListenerContext>,
}

impl<S, B> Service<Request<B>> for Sticky<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = StickyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let routes = self.context.routes.load();
        if routes.stickiness.is_none() {
            drop(routes);
            return StickyFuture {
                inner: self.inner.call(request),
                plan: None,
            };
        }
        let snapshot = Guard::into_inner(routes);
        let plan = Plan::for_request(snapshot, request.headers());
        request.extensions_mut().insert(StickTo(plan.stuck.clone()));
        StickyFuture {
            inner: self.inner.call(request),
            plan: Some(Box::new(plan)),
        }
    }
}

/// What the request's cookie said, kept for its response.
pub(crate) struct Plan {
    snapshot: Arc<NodeSnapshot>,
    /// The target the cookie's instance has here, when the cookie was good and the instance routable.
    pub(crate) stuck: Option<Arc<Target>>,
    /// The request carried an AWSELB cookie (good or not).
    had_cookie: bool,
}

impl Plan {
    /// Reads the request's AWSELB cookie against the listener's policy in `snapshot`.
    pub(crate) fn for_request(snapshot: Arc<NodeSnapshot>, headers: &HeaderMap) -> Self {
        let mut had_cookie = false;
        let mut stuck = None;
        if let Some(stickiness) = &snapshot.stickiness {
            for value in sticky_cookie::request_cookies(headers, AWSELB) {
                had_cookie = true;
                let Some(id) = stickiness.key.decode(value) else {
                    continue;
                };
                let targets = stickiness.targets(&snapshot.candidates, &id);
                stuck = balancer::pick_least_outstanding(targets).cloned();
                break;
            }
        }
        Plan {
            snapshot,
            stuck,
            had_cookie,
        }
    }

    /// Adds ELB's cookie to `response` where the policy gives one.
    fn respond(&self, response: &mut Response<ResponseBody>) {
        let Some(stickiness) = &self.snapshot.stickiness else {
            return;
        };
        let Some(Picked(picked)) = response.extensions().get::<Picked>().cloned() else {
            return;
        };
        let moved = self
            .stuck
            .as_ref()
            .is_none_or(|stuck| *stuck.instance_id != *picked);
        let set_cookie = match &stickiness.policy {
            StickyPolicy::LbCookie { max_age } if moved => {
                lb_set_cookie(&stickiness.key.encode(&picked), *max_age)
            }
            StickyPolicy::LbCookie { .. } => None,
            StickyPolicy::AppCookie { cookie_name } => {
                match app_cookie_set_by(response, cookie_name) {
                    Some(app) => app_set_cookie(&stickiness.key.encode(&picked), &app),
                    None if moved && self.had_cookie => {
                        let session = AppCookie {
                            lifetime: Lifetime::Session,
                            secure: false,
                            http_only: false,
                        };
                        app_set_cookie(&stickiness.key.encode(&picked), &session)
                    }
                    None => None,
                }
            }
        };
        if let Some(set_cookie) = set_cookie {
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie);
            headers.append(CACHE_CONTROL, sticky_cookie::NO_CACHE_SET_COOKIE);
        }
    }
}

/// The last `Set-Cookie` of the instance's response that sets the application cookie `name`: from its raw head
/// for an HTTP/1 client, from the header map for an HTTP/2 one.
fn app_cookie_set_by(response: &Response<ResponseBody>, name: &str) -> Option<AppCookie> {
    match response.body().raw_head() {
        Some(raw) => raw
            .values("set-cookie")
            .filter_map(|value| app_cookie(value, name))
            .last(),
        None => response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .rev()
            .find_map(|value| app_cookie(value.as_bytes(), name)),
    }
}

pub(crate) struct StickyFuture<F> {
    inner: F,
    /// Boxed: only sticky listeners' requests carry one, and every request's future should stay small.
    plan: Option<Box<Plan>>,
}

impl<F> Future for StickyFuture<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Infallible>> + Unpin,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(Ok(mut response)) = Pin::new(&mut this.inner).poll(cx) else {
            return Poll::Pending;
        };
        if let Some(plan) = this.plan.take() {
            plan.respond(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}
