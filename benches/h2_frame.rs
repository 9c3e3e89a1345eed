//! Cost per frame of elbe's HTTP/2 frame layer (`http2::frame`, issue 18), which runs for every frame a client
//! sends and every response elbe writes.
//!
//! - `h2_frame/read`: a read buffer of 100 uploads as a client sends them (per request a HEADERS frame with a
//!   40-byte block, a 100-byte DATA frame, a connection WINDOW_UPDATE), taken apart frame by frame. The buffer is
//!   cloned outside the timed section (`iter_batched`); the one allocation timed is the shared header the first
//!   DATA split gives the buffer (`BytesMut` promotes itself once, not per frame). Throughput is in frames.
//! - `h2_frame/write`: what goes ahead of 100 response bodies (HEADERS with a 40-byte block, a DATA header),
//!   appended to a buffer that already has the room. Throughput is in frames.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use elbe::bench_support::{h2_read_frames, h2_request_frames, h2_write_responses};

const REQUESTS: u32 = 100;
const HEADER_BLOCK: usize = 40;
const BODY: usize = 100;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("h2_frame");
    let frames = h2_request_frames(REQUESTS, HEADER_BLOCK, BODY);
    assert_eq!(h2_read_frames(frames.clone()), Ok(3 * REQUESTS as usize));
    group.throughput(Throughput::Elements(3 * u64::from(REQUESTS)));
    group.bench_function("read", |b| {
        b.iter_batched(
            || frames.clone(),
            |buf| h2_read_frames(black_box(buf)),
            BatchSize::SmallInput,
        )
    });

    let block = [0x88; HEADER_BLOCK];
    let mut out = BytesMut::with_capacity(REQUESTS as usize * (2 * 9 + HEADER_BLOCK));
    group.throughput(Throughput::Elements(2 * u64::from(REQUESTS)));
    group.bench_function("write", |b| {
        b.iter(|| {
            out.clear();
            h2_write_responses(&mut out, REQUESTS, black_box(&block), BODY);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
