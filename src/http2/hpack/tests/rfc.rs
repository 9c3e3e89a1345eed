//! RFC 7541 Appendix C, byte for byte: C.1's integers, C.2's single fields, C.3 and C.4's request sequences (raw
//! and Huffman), C.5 and C.6's response sequences in a 256-byte table (with eviction). The encoder reproduces C.4
//! and C.6.1 exactly (its choices are the RFC's there) and round-trips the rest.

use bytes::BytesMut;

use super::super::encoder::put_integer;
use super::super::huffman;
use super::{decode, decoder, encode, hex, pairs, table};
use crate::http2::hpack::Encoder;

const DATE_1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE_2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

#[test]
fn c_1_integers_encode_as_the_rfc_shows() {
    for (value, prefix_bits, expected) in [(10, 5, "0a"), (1337, 5, "1f9a0a"), (42, 8, "2a")] {
        let mut out = BytesMut::new();
        put_integer(&mut out, value, prefix_bits, 0);
        assert_eq!(
            &out[..],
            &hex(expected)[..],
            "{value} in a {prefix_bits}-bit prefix"
        );
    }
}

#[test]
fn c_2_1_a_literal_with_indexing_enters_the_table() {
    let mut decoder = decoder(4096);
    let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    let fields = decode(&mut decoder, &block).unwrap();
    assert_eq!(fields, pairs(&[("custom-key", "custom-header")]));
    assert_eq!(
        table(&decoder),
        (pairs(&[("custom-key", "custom-header")]), 55)
    );
}

#[test]
fn c_2_2_a_literal_without_indexing_leaves_the_table_alone() {
    let mut decoder = decoder(4096);
    let fields = decode(&mut decoder, &hex("040c 2f73 616d 706c 652f 7061 7468")).unwrap();
    assert_eq!(fields, pairs(&[(":path", "/sample/path")]));
    assert_eq!(table(&decoder), (vec![], 0));
}

#[test]
fn c_2_3_a_never_indexed_literal_is_flagged_sensitive() {
    let mut decoder = decoder(4096);
    let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    let mut fields = Vec::new();
    decoder.decode(&block, |field| fields.push(field)).unwrap();
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (&fields[0].name[..], &fields[0].value[..]),
        (&b"password"[..], &b"secret"[..])
    );
    assert!(fields[0].sensitive);
    assert_eq!(table(&decoder), (vec![], 0));
}

#[test]
fn c_2_4_an_indexed_field_comes_from_the_static_table() {
    let mut decoder = decoder(4096);
    assert_eq!(
        decode(&mut decoder, &hex("82")).unwrap(),
        pairs(&[(":method", "GET")])
    );
    assert_eq!(table(&decoder), (vec![], 0));
}

const REQUEST_1: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQUEST_2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQUEST_3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

const C_3: [&str; 3] = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];
const C_4: [&str; 3] = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

/// The table after each request of C.3 and C.4.
fn request_tables() -> [(Vec<(String, String)>, usize); 3] {
    [
        (pairs(&[(":authority", "www.example.com")]), 57),
        (
            pairs(&[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ]),
            110,
        ),
        (
            pairs(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ]),
            164,
        ),
    ]
}

fn check_requests(blocks: [&str; 3]) {
    let mut decoder = decoder(4096);
    let requests = [REQUEST_1, REQUEST_2, REQUEST_3];
    for ((block, request), expected_table) in blocks.iter().zip(requests).zip(request_tables()) {
        assert_eq!(
            decode(&mut decoder, &hex(block)).unwrap(),
            pairs(request),
            "{block}"
        );
        assert_eq!(table(&decoder), expected_table, "after {block}");
    }
}

#[test]
fn c_3_requests_without_huffman_decode_with_their_tables() {
    check_requests(C_3);
}

#[test]
fn c_4_requests_with_huffman_decode_with_their_tables() {
    check_requests(C_4);
}

#[test]
fn c_4_the_encoder_writes_exactly_the_rfcs_bytes() {
    let mut encoder = Encoder::default();
    for (request, block) in [REQUEST_1, REQUEST_2, REQUEST_3].into_iter().zip(C_4) {
        assert_eq!(encode(&mut encoder, request), hex(block));
    }
}

