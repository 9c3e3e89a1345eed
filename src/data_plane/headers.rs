//! Request and response headers on HTTP/HTTPS listeners: what elbe adds, what it strips, what it refuses.
//!
//! * [`set_forwarded`] writes ELB's `X-Forwarded-*` headers (ELB-SPEC §1.2): the peer address is *appended* to
//!   `X-Forwarded-For` with a comma and a space; `X-Forwarded-Proto` and `X-Forwarded-Port` are *replaced*.
//! * [`strip_hop_by_hop`] removes the headers that describe one connection, not the message (RFC 9110 §7.6.1), on
//!   the way to the instance and on the way back to the client.
//! * [`check_request`] refuses what ELB refuses (ELB-SPEC §1.1 and §9: `CONNECT`, over-long methods) and what would make
//!   the framing ambiguous between elbe and an instance (request smuggling).
//! * [`trusted_client_ip`] is for the instances: it reads `X-Forwarded-For` the only safe way, from the right.
//!
//! Everything here is on the request path, so it takes no lock and allocates at most once per call (the new
//! `X-Forwarded-For` value); IP addresses are formatted into a stack buffer. These are plain functions over `http`
//! types so they are tested without sockets.
//!
//! The proxy calls [`strip_hop_by_hop`] *before* [`set_forwarded`]: otherwise a client sending
//! `Connection: X-Forwarded-For` would make elbe delete the very entry it vouches for.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, Entry, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

/// `X-Forwarded-For`: the chain of client addresses, right-most added last.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the front-end listener's protocol, `http` or `https`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Port`: the front-end listener's port.
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// ELB answers 405 to a method longer than this (ELB-SPEC §1.1).
const MAX_METHOD_BYTES: usize = 127;

// ---------------------------------------------------------------------------------------------------------------------
// X-Forwarded-*
// ---------------------------------------------------------------------------------------------------------------------

/// The value of `X-Forwarded-Proto`: the front-end listener's protocol in lower case. The listener builds it once and
/// every request clones it (a static value: the clone copies a pointer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedProto(HeaderValue);

impl ForwardedProto {
    /// `http`, for HTTP listeners.
    pub const fn http() -> Self {
        Self(HeaderValue::from_static("http"))
    }

    /// `https`, for HTTPS listeners.
    pub const fn https() -> Self {
        Self(HeaderValue::from_static("https"))
    }

    /// The header value as sent to the instance.
    pub fn as_header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// The value of `X-Forwarded-Port` for a listener on `port`: built once per listener, then passed to
/// [`set_forwarded`] for every request.
pub fn forwarded_port(port: u16) -> HeaderValue {
    HeaderValue::from(port)
}

/// ELB-SPEC §1.2: append `", <peer>"` to `X-Forwarded-For` (comma + space; several `X-Forwarded-For` lines from the
/// client are first joined in order with `", "`), or set it to `"<peer>"` when absent; *replace*
/// `X-Forwarded-Proto` and `X-Forwarded-Port`.
///
/// IPv6 peers are written without brackets; an IPv4-mapped IPv6 peer (`::ffff:1.2.3.4`, what a dual-stack socket
/// reports for an IPv4 client) is written as `1.2.3.4`. Empty `X-Forwarded-For` lines are ignored, so a client sending
/// an empty header gets `"<peer>"`, not `", <peer>"`.
///
/// Call it after [`strip_hop_by_hop`] (see the module documentation).
///
/// ```
/// use elbe::headers::{forwarded_port, set_forwarded, ForwardedProto};
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "10.1.1.1".parse().unwrap());
/// headers.insert("x-forwarded-proto", "https".parse().unwrap());
/// set_forwarded(&mut headers, "203.0.113.7".parse().unwrap(), &ForwardedProto::http(), &forwarded_port(80));
/// assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 203.0.113.7");
/// assert_eq!(headers["x-forwarded-proto"], "http");
/// assert_eq!(headers["x-forwarded-port"], "80");
/// ```
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &ForwardedProto,
    port: &HeaderValue,
) {
    set_forwarded_for(headers, &peer_value(peer), proto, port);
}

