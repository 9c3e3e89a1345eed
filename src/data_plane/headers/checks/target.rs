//! The request target and where it points: the target's form (RFC 9112 §3.2), `Host` (RFC 9112 §3.2, RFC 9110
//! §7.2) and, for HTTP/2, `:authority` against `host` (RFC 9113 §8.3.1). A request whose destination an instance
//! could read differently from elbe (two hosts, a host that is not one, a target that is no HTTP URI) is refused.

use http::header;
use http::{HeaderMap, Method, Uri};

use super::Rejection;
use crate::http1::fields::split_host_port;

/// The length of the request target as it was on the request line, computed without formatting the URI.
pub(super) fn len(uri: &Uri, is_http1: bool) -> usize {
    let path_and_query = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    match (is_http1, uri.scheme_str(), uri.authority()) {
        (true, Some(scheme), Some(authority)) => {
            scheme.len() + "://".len() + authority.as_str().len() + path_and_query
        }
        _ => path_and_query,
    }
}

/// Asterisk-form only with OPTIONS; no authority-form (only CONNECT uses it, and CONNECT is refused); absolute-form
/// only for http and https; no userinfo anywhere (RFC 9110 §4.2.4: a sender MUST NOT generate it).
pub(super) fn check_form(method: &Method, uri: &Uri, is_http1: bool) -> Result<(), Rejection> {
    if uri.path() == "*" && uri.authority().is_none() && method != Method::OPTIONS {
        return Err(Rejection::BadRequest(
            "asterisk-form with a method other than OPTIONS",
        ));
    }
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(Rejection::BadRequest("authority-form target"));
    }
    if let Some(scheme) = uri.scheme_str() {
        let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        if !http {
            return Err(Rejection::BadRequest(
                "absolute-form target that is not http or https",
            ));
        }
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(Rejection::BadRequest("userinfo in the target's authority"));
    }
    if !is_http1 && uri.authority().is_some_and(|a| a.host().is_empty()) {
        return Err(Rejection::BadRequest("empty :authority"));
    }
    // `Authority::port_u16` is `None` for a port that is not a number, which would then compare equal to a Host
    // without one: the authority itself must be a `host[:port]` (found by the `check_request` fuzz target).
    if uri
        .authority()
        .is_some_and(|a| !is_host_port(a.as_str().as_bytes()))
    {
        return Err(Rejection::BadRequest(
            "invalid authority in the request target",
        ));
    }
    Ok(())
}

/// HTTP/1.x: exactly one `Host` on HTTP/1.1 (at most one on HTTP/1.0, which ELB fills in), a valid `host[:port]`,
/// agreeing with an absolute-form target.
pub(super) fn check_host(uri: &Uri, headers: &HeaderMap, http11: bool) -> Result<(), Rejection> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::BadRequest("more than one Host"));
    }
    let Some(host) = host else {
        if http11 {
            return Err(Rejection::BadRequest("HTTP/1.1 request without Host"));
        }
        return Ok(());
    };
    if !is_host_port(host.as_bytes()) {
        return Err(Rejection::BadRequest("Host is not host[:port]"));
    }
    match uri.authority() {
        Some(authority) if !agrees(uri, authority, host.as_bytes()) => Err(Rejection::BadRequest(
            "absolute-form target disagrees with Host",
        )),
        _ => Ok(()),
    }
}

/// HTTP/2: a `host` field, when present, is a valid `host[:port]` and names what `:authority` names.
pub(super) fn check_http2_host(uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return Ok(());
    };
    if hosts.next().is_some() {
        return Err(Rejection::BadRequest("more than one host"));
    }
    if !is_host_port(host.as_bytes()) {
        return Err(Rejection::BadRequest("host is not host[:port]"));
    }
    match uri.authority() {
        Some(authority) if !agrees(uri, authority, host.as_bytes()) => {
            Err(Rejection::BadRequest(":authority and host disagree"))
        }
        _ => Ok(()),
    }
}

/// Whether `host` names the same host and port as `authority` (case-insensitive; a missing port is the scheme's
/// default).
fn agrees(uri: &Uri, authority: &http::uri::Authority, host: &[u8]) -> bool {
    let default_port = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    };
    let target_port = authority.port_u16().or(default_port);
    match split_host_port(host) {
        Some((name, port)) => {
            name.eq_ignore_ascii_case(authority.host().as_bytes())
                && port.or(default_port) == target_port
        }
        None => false,
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a non-empty reg-name (unreserved, pct-encoded and
/// sub-delims characters), an IPv4 address, or an IPv6 literal in brackets; then an optional decimal port.
fn is_host_port(value: &[u8]) -> bool {
    let Some((host, _)) = split_host_port(value) else {
        return false;
    };
    match host {
        [] => false,
        [b'[', literal @ .., b']'] => {
            !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        name => name.iter().all(|&b| REG_NAME[usize::from(b)]),
    }
}

/// The characters of a reg-name (RFC 3986 §3.2.2: unreserved, pct-encoded, sub-delims), as a table: every request
/// checks its Host, byte by byte.
static REG_NAME: [bool; 256] = reg_name_table();

const fn reg_name_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_are_host_and_optional_port() {
        for good in [
            &b"example.com"[..],
            b"example.com:8080",
            b"127.0.0.1",
            b"[::1]:443",
            b"a-b_c~d",
            b"x:",
        ] {
            assert!(is_host_port(good), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b":80",
            b"exa mple",
            b"a/b",
            b"a?b",
            b"a#b",
            b"[]",
            b"[::1",
            b"[zz]",
            b"a:b",
            b"a\"b",
        ] {
            assert!(!is_host_port(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
