//! Cost per request of the header work on the request path (ELB-SPEC §1.2): `strip_hop_by_hop` then
//! `set_forwarded`, on a typical 8-header browser request, plus `check_request` on the same head.
//!
//! Each iteration gets a fresh map built outside the timed section (`iter_batched`), the way hyper's HTTP/1 parser
//! builds one (`reserve(n)` for n lines, which leaves room for a few more), so the numbers are the functions alone.
//! (A `HeaderMap::clone` would not do: its entries are cloned with no spare capacity, so every insert would also
//! pay for a reallocation that hyper's maps do not.) `baseline/build_map` times building the 8-line map itself,
//! as a yardstick.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use elbe::bench_support::{check_request, set_forwarded_https_443, strip_hop_by_hop};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

type Head = [(&'static str, &'static str); 8];

/// What a browser sends: 8 header lines, none hop-by-hop.
const BROWSER: Head = [
    ("host", "www.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("referer", "https://www.example.com/"),
    ("cookie", "AWSELB=0123456789ABCDEF; session=abc123"),
    ("upgrade-insecure-requests", "1"),
];

/// The same request with two lines swapped for what the slow paths handle: `Connection: keep-alive` and an
/// `X-Forwarded-For` from a proxy in front of elbe.
const KEEP_ALIVE_WITH_XFF: Head = [
    BROWSER[0],
    BROWSER[1],
    BROWSER[2],
    BROWSER[3],
    BROWSER[4],
    BROWSER[6],
    ("connection", "keep-alive"),
    ("x-forwarded-for", "198.51.100.23"),
];

/// The map as hyper's HTTP/1 parser hands it over.
fn build(head: &Head) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.reserve(head.len());
    for (name, value) in head {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

fn bench(c: &mut Criterion) {
    let v4: IpAddr = "203.0.113.7".parse().unwrap();
    let v6: IpAddr = "2001:db8:85a3::8a2e:370:7334".parse().unwrap();

    let mut group = c.benchmark_group("request_headers");
    let cases = [
        ("browser_ipv4", &BROWSER, v4),
        ("browser_ipv6", &BROWSER, v6),
        ("keep_alive_with_xff_ipv4", &KEEP_ALIVE_WITH_XFF, v4),
    ];
    for (name, head, peer) in cases {
        group.bench_function(format!("strip_and_set_forwarded/{name}"), |b| {
            b.iter_batched(
                || build(head),
                |mut headers| {
                    strip_hop_by_hop(&mut headers);
                    set_forwarded_https_443(&mut headers, black_box(peer));
                    headers
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("strip_hop_by_hop/{name}"), |b| {
            b.iter_batched(
                || build(head),
                |mut headers| {
                    strip_hop_by_hop(&mut headers);
                    headers
                },
                BatchSize::SmallInput,
            )
        });
    }
    let headers = build(&BROWSER);
    let uri = Uri::from_static("/index.html?q=1");
    group.bench_function("check_request/browser", |b| {
        b.iter(|| {
            check_request(
                &Method::GET,
                black_box(&uri),
                Version::HTTP_11,
                black_box(&headers),
            )
        })
    });
    group.bench_function("baseline/build_map", |b| {
        b.iter(|| build(black_box(&BROWSER)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