/// A peer address as the header value elbe appends: made once per connection by callers that forward many
/// requests for one peer.
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    IpText::new(peer).to_header_value()
}

/// [`set_forwarded`] with the peer's address already made a header value ([`peer_value`]).
pub fn set_forwarded_for(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    proto: &ForwardedProto,
    port: &HeaderValue,
) {
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            entry.insert(peer.clone());
        }
        Entry::Occupied(mut entry) => {
            // Size the new value exactly so the Vec becomes the HeaderValue's Bytes without a copy or a realloc.
            let mut len = peer.as_bytes().len();
            for line in entry.iter() {
                let line = trim_ows(line.as_bytes());
                if !line.is_empty() {
                    len += line.len() + 2;
                }
            }
            let mut joined = Vec::with_capacity(len);
            for line in entry.iter() {
                let line = trim_ows(line.as_bytes());
                if !line.is_empty() {
                    joined.extend_from_slice(line);
                    joined.extend_from_slice(b", ");
                }
            }
            joined.extend_from_slice(peer.as_bytes());
            // The client's lines were valid header values and we only added ", " and an address, so this cannot fail;
            // if it ever did, the address elbe vouches for still goes out (dropping the client's part of the chain).
            let value = HeaderValue::from_maybe_shared(Bytes::from(joined))
                .unwrap_or_else(|_| peer.clone());
            // `insert` replaces every line with the one joined value.
            entry.insert(value);
        }
    }
    headers.insert(X_FORWARDED_PROTO, proto.0.clone());
    headers.insert(X_FORWARDED_PORT, port.clone());
}

/// An IP address as text in a stack buffer: the longest IPv6 text is 45 bytes (`ffff:…:255.255.255.255`).
struct IpText {
    buf: [u8; 64],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; 64],
            len: 0,
        };
        // `to_canonical` turns ::ffff:a.b.c.d into a.b.c.d.
        match ip.to_canonical() {
            // By hand: std's Display goes through the formatting machinery four times (~60 ns against ~5 ns).
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            // Ipv6Addr's Display writes RFC 5952 text, no brackets and no zone. Writing into 64 bytes cannot fail for
            // any address, so the result carries no information.
            IpAddr::V6(v6) => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    /// At most 15 bytes for IPv4, well within the buffer.
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn to_header_value(&self) -> HeaderValue {
        // Digits, dots, colons and hex letters are always a valid header value.
        HeaderValue::from_bytes(self.as_bytes()).unwrap_or(HeaderValue::from_static(""))
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// For instances written in Rust: the client IP to trust, given how many proxies you trust (1 = only the load
/// balancer directly in front of you, 2 = elbe behind one more proxy of yours, ...).
///
/// Reads `X-Forwarded-For` right to left (across all its lines, the last line holding the right-most entries),
/// skips `trusted_hops - 1` entries (those your other proxies appended), and returns the next one. An IPv4-mapped
/// IPv6 entry is returned as IPv4.
///
/// Returns `None` when the header is absent, when `trusted_hops` is 0 (you trust no proxy, so the client is the
/// socket peer, not anything in a header), when there are fewer entries than needed, or when the entry found is not a
/// bare IP address (no port, no brackets).
///
/// # Why never the left-most entry
///
/// Anyone can send `X-Forwarded-For`; elbe appends to it rather than replacing it (as ELB does). So only the entries
/// your own proxies appended are facts. Everything to their left is whatever the client typed:
///
/// ```
/// use elbe::headers::{forwarded_port, set_forwarded, trusted_client_ip, ForwardedProto};
/// use http::HeaderMap;
/// use std::net::IpAddr;
///
/// // An attacker at 203.0.113.7 claims to be an internal address.
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
///
/// // elbe appends the address it saw on the socket.
/// let attacker: IpAddr = "203.0.113.7".parse().unwrap();
/// set_forwarded(&mut headers, attacker, &ForwardedProto::https(), &forwarded_port(443));
/// assert_eq!(headers["x-forwarded-for"], "127.0.0.1, 203.0.113.7");
///
/// // The left-most entry is the lie; trusting it would let the attacker past an "internal only" check.
/// let left_most = headers["x-forwarded-for"].to_str().unwrap().split(',').next().unwrap();
/// assert_eq!(left_most, "127.0.0.1");
///
/// // With elbe as the only proxy in front of the instance, the truth is one entry from the right.
/// assert_eq!(trusted_client_ip(&headers, 1), Some(attacker));
/// ```
pub fn trusted_client_ip(headers: &HeaderMap, trusted_hops: usize) -> Option<IpAddr> {
    let skip = trusted_hops.checked_sub(1)?;
    let entry = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
        .nth(skip)?;
    let ip: IpAddr = std::str::from_utf8(trim_ows(entry)).ok()?.parse().ok()?;
    Some(ip.to_canonical())
}

// ---------------------------------------------------------------------------------------------------------------------
// Hop-by-hop headers
// ---------------------------------------------------------------------------------------------------------------------

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
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// Whether a header name, in any case, is one of the fixed hop-by-hop headers.
pub fn is_hop_by_hop_name(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|fixed| name.eq_ignore_ascii_case(fixed.as_str().as_bytes()))
}

/// Whether a (lower-case) header name is one of the fixed hop-by-hop headers.
pub fn is_hop_by_hop(name: &str) -> bool {
    hop_by_hop_bit(name) != 0
}

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

// ---------------------------------------------------------------------------------------------------------------------
// Refusing requests
// ---------------------------------------------------------------------------------------------------------------------

/// Why elbe refuses a request before it reaches an instance. The proxy maps each to ELB's response (ELB-SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400 and close: ambiguous framing or malformed request.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// 405: method longer than 127 characters (ELB-SPEC §1.1).
    #[error("method longer than 127 characters")]
    MethodNotAllowed,
    /// 414: URI longer than the limit.
    #[error("request target longer than the limit")]
    UriTooLong,
}

