//! Hop-by-hop headers (RFC 9110 §7.6.1): the headers that describe one connection, not the message, removed on
//! the way to the instance and on the way back to the client.

use http::header::{self, HeaderName};
use http::HeaderMap;

use crate::http1::fields::{tokens, trim_ows};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers before forwarding (RFC 9110 §7.6.1): `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding` (elbe re-frames the body) and `Upgrade`.
///
/// Used on requests (to the instance) and responses (to the client). Names in `Connection` are matched without
/// regard to case; `Connection: close, X-Foo` removes `x-foo`. As the RFC requires, *any* named header goes, end-to-end
/// ones included: a client naming its own `Cookie` only hurts itself, and elbe adds its `X-Forwarded-*` headers after
/// this runs. The caller decides about keep-alive (ELB honours the client's `Connection` after proxying, ELB-SPEC
/// §1.1) *before* calling this.
///
/// Fast path: one pass over the header names (typically 8 to 15) and no change when none is hop-by-hop; that pass
/// also notes which of the fixed names are present, so only those are looked up again to be removed.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers
        .keys()
        .fold(0u8, |present, name| present | hop_by_hop_bit(name.as_str()));
    if present == 0 {
        return;
    }
    if present & CONNECTION_BIT != 0 {
        strip_connection_options(headers);
    }
    for (bit, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << bit) != 0 {
            headers.remove(name);
        }
    }
}

/// The fixed hop-by-hop headers; a header's bit in a `u8` mask is its index here.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const CONNECTION_BIT: u8 = 1;

/// The bit of a (lower-case) header name in [`HOP_BY_HOP`], 0 for an end-to-end header. `as_str` of a standard
/// header is a table lookup; the match compiles to a length switch and a compare.
fn hop_by_hop_bit(name: &str) -> u8 {
    match name {
        "connection" => CONNECTION_BIT,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "te" => 1 << 3,
        "trailer" => 1 << 4,
        "transfer-encoding" => 1 << 5,
        "upgrade" => 1 << 6,
        _ => 0,
    }
}

/// Removes every header named in a `Connection` line, without allocating: each line is cloned (a reference count,
/// or a pointer copy for static values) so the map can be changed while the line is read, and names are looked up
/// as `&str`, which `http` lower-cases on the stack.
fn strip_connection_options(headers: &mut HeaderMap) {
    let mut index = 0;
    // Re-fetch by index each time: the loop mutates the map. `Connection: connection` removes the remaining lines,
    // which simply ends the loop.
    while let Some(line) = headers
        .get_all(header::CONNECTION)
        .iter()
        .nth(index)
        .cloned()
    {
        for option in line.as_bytes().split(|&b| b == b',') {
            let option = trim_ows(option);
            // Not a valid name (empty, not UTF-8, bad characters): nothing can carry it, nothing to remove.
            let Ok(name) = std::str::from_utf8(option) else {
                continue;
            };
            // The fixed names (`keep-alive`, most often) are removed by the caller when present; skip the lookup.
            if !name.is_empty() && !is_fixed_hop_by_hop(name) {
                headers.remove(name);
            }
        }
        index += 1;
    }
}

/// True for a name in [`HOP_BY_HOP`], in any case, without allocating.
fn is_fixed_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|fixed| fixed.as_str().eq_ignore_ascii_case(name))
}

/// Whether a request asks to switch to WebSocket (RFC 6455 §4.1): `Connection` has the `upgrade` option and
/// `Upgrade` names `websocket` (tokens compared without regard to case).
pub(crate) fn asks_for_websocket(headers: &HeaderMap) -> bool {
    let has = |name, token: &[u8]| {
        headers
            .get_all(name)
            .iter()
            .any(|line| tokens(line.as_bytes()).any(|t| t.eq_ignore_ascii_case(token)))
    };
    has(header::CONNECTION, b"upgrade") && has(header::UPGRADE, b"websocket")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn strips_fixed_hop_by_hop_headers_and_keeps_end_to_end_ones() {
        let mut headers = map(&[
            ("host", "example.com"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("content-type", "text/plain"),
            ("cookie", "a=b"),
            ("cookie", "c=d"),
        ]);
        strip_hop_by_hop(&mut headers);
        let mut names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "cookie", "host"]);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 2);
    }

    #[test]
    fn strips_headers_named_in_connection_case_insensitively() {
        let mut headers = map(&[
            ("connection", "close, X-Foo"),
            ("connection", " x-BAR ,,\tX-Baz\t"),
            ("x-foo", "1"),
            ("x-foo", "2"),
            ("x-bar", "3"),
            ("x-baz", "4"),
            ("x-kept", "5"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(
            headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-kept"]
        );
    }

    #[test]
    fn connection_naming_odd_things_does_not_panic() {
        let mut headers = map(&[
            ("connection", "connection, keep-alive"),
            ("connection", "x-gone"),
            ("x-gone", "1"),
            ("keep-alive", "timeout=5"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key("keep-alive"));
        assert!(headers.contains_key(header::ACCEPT));

        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"bad name, \xff, close").unwrap(),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn fast_path_leaves_a_clean_map_alone() {
        let original = map(&[
            ("host", "example.com"),
            ("accept", "*/*"),
            ("x-connection", "not hop-by-hop"),
        ]);
        let mut headers = original.clone();
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, original);
    }
}
