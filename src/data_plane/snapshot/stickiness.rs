//! A listener's sticky-session policy as the request path reads it (ELB-SPEC §6): the policy, the key its
//! AWSELB cookies are made with, and where each instance's targets sit among the candidates.
//!
//! Rule: a cookie names an instance; the instance is routable only while it is among this snapshot's candidates
//! (InService, in a zone this node may use). Trade-off: the index by instance id is built with the snapshot, at
//! control-plane rates, so a request finds its instance with one hash lookup rather than a scan of every candidate.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::config::PolicyKind;
use crate::data_plane::back_end::target::Target;
use crate::data_plane::headers::sticky_cookie::CookieKey;

/// Which cookie the stickiness follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StickyPolicy {
    /// `LBCookieStickinessPolicyType`: elbe's own cookie, `MAX-AGE` seconds or a session cookie.
    LbCookie { max_age: Option<u64> },
    /// `AppCookieStickinessPolicyType`: AWSELB follows the application's cookie of this name.
    AppCookie { cookie_name: Box<str> },
}

impl StickyPolicy {
    /// `None` for a policy that is not stickiness (Proxy Protocol, which validation keeps off listeners).
    pub(crate) fn new(kind: &PolicyKind) -> Option<Self> {
        match kind {
            PolicyKind::LbCookie {
                cookie_expiration_period,
            } => Some(StickyPolicy::LbCookie {
                max_age: cookie_expiration_period.map(|d| d.as_secs()),
            }),
            PolicyKind::AppCookie { cookie_name } => Some(StickyPolicy::AppCookie {
                cookie_name: cookie_name.as_str().into(),
            }),
            PolicyKind::ProxyProtocol => None,
        }
    }
}

/// One listener's stickiness in one snapshot.
#[derive(Debug)]
pub(crate) struct Stickiness {
    pub(crate) policy: StickyPolicy,
    pub(crate) key: CookieKey,
    /// Instance id -> the range of its targets in the snapshot's candidates (an instance resolved to several
    /// addresses has several, next to each other).
    instances: HashMap<Arc<str>, Range<usize>>,
}

impl Stickiness {
    pub(crate) fn new(policy: StickyPolicy, key: CookieKey, candidates: &[Arc<Target>]) -> Self {
        let mut instances: HashMap<Arc<str>, Range<usize>> = HashMap::new();
        for (i, target) in candidates.iter().enumerate() {
            instances
                .entry(target.instance_id.clone())
                .and_modify(|range| range.end = range.end.max(i + 1))
                .or_insert(i..i + 1);
        }
        Stickiness {
            policy,
            key,
            instances,
        }
    }

    /// The candidates that are `instance_id`'s targets; empty when it is not routable here now.
    pub(crate) fn targets<'a>(
        &self,
        candidates: &'a [Arc<Target>],
        instance_id: &str,
    ) -> &'a [Arc<Target>] {
        self.instances
            .get(instance_id)
            .and_then(|range| candidates.get(range.clone()))
            .unwrap_or_default()
    }
}