/// Checks one request head, in this order:
///
/// 1. `CONNECT` -> [`Rejection::BadRequest`] (ELB-SPEC §1.1);
/// 2. a method longer than 127 bytes -> [`Rejection::MethodNotAllowed`];
/// 3. a request target longer than `max_uri_bytes` -> [`Rejection::UriTooLong`]. The length is that of the target as
///    received: path and query for origin-form (and for HTTP/2, whose `:path` is that), the whole URI for
///    absolute-form;
///
/// then, for HTTP/1.x only (HTTP/2 frames bodies itself and has no `Host` line), each -> [`Rejection::BadRequest`]:
///
/// 4. both `Content-Length` and `Transfer-Encoding`;
/// 5. more than one `Content-Length` line, or one that is not a plain decimal fitting in 64 bits;
/// 6. a `Transfer-Encoding` (all lines, comma-separated, case-insensitive, empty elements ignored) that is anything
///    but exactly one `chunked`: other codings are refused and so is `chunked, chunked`;
/// 7. more than one `Host` line, or an absolute-form target whose `host[:port]` differs from `Host` (case-insensitive;
///    a missing port equals the scheme's default port). A missing `Host` is left to the proxy (ELB-SPEC §1.1 fills
///    it in for HTTP/1.0).
///
/// elbe's HTTP/1 server ([`crate::data_plane::front_end::http1`]) builds the header map as received, repairing nothing, so these
/// checks see the framing the client actually sent; the server gives a request that fails them no body and closes
/// the connection after the 400.
pub fn check_request(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    max_uri_bytes: usize,
) -> Result<(), Rejection> {
    if method == Method::CONNECT {
        return Err(Rejection::BadRequest("CONNECT is not supported"));
    }
    if method.as_str().len() > MAX_METHOD_BYTES {
        return Err(Rejection::MethodNotAllowed);
    }
    let is_http1 = matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    );
    if target_len(uri, is_http1) > max_uri_bytes {
        return Err(Rejection::UriTooLong);
    }
    if !is_http1 {
        return Ok(());
    }
    check_framing(headers)?;
    check_host(uri, headers)
}

