//! Sticky sessions, a phase of Forward: a listener's sticky-session policy (ELB-SPEC §6).
//!
//! On the way in, a request's `AWSELB` cookie is checked (its tag, [`sticky_cookie`]) and, if it names an instance
//! this node may route to now, Forward sends it there ([`Plan::stuck`]). On the way out, the response gets a
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
//! a request pays a test on the snapshot Forward loads anyway (a layer of its own cost every request a move of the
//! request and of its future).

use std::sync::Arc;

use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, Response};

use crate::data_plane::back_end::target::Target;
use crate::data_plane::headers::sticky_cookie::{
    self, app_cookie, app_set_cookie, lb_set_cookie, AppCookie, Lifetime, AWSELB,
};
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::routing::balancer;
use crate::data_plane::snapshot::{NodeSnapshot, StickyPolicy};

/// A response extension from Forward, on a sticky listener's requests: the instance that answered.
#[derive(Debug, Clone)]
pub(crate) struct Picked(pub Arc<str>);

/// What the request's cookie said, kept for its response.
pub(crate) struct Plan {
    snapshot: Arc<NodeSnapshot>,
    /// The target the cookie's instance has here, when the cookie was good and the instance routable.
    pub(crate) stuck: Option<Arc<Target>>,
    /// The request carried an AWSELB cookie (good or not).
    had_cookie: bool,
}

impl Plan {
    /// The snapshot the cookie was read against (Forward picks from it).
    pub(crate) fn snapshot(&self) -> &NodeSnapshot {
        &self.snapshot
    }

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
    pub(crate) fn respond(&self, response: &mut Response<ResponseBody>) {
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
