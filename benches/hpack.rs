//! HPACK (`http2::hpack`), per header block: decoding what h2load and a browser send, and encoding what a proxied
//! response carries, on a connection's first block (fresh tables: every field a literal, entering the table) and
//! on a later one (the same fields again: mostly indices into the dynamic table), as issue 18's own HTTP/2 server
//! will run them per request. `decode_header_map` adds building the `http::HeaderMap` the request carries.
//!
//! The blocks are made by elbe's encoder, which indexes as nghttp2 and browsers do (everything but secrets and
//! per-response values).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use elbe::bench_support::{HpackDecoder, HpackEncoder};

type Fields = &'static [(&'static str, &'static str)];

/// What h2load sends per request (`h2load -n ... https://127.0.0.1:8443/`).
const H2LOAD: Fields = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "127.0.0.1:8443"),
    (":path", "/"),
    ("user-agent", "h2load nghttp2/1.52.0"),
];

/// What a browser sends for a page: 14 fields.
const BROWSER: Fields = &[
    (":method", "GET"),
    (":authority", "www.example.com"),
    (":scheme", "https"),
    (":path", "/products/index.html?id=42"),
    ("sec-ch-ua", "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("upgrade-insecure-requests", "1"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9"),
    ("referer", "https://www.example.com/"),
    ("cookie", "AWSELB=0123456789ABCDEF0123456789ABCDEF; session=abc123def456"),
];

/// A proxied response: an instance's headers after elbe's.
const RESPONSE: Fields = &[
    (":status", "200"),
    ("server", "nginx/1.22.1"),
    ("date", "Wed, 02 Dec 2026 04:00:00 GMT"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-length", "5120"),
    ("cache-control", "max-age=60"),
    ("vary", "Accept-Encoding"),
    ("x-request-id", "6b1f0c2e-9a47-4c1e-8d0b-3f2a5e7c9d10"),
];

/// The first and second blocks of `fields` on one connection.
fn blocks(fields: Fields) -> (Bytes, Bytes) {
    let mut encoder = HpackEncoder::default();
    let mut first = BytesMut::new();
    encoder.encode(fields, &mut first);
    let mut second = BytesMut::new();
    encoder.encode(fields, &mut second);
    (first.freeze(), second.freeze())
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("hpack/decode");
    for (name, fields) in [("h2load", H2LOAD), ("browser", BROWSER)] {
        let (first, second) = blocks(fields);
        group.bench_function(format!("{name}_first_{}_bytes", first.len()), |b| {
            b.iter_batched_ref(
                HpackDecoder::default,
                |decoder| black_box(decoder.decode(black_box(&first))),
                BatchSize::SmallInput,
            )
        });
        let mut decoder = HpackDecoder::default();
        decoder.decode(&first).expect("the first block decodes");
        group.bench_function(format!("{name}_repeat_{}_bytes", second.len()), |b| {
            b.iter(|| black_box(decoder.decode(black_box(&second))))
        });
        let mut decoder = HpackDecoder::default();
        decoder.decode(&first).expect("the first block decodes");
        group.bench_function(format!("{name}_repeat_header_map"), |b| {
            b.iter(|| black_box(decoder.decode_header_map(black_box(&second))))
        });
    }
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("hpack/encode");
    let mut out = BytesMut::with_capacity(1024);
    group.bench_function("response_first", |b| {
        b.iter_batched_ref(
            HpackEncoder::default,
            |encoder| {
                out.clear();
                encoder.encode(black_box(RESPONSE), &mut out);
                black_box(out.len())
            },
            BatchSize::SmallInput,
        )
    });
    let mut encoder = HpackEncoder::default();
    encoder.encode(RESPONSE, &mut out);
    group.bench_function("response_repeat", |b| {
        b.iter(|| {
            out.clear();
            encoder.encode(black_box(RESPONSE), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, decoding, encoding);
criterion_main!(benches);
