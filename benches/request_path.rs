//! The per-request work of the data plane, without sockets: load the node's snapshot, pick an instance (least
//! outstanding, power of two choices), rewrite the request for the instance (hop-by-hop headers, X-Forwarded-*).
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use elbe::bench_support::{RequestPath, TrafficPath};
use http::Request;

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
    let path = RequestPath::new(8);
    c.bench_function("snapshot load + pick (8 instances)", |b| {
        b.iter(|| black_box(path.pick()))
    });
    c.bench_function("rewrite for instance (8 headers)", |b| {
        b.iter_batched(
            request,
            |mut request| {
                path.rewrite(&mut request);
                request
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("request path: load + pick + rewrite", |b| {
        b.iter_batched(
            request,
            |mut request| {
                let target = path.pick();
                path.rewrite(&mut request);
                (request, target)
            },
            BatchSize::SmallInput,
        )
    });
}

/// What the metrics cost a request: the same work with and without the series updates a proxied request makes
/// (RequestCount, HTTPCode_Backend_2XX, Latency, bytes in and out). Pre-bound handles: atomics only.
fn metrics_on_and_off(c: &mut Criterion) {
    let path = RequestPath::new(8);
    let work = |request: &mut Request<()>| {
        let target = path.pick();
        path.rewrite(request);
        target
    };
    c.bench_function("request path, metrics off", |b| {
        b.iter_batched(
            request,
            |mut request| (work(&mut request), request),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("request path, metrics on", |b| {
        b.iter_batched(
            request,
            |mut request| {
                let target = work(&mut request);
                path.count();
                (target, request)
            },
            BatchSize::SmallInput,
        )
    });
}

/// What the Rules and Sticky layers cost a request, on a listener without them (a snapshot load and a test each)
/// and with them: the seed's three rules (no match, a source-address match), an LB-cookie policy (a request with a
/// good cookie: hex decode, HMAC check, instance lookup; a new session: HMAC and the Set-Cookie line).
fn rules_and_stickiness(c: &mut Criterion) {
    let plain = TrafficPath::new(8, false, false);
    let configured = TrafficPath::new(8, true, true);
    let browser = request();
    let export = Request::get("/export/report.csv")
        .header("host", "www.example.org")
        .body(())
        .unwrap();
    c.bench_function("rules: none configured", |b| {
        b.iter(|| black_box(plain.rules_answer(black_box(&browser))))
    });
    c.bench_function("rules: 3 configured, none matches", |b| {
        b.iter(|| black_box(configured.rules_answer(black_box(&browser))))
    });
    c.bench_function("rules: 3 configured, the 2nd answers (403)", |b| {
        b.iter(|| black_box(configured.rules_answer(black_box(&export))))
    });
    c.bench_function("stickiness: none configured", |b| {
        b.iter(|| black_box(plain.sticky_target(black_box(&browser))))
    });
    let sticky = with_cookie(&configured, "i-3");
    assert!(
        configured.sticky_target(&sticky).is_some(),
        "the cookie is good"
    );
    c.bench_function("stickiness: request with a good AWSELB cookie", |b| {
        b.iter(|| black_box(configured.sticky_target(black_box(&sticky))))
    });
    c.bench_function("stickiness: request without a cookie", |b| {
        b.iter(|| black_box(configured.sticky_target(black_box(&browser))))
    });
    c.bench_function("stickiness: a new session's cookie", |b| {
        b.iter(|| black_box(configured.new_cookie(black_box("i-3"))))
    });
}

/// [`request`] with the AWSELB cookie `path` issues for `instance` (its `name=value` part, as a browser sends it).
fn with_cookie(path: &TrafficPath, instance: &str) -> Request<()> {
    let cookie = path.new_cookie(instance).unwrap();
    let value = cookie.to_str().unwrap().split(';').next().unwrap();
    let mut request = request();
    request
        .headers_mut()
        .append("cookie", http::HeaderValue::from_str(value).unwrap());
    request
}

/// Issue 18 item 5: the per-request path at 2 and at 1,000 instances, which must cost the same (every per-request
/// step is O(1) in the number of instances: the candidates are precomputed in the snapshot when health changes,
/// the pick draws two of them, the sticky lookup is one hash probe, the metrics are per zone).
fn by_instances(c: &mut Criterion) {
    let mut group = c.benchmark_group("by instances");
    for instances in [2, 1000] {
        let path = RequestPath::new(instances);
        group.bench_function(
            format!("load + pick + rewrite, {instances} instances"),
            |b| {
                b.iter_batched(
                    request,
                    |mut request| {
                        let target = path.pick();
                        path.rewrite(&mut request);
                        path.count();
                        (request, target)
                    },
                    BatchSize::SmallInput,
                )
            },
        );
        let sticky = TrafficPath::new(instances, false, true);
        let stuck = with_cookie(&sticky, "i-1");
        assert!(sticky.sticky_target(&stuck).is_some(), "the cookie is good");
        group.bench_function(format!("sticky lookup, {instances} instances"), |b| {
            b.iter(|| black_box(sticky.sticky_target(black_box(&stuck))))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    request_path,
    metrics_on_and_off,
    rules_and_stickiness,
    by_instances
);
criterion_main!(benches);
