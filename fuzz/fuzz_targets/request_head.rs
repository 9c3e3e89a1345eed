//! elbe's HTTP/1 server reading a request head (`front_end::http1::request::parse`).
//!
//! Input: byte 0 picks `max_request_header_bytes` (64 to 4,144), byte 1 `max_headers` (1 to 64), byte 2 where the
//! bytes split into two reads; the rest is what the client sent. `max_uri_bytes` is a quarter of the head limit
//! (ELB's defaults: 16 KiB of 64 KiB).
//!
//! Invariants:
//! - a head never takes more bytes than `max_request_header_bytes` nor has more fields than `max_headers`;
//! - the verdict does not depend on how the bytes arrive: a prefix that is refused is refused with the same ELB
//!   status when more bytes follow, and a prefix that parses parses to the same head, leaving what follows;
//! - a head that parses re-serializes (method, target, version, fields) to bytes that parse to the same head,
//!   with the same connection and body decisions.
#![no_main]

use bytes::BytesMut;
use elbe::fuzz_support::{parse_request, RequestHead};
use http::Version;
use libfuzzer_sys::fuzz_target;

/// Limits for re-parsing a serialized head: the round trip checks syntax, not size.
const ROOMY_BYTES: usize = 1 << 20;
const ROOMY_HEADERS: usize = 1024;

type Outcome = Result<Option<RequestHead>, http::StatusCode>;

fuzz_target!(|data: &[u8]| {
    let [bytes_byte, headers_byte, split_byte, input @ ..] = data else {
        return;
    };
    let max_bytes = 64 + usize::from(*bytes_byte) * 16;
    let max_headers = 1 + usize::from(*headers_byte % 64);
    let split = usize::from(*split_byte) * input.len() / 255;

    let (whole, left) = parse(input, max_bytes, max_headers);
    if let Ok(Some(head)) = &whole {
        let taken = input.len() - left.len();
        assert!(taken <= max_bytes, "took {taken} bytes, limit {max_bytes}");
        assert!(head.headers.len() <= max_headers, "more fields than the limit");
        assert_eq!(&input[taken..], &left[..], "the bytes after the head stay");
        round_trip(head);
    }

    let (first, first_left) = parse(&input[..split], max_bytes, max_headers);
    match first {
        Err(status) => assert_eq!(whole, Err(status), "a refusal changed when more bytes followed"),
        Ok(Some(head)) => {
            assert_eq!(whole.as_ref().ok().and_then(Option::as_ref), Some(&head));
            let mut expected = first_left;
            expected.extend_from_slice(&input[split..]);
            assert_eq!(left, expected, "the bytes after the head stay, however they arrived");
        }
        Ok(None) => {
            // The server's second read lands in the same buffer.
            let mut buf = first_left;
            buf.extend_from_slice(&input[split..]);
            let again = parse_request(&mut buf, max_bytes, max_headers, max_bytes / 4);
            assert_eq!(again, whole, "two reads and one read disagree");
            assert_eq!(buf, left);
        }
    }
});

fn parse(bytes: &[u8], max_bytes: usize, max_headers: usize) -> (Outcome, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let outcome = parse_request(&mut buf, max_bytes, max_headers, max_bytes / 4);
    (outcome, buf)
}

/// Writes the head back as a client would and checks it parses to the same thing.
fn round_trip(head: &RequestHead) {
    let version = if head.version == Version::HTTP_10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut bytes = format!("{} {} {version}\r\n", head.method, head.uri).into_bytes();
    for (name, value) in &head.headers {
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    let (again, left) = parse(&bytes, ROOMY_BYTES, ROOMY_HEADERS);
    match again {
        Ok(Some(again)) => assert_eq!(&again, head, "re-serialized as {:?}", String::from_utf8_lossy(&bytes)),
        other => panic!(
            "re-serialized head {:?} does not parse: {other:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
    assert!(left.is_empty());
}
