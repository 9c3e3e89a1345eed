//! Random field lists through the encoder and a peer's decoder, block after block on one connection, with the
//! table size changing between blocks (down, up, down and up again): every field comes out as it went in, and
//! the encoder's choices (indexing, Huffman, never-indexed) never desynchronise the two tables.

use bytes::BytesMut;

use crate::http2::hpack::{Decoder, Encoder};

/// xorshift64*: a small seeded generator, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: [&str; 12] = [
    ":status",
    "content-type",
    "server",
    "date",
    "cache-control",
    "set-cookie",
    "content-length",
    "etag",
    "cookie",
    "x-request-id",
    "x-amz-cf-id",
    "vary",
];
const VALUES: [&str; 8] = [
    "200",
    "404",
    "text/html",
    "nginx",
    "gzip",
    "",
    "no-cache",
    "302",
];

fn value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => VALUES[rng.below(VALUES.len())].as_bytes().to_vec(),
        // Any bytes, any length up to 300 (some longer than half a small table).
        1 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        _ => format!("v{}", rng.below(40)).into_bytes(),
    }
}

fn name(rng: &mut Rng) -> Vec<u8> {
    if rng.below(4) == 0 {
        format!("x-custom-{}", rng.below(30)).into_bytes()
    } else {
        NAMES[rng.below(NAMES.len())].as_bytes().to_vec()
    }
}

/// A peer's SETTINGS_HEADER_TABLE_SIZE change, told to both ends as a connection would.
fn change_table_size(rng: &mut Rng, encoder: &mut Encoder, decoder: &mut Decoder) {
    const SIZES: [usize; 7] = [0, 40, 64, 256, 1000, 4096, 8192];
    let size = SIZES[rng.below(SIZES.len())];
    encoder.set_peer_max_table_size(size);
    decoder.set_max_table_size(size);
}

#[test]
fn random_field_lists_round_trip_over_many_blocks_with_table_size_changes() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::new(4096, usize::MAX);
        for block_number in 0..300 {
            for _ in 0..usize::from(rng.below(8) == 0) + usize::from(rng.below(16) == 0) {
                change_table_size(&mut rng, &mut encoder, &mut decoder);
            }
            let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.below(20))
                .map(|_| (name(&mut rng), value(&mut rng)))
                .collect();
            let mut block = BytesMut::new();
            encoder.encode(
                fields.iter().map(|(name, value)| (&name[..], &value[..])),
                &mut block,
            );
            let block = block.freeze();
            let mut decoded = Vec::new();
            decoder
                .decode(&block, |field| {
                    let sensitive = field.sensitive;
                    decoded.push((field.name.to_vec(), field.value.to_vec(), sensitive));
                })
                .unwrap_or_else(|error| panic!("seed {seed}, block {block_number}: {error}"));
            let names_values: Vec<_> = decoded
                .iter()
                .map(|(name, value, _)| (name.clone(), value.clone()))
                .collect();
            assert_eq!(names_values, fields, "seed {seed}, block {block_number}");
            for (name, value, sensitive) in &decoded {
                // (An empty one is the static table's entry 55.)
                if name == b"set-cookie" && !value.is_empty() {
                    assert!(sensitive, "set-cookie is sent never indexed");
                }
            }
        }
    }
}

#[test]
fn a_repeated_response_costs_a_byte_a_field() {
    let fields: [(&[u8], &[u8]); 5] = [
        (b":status", b"200"),
        (b"server", b"nginx/1.22.1"),
        (b"content-type", b"text/html; charset=utf-8"),
        (b"date", b"Wed, 02 Dec 2026 04:00:00 GMT"),
        (b"cache-control", b"max-age=60"),
    ];
    let mut encoder = Encoder::default();
    let mut first = BytesMut::new();
    encoder.encode(fields, &mut first);
    let mut second = BytesMut::new();
    encoder.encode(fields, &mut second);
    assert!(
        first.len() > 40,
        "the first response carries the literals: {first:?}"
    );
    assert_eq!(second.len(), 5, "the second is five indices: {second:?}");
}

#[test]
fn a_smaller_peer_table_is_announced_at_the_start_of_the_next_block() {
    let mut encoder = Encoder::default();
    let mut block = BytesMut::new();
    encoder.encode([(&b"server"[..], &b"elbe"[..])], &mut block);
    encoder.set_peer_max_table_size(0);
    let mut next = BytesMut::new();
    encoder.encode([(&b"server"[..], &b"elbe"[..])], &mut next);
    // The update to 0, then the field as a literal without indexing (nothing fits in no table), its name indexed
    // in the static table (54 = 15 + 39): never an index into the old dynamic table.
    assert_eq!(&next[..3], &[0x20, 0x0f, 39]);
    let mut decoder = Decoder::new(4096, usize::MAX);
    decoder.decode(&block.freeze(), |_| {}).unwrap();
    decoder.set_max_table_size(0);
    let mut fields = Vec::new();
    decoder
        .decode(&next.freeze(), |field| fields.push(field.value))
        .unwrap();
    assert_eq!(fields, vec![&b"elbe"[..]]);
}
