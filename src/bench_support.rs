//! Not part of elbe's API: what the criterion benchmarks in `benches/` time. The request path's functions are
//! private to the crate; these wrappers call them unchanged, so the benchmarks measure the real code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use crate::data_plane::back_end::pool::Pool;
use crate::data_plane::back_end::target::Target;
use crate::data_plane::headers::{self, ForwardedProto};
use crate::data_plane::proxy::forwarded::rewrite_for_instance;
use crate::data_plane::proxy::ListenerContext;
use crate::data_plane::routing::balancer::pick_least_outstanding;
use crate::data_plane::routing::surge::SurgeQueue;
use crate::data_plane::snapshot::NodeSnapshot;
use crate::observability::metrics::Metrics;

/// One node listener's request path without sockets: its snapshot of `instances` instances, its metrics, and the
/// X-Forwarded-For value of one client.
pub struct RequestPath {
    context: ListenerContext,
    peer: HeaderValue,
}

impl RequestPath {
    pub fn new(instances: usize) -> Self {
        let candidates = (0..instances)
            .map(|i| {
                let addr =
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21)), 8000 + i as u16);
                let pool = Pool::new(addr, 16, Duration::from_secs(60), Duration::from_secs(5));
                Arc::new(Target::new(
                    format!("i-{i}").into(),
                    "zone-a".into(),
                    addr,
                    pool,
                ))
            })
            .collect();
        let metrics = Metrics::new();
        let context = ListenerContext {
            routes: Arc::new(ArcSwap::from_pointee(NodeSnapshot {
                candidates,
                idle_timeout: Duration::from_secs(60),
                ..NodeSnapshot::default()
            })),
            proto: ForwardedProto::http(),
            port: HeaderValue::from_static("80"),
            node_host: HeaderValue::from_static("127.0.0.11"),
            max_uri_bytes: 16384,
            metrics: Arc::new(metrics.zone("web", "zone-a")),
            passive: None,
            access_log: None,
            surge: SurgeQueue::new(0, 1024),
        };
        RequestPath {
            context,
            peer: headers::peer_value(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 22))),
        }
    }

    /// Loads the snapshot and picks an instance (least outstanding requests, power of two choices).
    pub fn pick(&self) -> Option<SocketAddr> {
        let routes = self.context.routes.load();
        pick_least_outstanding(&routes.candidates).map(|target| target.addr)
    }

    /// Rewrites a client's request for the instance (hop-by-hop headers, X-Forwarded-*, Host, origin form).
    pub fn rewrite(&self, request: &mut Request<()>) {
        rewrite_for_instance(request, &self.peer, &self.context);
    }

    /// The metric updates a proxied request makes: RequestCount, HTTPCode_Backend_2XX, Latency, bytes both ways.
    pub fn count(&self) {
        let metrics = &self.context.metrics;
        metrics.requests.inc();
        metrics.backend_status(200);
        metrics.latency.observe(0.000_42);
        metrics.received_bytes.inc_by(412);
        metrics.sent_bytes.inc_by(1380);
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), as on the request path.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    headers::strip_hop_by_hop(headers);
}

/// Sets ELB's X-Forwarded-* headers for `peer` on an HTTPS listener on port 443.
pub fn set_forwarded_https_443(headers: &mut HeaderMap, peer: IpAddr) {
    headers::set_forwarded(
        headers,
        peer,
        &ForwardedProto::https(),
        &headers::forwarded_port(443),
    );
}

/// The Check layer's checks of one request head; whether it passes.
pub fn check_request(method: &Method, uri: &Uri, version: Version, headers: &HeaderMap) -> bool {
    headers::check_request(method, uri, version, headers, 16384).is_ok()
}