/// The length of the request target as it was on the request line, computed without formatting the URI.
fn target_len(uri: &Uri, is_http1: bool) -> usize {
    let path_and_query = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    match (is_http1, uri.scheme_str(), uri.authority()) {
        (true, Some(scheme), Some(authority)) => {
            scheme.len() + "://".len() + authority.as_str().len() + path_and_query
        }
        _ => path_and_query,
    }
}

/// Checks 4 to 6 of [`check_request`]: a body framed one way only, by one plain `Content-Length` or by exactly
/// one `chunked`. elbe's HTTP/1 server frames request bodies only when this passes.
pub fn check_framing(headers: &HeaderMap) -> Result<(), Rejection> {
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let content_length = lengths.next();
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    if content_length.is_some() && has_te {
        return Err(Rejection::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if let Some(length) = content_length {
        if lengths.next().is_some() {
            return Err(Rejection::BadRequest("more than one Content-Length"));
        }
        if !is_plain_decimal_u64(length.as_bytes()) {
            return Err(Rejection::BadRequest(
                "Content-Length is not a decimal number",
            ));
        }
    }
    if has_te && !is_chunked_once(headers) {
        return Err(Rejection::BadRequest(
            "Transfer-Encoding other than chunked",
        ));
    }
    Ok(())
}

/// `1*DIGIT` that fits in a u64; no sign, no spaces, no list.
fn is_plain_decimal_u64(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .try_fold(0u64, |n, &b| {
                if b.is_ascii_digit() {
                    n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
                } else {
                    None
                }
            })
            .is_some()
}

/// True when the `Transfer-Encoding` lines, taken together, name exactly one coding and it is `chunked`.
fn is_chunked_once(headers: &HeaderMap) -> bool {
    let mut chunked = 0usize;
    for line in headers.get_all(header::TRANSFER_ENCODING) {
        for coding in line.as_bytes().split(|&b| b == b',') {
            let coding = trim_ows(coding);
            if coding.is_empty() {
                continue;
            }
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return false;
            }
            chunked += 1;
        }
    }
    chunked == 1
}

fn check_host(uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::BadRequest("more than one Host"));
    }
    let (Some(authority), Some(host)) = (uri.authority(), host) else {
        return Ok(());
    };
    let default_port = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    };
    let target_port = authority.port_u16().or(default_port);
    let agrees = match split_host_port(host.as_bytes()) {
        Some((name, port)) => {
            name.eq_ignore_ascii_case(authority.host().as_bytes())
                && port.or(default_port) == target_port
        }
        None => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(Rejection::BadRequest(
            "absolute-form target disagrees with Host",
        ))
    }
}

/// Splits a `Host` value into host and port (`None` when absent or empty). An IPv6 literal keeps its brackets, as
/// `Authority::host` does. `None` overall when the port is not a number.
fn split_host_port(value: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let split_at = if value.first() == Some(&b'[') {
        let close = value.iter().position(|&b| b == b']')?;
        match value.get(close + 1) {
            None => return Some((value, None)),
            Some(b':') => close + 1,
            Some(_) => return None,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            None => return Some((value, None)),
            Some(colon) => colon,
        }
    };
    let (name, port) = (&value[..split_at], &value[split_at + 1..]);
    if port.is_empty() {
        return Some((name, None));
    }
    let port = std::str::from_utf8(port).ok()?;
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((name, Some(port.parse().ok()?)))
}

/// True for a name in [`HOP_BY_HOP`], in any case, without allocating.
fn is_fixed_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|fixed| fixed.as_str().eq_ignore_ascii_case(name))
}

