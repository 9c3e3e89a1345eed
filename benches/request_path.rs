//! The per-request work of the data plane, without sockets: load the node's snapshot, pick an instance (least
//! outstanding, power of two choices), rewrite the request for the instance (hop-by-hop headers, X-Forwarded-*).
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use elbe::data_plane::back_end::pool::Pool;
use elbe::data_plane::back_end::target::Target;
use elbe::data_plane::headers::ForwardedProto;
use elbe::data_plane::proxy::forwarded::rewrite_for_instance;
use elbe::data_plane::proxy::ListenerContext;
use elbe::data_plane::routing::balancer::pick_least_outstanding;
use elbe::data_plane::snapshot::NodeSnapshot;
use elbe::observability::metrics::Metrics;
use http::{HeaderValue, Request};

fn context(instances: usize) -> ListenerContext {
    let candidates = (0..instances)
        .map(|i| {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21)), 8000 + i as u16);
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
    ListenerContext {
        routes: Arc::new(ArcSwap::from_pointee(NodeSnapshot {
            candidates,
            idle_timeout: Duration::from_secs(60),
        })),
        proto: ForwardedProto::http(),
        port: HeaderValue::from_static("80"),
        node_host: HeaderValue::from_static("127.0.0.11"),
        max_uri_bytes: 16384,
        metrics: Arc::new(metrics.zone("web", "zone-a")),
        passive: None,
        access_log: None,
        surge: elbe::data_plane::routing::surge::SurgeQueue::new(0, 1024),
    }
}

/// A typical browser request as hyper hands it over.
fn request() -> Request<()> {
    Request::get("/index.html?page=2")
        .header("host", "www.example.org")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0",
        )
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-language", "en-US,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br")
        .header("connection", "keep-alive")
        .header("cookie", "session=abc123")
        .header("x-forwarded-for", "203.0.113.7")
        .body(())
        .unwrap()
}

fn request_path(c: &mut Criterion) {
    let context = context(8);
    let peer = &elbe::data_plane::headers::peer_value(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 22)));
    c.bench_function("snapshot load + pick (8 instances)", |b| {
        b.iter(|| {
            let routes = context.routes.load();
            black_box(pick_least_outstanding(&routes.candidates).map(|t| t.addr))
        })
    });
    c.bench_function("rewrite for instance (8 headers)", |b| {
        b.iter_batched(
            request,
            |mut request| {
                rewrite_for_instance(&mut request, peer, &context);
                request
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("request path: load + pick + rewrite", |b| {
        b.iter_batched(
            request,
            |mut request| {
                let routes = context.routes.load();
                let target = pick_least_outstanding(&routes.candidates).cloned();
                rewrite_for_instance(&mut request, peer, &context);
                (request, target)
            },
            BatchSize::SmallInput,
        )
    });
}

/// What the metrics cost a request: the same work with and without the series updates a proxied request makes
/// (RequestCount, HTTPCode_Backend_2XX, Latency, bytes in and out). Pre-bound handles: atomics only.
fn metrics_on_and_off(c: &mut Criterion) {
    let context = context(8);
    let peer = &elbe::data_plane::headers::peer_value(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 22)));
    let path = |request: &mut Request<()>| {
        let routes = context.routes.load();
        let target = pick_least_outstanding(&routes.candidates).cloned();
        rewrite_for_instance(request, peer, &context);
        target
    };
    c.bench_function("request path, metrics off", |b| {
        b.iter_batched(
            request,
            |mut request| (path(&mut request), request),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("request path, metrics on", |b| {
        b.iter_batched(
            request,
            |mut request| {
                let metrics = &context.metrics;
                metrics.requests.inc();
                let target = path(&mut request);
                metrics.backend_status(200);
                metrics.latency.observe(0.000_42);
                metrics.received_bytes.inc_by(412);
                metrics.sent_bytes.inc_by(1380);
                (target, request)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, request_path, metrics_on_and_off);
criterion_main!(benches);
