//! Field names and values that an instance might read differently from elbe: names that normalise to a framing or
//! routing field (`Content_Length`: servers that map `_` to `-`, as CGI does, would see a second framing header),
//! expectations other than `100-continue` (RFC 9110 §10.1.1: 417), and HTTP/2 values with leading or trailing
//! whitespace (RFC 9113 §8.2.1: malformed).

use http::header;
use http::HeaderMap;

use super::Rejection;

/// Framing, routing and connection fields a look-alike name must not imitate.
const IMITATED: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// No field name turns into a framing or routing field when `_` is read as `-` (names are lower-case in a
/// `HeaderMap`, so case tricks are already gone).
pub(super) fn check_names(headers: &HeaderMap) -> Result<(), Rejection> {
    for name in headers.keys() {
        let name = name.as_str();
        if name.contains('_') && IMITATED.iter().any(|field| imitates(name, field)) {
            return Err(Rejection::BadRequest(
                "field name imitates a framing or routing field",
            ));
        }
    }
    Ok(())
}

/// Whether `name` reads as `field` once every `_` is a `-`.
fn imitates(name: &str, field: &str) -> bool {
    name.len() == field.len()
        && name
            .bytes()
            .zip(field.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Every `Expect` is exactly `100-continue` (case-insensitive), the only expectation there is.
pub(super) fn check_expect(headers: &HeaderMap) -> Result<(), Rejection> {
    for value in headers.get_all(header::EXPECT) {
        if !value.as_bytes().eq_ignore_ascii_case(b"100-continue") {
            return Err(Rejection::ExpectationFailed);
        }
    }
    Ok(())
}

/// HTTP/2 field values have no leading or trailing space or tab (HTTP/1's parser trims them; HTTP/2 has no such
/// step, and an instance would see them after the downgrade).
pub(super) fn check_http2_values(headers: &HeaderMap) -> Result<(), Rejection> {
    let padded = |value: &[u8]| {
        matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t'))
    };
    if headers.values().any(|value| padded(value.as_bytes())) {
        return Err(Rejection::BadRequest(
            "field value with leading or trailing whitespace",
        ));
    }
    Ok(())
}