#[test]
fn c_4_huffman_strings_encode_to_the_rfcs_bytes() {
    let strings = [
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("private", "aec3 771a 4b"),
        (DATE_1, "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"),
        (LOCATION, "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"),
        ("307", "640e ff"),
        (DATE_2, "d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff"),
        ("gzip", "9bd9 ab"),
        (
            COOKIE,
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    ];
    for (text, coded) in strings {
        let mut out = BytesMut::new();
        huffman::encode(text.as_bytes(), &mut out);
        assert_eq!(&out[..], &hex(coded)[..], "{text}");
        assert_eq!(huffman::encoded_len(text.as_bytes()), out.len(), "{text}");
        let mut back = BytesMut::new();
        huffman::decode(&out, &mut back).unwrap();
        assert_eq!(&back[..], text.as_bytes());
    }
}

const RESPONSE_1: &[(&str, &str)] = &[
    (":status", "302"),
    ("cache-control", "private"),
    ("date", DATE_1),
    ("location", LOCATION),
];
const RESPONSE_2: &[(&str, &str)] = &[
    (":status", "307"),
    ("cache-control", "private"),
    ("date", DATE_1),
    ("location", LOCATION),
];
const RESPONSE_3: &[(&str, &str)] = &[
    (":status", "200"),
    ("cache-control", "private"),
    ("date", DATE_2),
    ("location", LOCATION),
    ("content-encoding", "gzip"),
    ("set-cookie", COOKIE),
];

const C_5: [&str; 3] = [
    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d
     546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "4803 3330 37c1 c0bf",
    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f
     6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b
     2076 6572 7369 6f6e 3d31",
];
const C_6: [&str; 3] = [
    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7
     8f0b 97c8 e9ae 82ae 43d3",
    "4883 640e ffc1 c0bf",
    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335
     dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
];

/// The 256-byte table after each response of C.5 and C.6: the third evicts all but what it added.
fn response_tables() -> [(Vec<(String, String)>, usize); 3] {
    [
        (
            pairs(&[
                ("location", LOCATION),
                ("date", DATE_1),
                ("cache-control", "private"),
                (":status", "302"),
            ]),
            222,
        ),
        (
            pairs(&[
                (":status", "307"),
                ("location", LOCATION),
                ("date", DATE_1),
                ("cache-control", "private"),
            ]),
            222,
        ),
        (
            pairs(&[
                ("set-cookie", COOKIE),
                ("content-encoding", "gzip"),
                ("date", DATE_2),
            ]),
            215,
        ),
    ]
}

fn check_responses(blocks: [&str; 3]) {
    let mut decoder = decoder(256);
    let responses = [RESPONSE_1, RESPONSE_2, RESPONSE_3];
    for ((block, response), expected_table) in blocks.iter().zip(responses).zip(response_tables()) {
        assert_eq!(
            decode(&mut decoder, &hex(block)).unwrap(),
            pairs(response),
            "{block}"
        );
        assert_eq!(table(&decoder), expected_table, "after {block}");
    }
}

#[test]
fn c_5_responses_without_huffman_decode_with_eviction() {
    check_responses(C_5);
}

#[test]
fn c_6_responses_with_huffman_decode_with_eviction() {
    check_responses(C_6);
}

#[test]
fn c_6_the_encoder_writes_the_first_response_exactly_and_round_trips_the_others() {
    let mut encoder = Encoder::default();
    encoder.set_peer_max_table_size(256);
    let mut peer = decoder(256);
    peer.set_max_table_size(256);
    let first = encode(&mut encoder, RESPONSE_1);
    // The block opens with the size update to 256 the peer's settings asked for, then C.6.1's bytes.
    assert_eq!(first, hex(&format!("3fe1 01 {}", C_6[0])));
    assert_eq!(decode(&mut peer, &first).unwrap(), pairs(RESPONSE_1));
    for response in [RESPONSE_2, RESPONSE_3] {
        let block = encode(&mut encoder, response);
        assert_eq!(decode(&mut peer, &block).unwrap(), pairs(response));
    }
}