/// Trims optional whitespace (spaces and tabs, RFC 9110 §5.6.3) from both ends.
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "203.0.113.7";

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn forwarded(mut headers: HeaderMap, peer: &str) -> HeaderMap {
        set_forwarded(
            &mut headers,
            peer.parse().unwrap(),
            &ForwardedProto::https(),
            &forwarded_port(443),
        );
        headers
    }

    fn xff(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    // --- set_forwarded ---

    #[test]
    fn xff_absent_is_set_to_the_peer() {
        let headers = forwarded(HeaderMap::new(), PEER);
        assert_eq!(xff(&headers), ["203.0.113.7"]);
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers[X_FORWARDED_PORT], "443");
    }

    #[test]
    fn xff_present_gets_comma_space_peer() {
        let headers = forwarded(map(&[("x-forwarded-for", "10.1.1.1")]), PEER);
        assert_eq!(xff(&headers), ["10.1.1.1, 203.0.113.7"]);
    }

    #[test]
    fn xff_lines_are_joined_in_order_into_one() {
        let headers = forwarded(
            map(&[("x-forwarded-for", "a"), ("x-forwarded-for", "b, c")]),
            PEER,
        );
        assert_eq!(xff(&headers), ["a, b, c, 203.0.113.7"]);
    }

    #[test]
    fn xff_empty_lines_are_ignored() {
        let headers = forwarded(map(&[("x-forwarded-for", "")]), PEER);
        assert_eq!(xff(&headers), ["203.0.113.7"]);
        let headers = forwarded(
            map(&[("x-forwarded-for", ""), ("x-forwarded-for", "10.0.0.1")]),
            PEER,
        );
        assert_eq!(xff(&headers), ["10.0.0.1, 203.0.113.7"]);
    }

    #[test]
    fn xff_ipv6_peer_has_no_brackets() {
        let headers = forwarded(map(&[("x-forwarded-for", "10.1.1.1")]), "2001:db8::7");
        assert_eq!(xff(&headers), ["10.1.1.1, 2001:db8::7"]);
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        assert_eq!(xff(&forwarded(HeaderMap::new(), longest)), [longest]);
    }

    #[test]
    fn ipv4_text_matches_std_for_every_octet() {
        for n in 0..=255u8 {
            for ip in [[n, 0, 0, 0], [1, n, 10, 100], [255, 99, n, 9], [0, 0, 0, n]] {
                let ip = IpAddr::from(ip);
                assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn xff_ipv4_mapped_peer_is_written_as_ipv4() {
        let headers = forwarded(HeaderMap::new(), "::ffff:203.0.113.7");
        assert_eq!(xff(&headers), ["203.0.113.7"]);
    }

    #[test]
    fn proto_and_port_are_replaced_even_when_sent_several_times() {
        let headers = forwarded(
            map(&[
                ("x-forwarded-proto", "http"),
                ("x-forwarded-proto", "gopher"),
                ("x-forwarded-port", "80"),
                ("x-forwarded-port", "8080"),
            ]),
            PEER,
        );
        let all = |name| headers.get_all(name).iter().cloned().collect::<Vec<_>>();
        assert_eq!(all(X_FORWARDED_PROTO), ["https"]);
        assert_eq!(all(X_FORWARDED_PORT), ["443"]);

        let mut headers = headers;
        set_forwarded(
            &mut headers,
            PEER.parse().unwrap(),
            &ForwardedProto::http(),
            &forwarded_port(8080),
        );
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_PORT], "8080");
    }

    #[test]
    fn other_headers_are_untouched_by_set_forwarded() {
        let headers = forwarded(map(&[("host", "example.com"), ("accept", "*/*")]), PEER);
        assert_eq!(headers[header::HOST], "example.com");
        assert_eq!(headers[header::ACCEPT], "*/*");
        assert_eq!(headers.len(), 5);
    }

    // --- trusted_client_ip ---

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn trusted_ip_one_hop_is_the_right_most_entry() {
        let headers = map(&[("x-forwarded-for", "10.1.1.1, 192.0.2.9, 203.0.113.7")]);
        assert_eq!(trusted_client_ip(&headers, 1), ip("203.0.113.7"));
    }

    #[test]
    fn trusted_ip_two_hops_skips_one_entry_across_lines() {
        let headers = map(&[
            ("x-forwarded-for", "10.1.1.1, 192.0.2.9"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(trusted_client_ip(&headers, 2), ip("192.0.2.9"));
        assert_eq!(trusted_client_ip(&headers, 3), ip("10.1.1.1"));
    }

    #[test]
    fn trusted_ip_too_many_hops_absent_or_zero_is_none() {
        let headers = map(&[("x-forwarded-for", "192.0.2.9, 203.0.113.7")]);
        assert_eq!(trusted_client_ip(&headers, 3), None);
        assert_eq!(trusted_client_ip(&headers, 0), None);
        assert_eq!(trusted_client_ip(&HeaderMap::new(), 1), None);
    }

    #[test]
    fn trusted_ip_garbage_entry_is_none() {
        let headers = map(&[("x-forwarded-for", "unknown, 203.0.113.7")]);
        assert_eq!(trusted_client_ip(&headers, 2), None);
        let headers = map(&[("x-forwarded-for", "203.0.113.7:5555")]);
        assert_eq!(trusted_client_ip(&headers, 1), None);
        let headers = map(&[("x-forwarded-for", "[2001:db8::1]")]);
        assert_eq!(trusted_client_ip(&headers, 1), None);
        let headers = map(&[("x-forwarded-for", "192.0.2.9,,203.0.113.7")]);
        assert_eq!(trusted_client_ip(&headers, 2), None);
    }

    #[test]
    fn trusted_ip_ignores_a_spoofed_left_most_entry() {
        let headers = forwarded(map(&[("x-forwarded-for", "127.0.0.1")]), PEER);
        assert_eq!(trusted_client_ip(&headers, 1), ip(PEER));
    }

    #[test]
    fn trusted_ip_ipv6_and_mapped_entries() {
        let headers = map(&[("x-forwarded-for", "2001:db8::1,::ffff:192.0.2.9")]);
        assert_eq!(trusted_client_ip(&headers, 1), ip("192.0.2.9"));
        assert_eq!(trusted_client_ip(&headers, 2), ip("2001:db8::1"));
    }

    // --- strip_hop_by_hop ---

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

    // --- check_request ---

    const MAX_URI: usize = 64;

    fn check(
        method: &str,
        uri: &str,
        version: Version,
        pairs: &[(&'static str, &'static str)],
    ) -> Result<(), Rejection> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        check_request(
            &method,
            &uri.parse().unwrap(),
            version,
            &map(pairs),
            MAX_URI,
        )
    }

    fn h1(pairs: &[(&'static str, &'static str)]) -> Result<(), Rejection> {
        check("POST", "/upload", Version::HTTP_11, pairs)
    }

    fn is_bad(result: Result<(), Rejection>) -> bool {
        matches!(result, Err(Rejection::BadRequest(_)))
    }

    #[test]
    fn valid_requests_pass() {
        let host = ("host", "example.com");
        assert_eq!(check("GET", "/", Version::HTTP_11, &[host]), Ok(()));
        assert_eq!(check("GET", "*", Version::HTTP_11, &[host]), Ok(()));
        assert_eq!(check("GET", "/", Version::HTTP_10, &[]), Ok(()));
        assert_eq!(h1(&[host, ("transfer-encoding", "chunked")]), Ok(()));
        assert_eq!(h1(&[host, ("transfer-encoding", "Chunked")]), Ok(()));
        assert_eq!(h1(&[host, ("content-length", "0")]), Ok(()));
        assert_eq!(
            h1(&[host, ("content-length", "18446744073709551615")]),
            Ok(())
        );
        let extension = "X".repeat(127);
        assert_eq!(check(&extension, "/", Version::HTTP_11, &[host]), Ok(()));
    }

    #[test]
    fn absolute_form_matching_host_passes() {
        let get = |uri, host| check("GET", uri, Version::HTTP_11, &[("host", host)]);
        assert_eq!(get("http://example.com/a", "example.com"), Ok(()));
        assert_eq!(get("http://Example.COM/a", "example.com"), Ok(()));
        assert_eq!(get("http://example.com:80/a", "example.com"), Ok(()));
        assert_eq!(get("http://example.com/a", "example.com:80"), Ok(()));
        assert_eq!(get("https://example.com/a", "example.com:443"), Ok(()));
        assert_eq!(get("http://example.com:8080/a", "EXAMPLE.com:8080"), Ok(()));
        assert_eq!(
            get("http://[2001:db8::1]:8080/", "[2001:db8::1]:8080"),
            Ok(())
        );
        assert_eq!(get("http://[2001:db8::1]/", "[2001:db8::1]"), Ok(()));
        assert_eq!(get("http://example.com/", "example.com:"), Ok(()));
        assert_eq!(
            check("GET", "http://example.com/", Version::HTTP_11, &[]),
            Ok(())
        );
    }

    #[test]
    fn absolute_form_disagreeing_with_host_is_bad() {
        let get = |uri, host| check("GET", uri, Version::HTTP_11, &[("host", host)]);
        assert!(is_bad(get("http://example.com/", "evil.example")));
        assert!(is_bad(get("http://example.com/", "example.com:8080")));
        assert!(is_bad(get("http://example.com:8080/", "example.com")));
        assert!(is_bad(get("https://example.com/", "example.com:80")));
        assert!(is_bad(get("http://example.com/", "example.com:http")));
        assert!(is_bad(get("http://example.com/", "example.com:99999")));
        assert!(is_bad(get("http://[2001:db8::1]/", "[2001:db8::2]")));
        assert!(is_bad(get("http://[2001:db8::1]/", "[2001:db8::1]x")));
        assert!(is_bad(get("http://user@example.com/", "user@example.com")));
    }

    #[test]
    fn two_host_lines_are_bad() {
        assert!(is_bad(check(
            "GET",
            "/",
            Version::HTTP_11,
            &[("host", "a"), ("host", "a")]
        )));
    }

    #[test]
    fn connect_is_bad_request() {
        assert_eq!(
            check("CONNECT", "example.com:443", Version::HTTP_11, &[]),
            Err(Rejection::BadRequest("CONNECT is not supported"))
        );
        assert!(is_bad(check(
            "CONNECT",
            "example.com:443",
            Version::HTTP_2,
            &[]
        )));
    }

    #[test]
    fn long_method_is_405() {
        let method = "X".repeat(128);
        assert_eq!(
            check(&method, "/", Version::HTTP_11, &[]),
            Err(Rejection::MethodNotAllowed)
        );
        assert_eq!(
            check(&method, "/", Version::HTTP_2, &[]),
            Err(Rejection::MethodNotAllowed)
        );
    }

    #[test]
    fn long_uri_is_414_measured_as_received() {
        let path = format!("/{}", "a".repeat(MAX_URI - 1));
        assert_eq!(check("GET", &path, Version::HTTP_11, &[]), Ok(()));
        let path_query = format!("{path}?");
        assert_eq!(
            check("GET", &path_query, Version::HTTP_11, &[]),
            Err(Rejection::UriTooLong)
        );

        // absolute-form counts scheme and authority: "http://h" + path
        let absolute = format!("http://h/{}", "a".repeat(MAX_URI - "http://h/".len()));
        assert_eq!(
            check("GET", &absolute, Version::HTTP_11, &[("host", "h")]),
            Ok(())
        );
        let absolute = format!("{absolute}a");
        assert_eq!(
            check("GET", &absolute, Version::HTTP_11, &[("host", "h")]),
            Err(Rejection::UriTooLong)
        );

        // HTTP/2: hyper builds an absolute URI from :scheme/:authority/:path; only :path was the target.
        let h2 = format!("https://example.com{path}");
        assert_eq!(check("GET", &h2, Version::HTTP_2, &[]), Ok(()));
        assert_eq!(
            check("GET", &format!("{h2}?"), Version::HTTP_2, &[]),
            Err(Rejection::UriTooLong)
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_bad() {
        assert_eq!(
            h1(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Err(Rejection::BadRequest(
                "both Content-Length and Transfer-Encoding"
            ))
        );
    }

    #[test]
    fn bad_content_length_is_bad() {
        assert_eq!(
            h1(&[("content-length", "5"), ("content-length", "5")]),
            Err(Rejection::BadRequest("more than one Content-Length"))
        );
        for value in [
            "",
            "+5",
            "-1",
            "5 ",
            "0x10",
            "5, 5",
            "1.0",
            "18446744073709551616",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from_str(value).unwrap(),
            );
            assert_eq!(
                check_request(
                    &Method::POST,
                    &Uri::from_static("/"),
                    Version::HTTP_11,
                    &headers,
                    MAX_URI
                ),
                Err(Rejection::BadRequest(
                    "Content-Length is not a decimal number"
                )),
                "{value:?}"
            );
        }
    }

    #[test]
    fn transfer_encoding_other_than_one_chunked_is_bad() {
        let te = Err(Rejection::BadRequest(
            "Transfer-Encoding other than chunked",
        ));
        assert_eq!(h1(&[("transfer-encoding", "gzip")]), te);
        assert_eq!(h1(&[("transfer-encoding", "chunked, gzip")]), te);
        assert_eq!(h1(&[("transfer-encoding", "gzip, chunked")]), te);
        assert_eq!(
            h1(&[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked")
            ]),
            te
        );
        assert_eq!(
            h1(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "identity")
            ]),
            te
        );
        assert_eq!(h1(&[("transfer-encoding", "chunked, chunked")]), te);
        assert_eq!(h1(&[("transfer-encoding", "xchunked")]), te);
        assert_eq!(h1(&[("transfer-encoding", "")]), te);
        // Empty list elements are ignored (RFC 9110 §5.6.1).
        assert_eq!(h1(&[("transfer-encoding", " , chunked ,")]), Ok(()));
    }

    #[test]
    fn http2_skips_framing_and_host_checks() {
        let pairs = [
            ("content-length", "5"),
            ("transfer-encoding", "gzip"),
            ("host", "other"),
        ];
        assert_eq!(
            check("POST", "https://example.com/", Version::HTTP_2, &pairs),
            Ok(())
        );
        assert_eq!(
            check("GET", "https://example.com/", Version::HTTP_2, &[]),
            Ok(())
        );
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        let long_method = "X".repeat(128);
        let long_uri = format!("http://example.com/{}", "a".repeat(MAX_URI));
        let everything_wrong = [
            ("content-length", "5"),
            ("content-length", "x"),
            ("transfer-encoding", "gzip"),
            ("host", "other"),
        ];
        // CONNECT beats everything.
        assert_eq!(
            check("CONNECT", &long_uri, Version::HTTP_11, &everything_wrong),
            Err(Rejection::BadRequest("CONNECT is not supported"))
        );
        // Then the method's length.
        assert_eq!(
            check(&long_method, &long_uri, Version::HTTP_11, &everything_wrong),
            Err(Rejection::MethodNotAllowed)
        );
        // Then the URI's length.
        assert_eq!(
            check("POST", &long_uri, Version::HTTP_11, &everything_wrong),
            Err(Rejection::UriTooLong)
        );
        // Then CL + TE.
        let uri = "http://example.com/";
        assert_eq!(
            check("POST", uri, Version::HTTP_11, &everything_wrong),
            Err(Rejection::BadRequest(
                "both Content-Length and Transfer-Encoding"
            ))
        );
        // Then Content-Length itself.
        assert_eq!(
            check("POST", uri, Version::HTTP_11, &everything_wrong[1..2]),
            Err(Rejection::BadRequest(
                "Content-Length is not a decimal number"
            ))
        );
        // Then Transfer-Encoding.
        assert_eq!(
            check("POST", uri, Version::HTTP_11, &everything_wrong[2..]),
            Err(Rejection::BadRequest(
                "Transfer-Encoding other than chunked"
            ))
        );
        // Then Host.
        assert_eq!(
            check("POST", uri, Version::HTTP_11, &everything_wrong[3..]),
            Err(Rejection::BadRequest(
                "absolute-form target disagrees with Host"
            ))
        );
    }

    #[test]
    fn rejection_messages() {
        assert_eq!(
            Rejection::BadRequest("CONNECT is not supported").to_string(),
            "bad request: CONNECT is not supported"
        );
        assert_eq!(
            Rejection::MethodNotAllowed.to_string(),
            "method longer than 127 characters"
        );
        assert_eq!(
            Rejection::UriTooLong.to_string(),
            "request target longer than the limit"
        );
    }
}
