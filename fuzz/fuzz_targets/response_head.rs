//! elbe's HTTP/1 client scanning an instance's response head (`back_end::http1::response::read_head`), in both
//! modes: `raw` (lines passed on as received, for HTTP/1 clients) and header map (for HTTP/2 clients).
//!
//! Input: byte 0's low bit says the request was a HEAD, its next bit that it asked for a WebSocket upgrade; byte 1
//! says where the bytes split into two reads; the rest is what the instance sent.
//!
//! Invariants:
//! - a head that scans keeps no hop-by-hop line (RFC 9110 §7.6.1) and no line its `Connection` names, in either
//!   mode (a 101 to an upgrade keeps its `Upgrade` and `Connection`, and nothing else hop-by-hop); the raw lines are well-formed field lines, exactly those the map holds;
//! - its framing is one of the four kinds: no body (length 0, always for HEAD, 204, 304), a length, chunked, until
//!   close; a body until close never leaves the connection open;
//! - both modes agree on status, framing, keep-alive and refusal;
//! - the verdict does not depend on how the bytes arrive (one read, or two split anywhere).
#![no_main]

use bytes::BytesMut;
use elbe::fuzz_support::{read_response_head, ResponseFraming, ResponseHead};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;

/// RFC 9110 §7.6.1's hop-by-hop fields, and those RFC 9112 and common practice add; written out here, not taken
/// from elbe, so the check is independent.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

type Outcome = Result<Option<ResponseHead>, String>;

fuzz_target!(|data: &[u8]| {
    let [flags, split_byte, input @ ..] = data else {
        return;
    };
    let head_only = flags & 1 == 1;
    let upgrade = flags & 2 == 2;
    let split = usize::from(*split_byte) * input.len() / 255;

    let (raw, raw_left) = read(input, split, head_only, true, upgrade);
    let (raw_once, raw_once_left) = read(input, input.len(), head_only, true, upgrade);
    assert_eq!(summary(&raw), summary(&raw_once), "raw mode, split after {split} bytes");
    assert_eq!(raw_left, raw_once_left);
    let (map, map_left) = read(input, split, head_only, false, upgrade);
    let (map_once, _) = read(input, input.len(), head_only, false, upgrade);
    assert_eq!(summary(&map), summary(&map_once), "map mode, split after {split} bytes");
    assert_eq!(summary(&raw), summary(&map), "the modes disagree");
    if let (Ok(Some(raw)), Ok(Some(map))) = (&raw, &map) {
        assert_eq!(raw_left, map_left);
        let taken = &input[..input.len() - raw_left.len()];
        check_head(raw, map, taken, head_only);
    }
});

/// Reads `input` in two reads split at `split`, as the client's connection does.
fn read(input: &[u8], split: usize, head_only: bool, raw: bool, upgrade: bool) -> (Outcome, BytesMut) {
    let mut buf = BytesMut::from(&input[..split]);
    let first = read_response_head(&mut buf, head_only, raw, upgrade);
    if !matches!(first, Ok(None)) || split == input.len() {
        buf.extend_from_slice(&input[split..]);
        return (first, buf);
    }
    buf.extend_from_slice(&input[split..]);
    let second = read_response_head(&mut buf, head_only, raw, upgrade);
    (second, buf)
}

/// What both modes must agree on.
fn summary(outcome: &Outcome) -> Result<Option<(StatusCode, ResponseFraming, bool)>, String> {
    match outcome {
        Ok(Some(head)) => Ok(Some((head.status, head.framing.clone(), head.keep_alive))),
        Ok(None) => Ok(None),
        Err(error) => Err(error.clone()),
    }
}

fn check_head(raw: &ResponseHead, map: &ResponseHead, taken: &[u8], head_only: bool) {
    let framing = &map.framing;
    assert!(!matches!(framing, ResponseFraming::Other(_)), "framing {framing:?}");
    if head_only || map.status == StatusCode::NO_CONTENT || map.status == StatusCode::NOT_MODIFIED {
        assert_eq!(framing, &ResponseFraming::Length(0), "a response without a body");
    }
    if *framing == ResponseFraming::UntilClose {
        assert!(!map.keep_alive, "a body until close, and the connection kept");
    }
    if map.status == StatusCode::SWITCHING_PROTOCOLS {
        // Only to a WebSocket upgrade: the client needs `Upgrade` and `Connection` to finish its handshake, and
        // the connection carries the tunnel, never another response.
        assert_eq!(framing, &ResponseFraming::Length(0), "a 101 has no body");
        assert!(!map.keep_alive, "a 101's connection is the tunnel, never pooled");
        for name in map.headers.keys() {
            let name = name.as_str();
            let passed = name == "upgrade" || name == "connection";
            assert!(passed || !HOP_BY_HOP.contains(&name), "hop-by-hop {name} kept in a 101");
            assert_ne!(name, "content-length", "a 101 keeps a Content-Length");
        }
    } else {
        let named = connection_options(taken);
        for name in map.headers.keys() {
            assert!(!HOP_BY_HOP.contains(&name.as_str()), "hop-by-hop {name} kept");
            assert!(!named.contains(&name.as_str().to_string()), "{name} named by Connection, kept");
        }
    }
    let lines = raw.raw.as_ref().expect("raw mode gives the raw lines");
    let mut section = lines.lines.to_vec();
    section.extend_from_slice(b"\r\n");
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let parsed = match httparse::parse_headers(&section, &mut slots) {
        Ok(httparse::Status::Complete((length, fields))) if length == section.len() => fields,
        other => panic!("raw lines {:?} are not a field section: {other:?}", lines.lines),
    };
    let raw_fields: Vec<(String, &[u8])> =
        parsed.iter().map(|field| (field.name.to_ascii_lowercase(), field.value)).collect();
    let map_fields: Vec<(String, &[u8])> =
        map.headers.iter().map(|(name, value)| (name.as_str().to_string(), value.as_bytes())).collect();
    let mut raw_sorted = raw_fields.clone();
    let mut map_sorted = map_fields.clone();
    raw_sorted.sort();
    map_sorted.sort();
    assert_eq!(raw_sorted, map_sorted, "raw lines and header map differ");
    assert_eq!(
        lines.has_length,
        raw_fields.iter().any(|(name, _)| name == "content-length"),
        "has_length"
    );
}

/// The options every `Connection` line of the final head names (lower case), read with httparse directly,
/// skipping interim 1xx heads as the client does.
fn connection_options(mut taken: &[u8]) -> Vec<String> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(length)) = response.parse(taken) else {
            return Vec::new();
        };
        let code = response.code.unwrap_or(0);
        if (100..200).contains(&code) && code != 101 {
            taken = &taken[length..];
            continue;
        }
        return response
            .headers
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case("connection"))
            .flat_map(|field| field.value.split(|&b| b == b','))
            .map(|option| String::from_utf8_lossy(option.trim_ascii()).to_ascii_lowercase())
            .filter(|option| !option.is_empty())
            .collect();
    }
}
