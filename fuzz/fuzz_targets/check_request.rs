//! The Check layer's request checks (`data_plane::headers::check_request`), on request heads as clients write
//! them (`fuzz/check_request.dict` gives the fuzzer the field names and values the checks read).
//!
//! Input: byte 0 picks `max_uri_bytes` (0 to 1,020), byte 1 the version (mostly the request line's; sometimes
//! HTTP/2 or HTTP/0.9), the rest is the head.
//!
//! Invariants (each written out here, independently of elbe's code):
//! - an HTTP/1 head that passes has at most one Host line, never both Content-Length and Transfer-Encoding, at
//!   most one Content-Length and it is a plain decimal that fits 64 bits, a Transfer-Encoding that is exactly one
//!   `chunked`, and an absolute-form target whose port is a number and that names the Host line's host and port;
//! - what passes is not CONNECT, has a method of at most 127 bytes and a target within the limit;
//! - a head that passes fails once a second Host line, or the other framing field, is added;
//! - HTTP/2 heads are judged on method and target only: their fields change nothing.
#![no_main]

use elbe::fuzz_support::{check_request, CheckVerdict};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [limit, version_byte, head @ ..] = data else {
        return;
    };
    let Some((method, uri, version, headers)) = build(head, *version_byte) else {
        return;
    };
    let max_uri_bytes = usize::from(*limit) * 4;
    let verdict = check_request(&method, &uri, version, &headers, max_uri_bytes);
    let http1 = version != Version::HTTP_2 && version != Version::HTTP_3;
    if !http1 {
        // An HTTP/2 head's fields can only add refusals (connection-specific fields, a `host` that disagrees).
        let bare = check_request(&method, &uri, version, &HeaderMap::new(), max_uri_bytes);
        if verdict == CheckVerdict::Pass {
            assert_eq!(bare, CheckVerdict::Pass, "an HTTP/2 head passes only with its fields");
        }
    }
    if verdict != CheckVerdict::Pass {
        if let CheckVerdict::BadRequest(reason) = verdict {
            assert!(!reason.is_empty());
        }
        return;
    }
    assert_ne!(method, Method::CONNECT);
    assert!(method.as_str().len() <= 127);
    let path_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    assert!(path_len <= max_uri_bytes, "target of {path_len} bytes over {max_uri_bytes}");
    if !http1 {
        return;
    }
    assert!(headers.get_all(HOST).iter().count() <= 1, "two Host lines pass");
    let lengths: Vec<&HeaderValue> = headers.get_all(CONTENT_LENGTH).iter().collect();
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    assert!(lengths.is_empty() || !has_te, "Content-Length and Transfer-Encoding pass");
    assert!(lengths.len() <= 1, "two Content-Length lines pass");
    if let Some(length) = lengths.first() {
        let digits = length.as_bytes();
        assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit), "Content-Length {length:?}");
        assert!(length.to_str().is_ok_and(|text| text.parse::<u64>().is_ok()), "Content-Length {length:?}");
    }
    if has_te {
        let codings: Vec<String> = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|line| line.as_bytes().split(|&b| b == b','))
            .map(|coding| String::from_utf8_lossy(coding.trim_ascii()).to_ascii_lowercase())
            .filter(|coding| !coding.is_empty())
            .collect();
        assert_eq!(codings, ["chunked"], "Transfer-Encoding passes");
    }
    if let (Some(authority), Some(host)) = (uri.authority(), headers.get(HOST)) {
        assert!(host_agrees(&uri, authority, host), "{uri} passes with Host {host:?}");
    }

    let mut two_hosts = headers.clone();
    two_hosts.append(HOST, HeaderValue::from_static("example.com"));
    two_hosts.append(HOST, HeaderValue::from_static("example.com"));
    assert!(matches!(
        check_request(&method, &uri, version, &two_hosts, max_uri_bytes),
        CheckVerdict::BadRequest(_)
    ));
    let mut both = headers.clone();
    if has_te {
        both.append(CONTENT_LENGTH, HeaderValue::from_static("0"));
    } else {
        both.append(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    if has_te || !lengths.is_empty() {
        assert!(matches!(
            check_request(&method, &uri, version, &both, max_uri_bytes),
            CheckVerdict::BadRequest(_)
        ));
    }
});

/// The head as a client sent it, read with httparse (not elbe's server, so the Check layer sees heads that
/// server would also refuse); `version_byte`'s low bits make it HTTP/2 or HTTP/0.9 sometimes, as hyper's HTTP/2
/// server and odd clients hand the Check layer.
fn build(head: &[u8], version_byte: u8) -> Option<(Method, Uri, Version, HeaderMap)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut slots);
    request.parse(head).ok()?;
    let method = Method::from_bytes(request.method?.as_bytes()).ok()?;
    let uri = Uri::try_from(request.path?).ok()?;
    let version = match (version_byte % 8, request.version?) {
        (0, _) => Version::HTTP_2,
        (1, _) => Version::HTTP_09,
        (_, 0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::new();
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        headers.append(name, value);
    }
    Some((method, uri, version, headers))
}

/// An absolute-form target's `host[:port]` and the Host line name the same host (case-insensitively) and port
/// (a missing one being the scheme's default), and the target's port, if written, is a number.
fn host_agrees(uri: &Uri, authority: &http::uri::Authority, host: &HeaderValue) -> bool {
    let default = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    };
    let Some(target_port) = port_of(authority.as_str().rsplit('@').next().unwrap_or_default()) else {
        return false;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    if host.contains('@') {
        return false;
    }
    if host.is_empty() {
        return authority.host().is_empty() && target_port.or(default) == default;
    }
    let Ok(line) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    line.host().eq_ignore_ascii_case(authority.host()) && line.port_u16().or(default) == target_port.or(default)
}

/// The port written after `host`, if any (`Some(None)`: none, or empty); `None` when it is not a number.
fn port_of(hostport: &str) -> Option<Option<u16>> {
    let after_host = match hostport.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => hostport.find(':').map_or("", |colon| &hostport[colon..]),
    };
    match after_host.strip_prefix(':') {
        None | Some("") => Some(None),
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => port.parse().ok().map(Some),
        Some(_) => None,
    }
}
