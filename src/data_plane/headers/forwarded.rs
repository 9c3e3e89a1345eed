//! ELB's `X-Forwarded-*` headers (ELB-SPEC §1.2): the peer address is *appended* to `X-Forwarded-For` with a
//! comma and a space; `X-Forwarded-Proto` and `X-Forwarded-Port` are *replaced*. And, for the instances,
//! [`trusted_client_ip`]: reading `X-Forwarded-For` the only safe way, from the right.
//!
//! On the request path: no lock; one allocation when a client sent its own `X-Forwarded-For` (the joined value),
//! and one more for a peer the worker's cache does not hold ([`peer_value`]); IP addresses are formatted into a
//! stack buffer.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{Entry, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::http1::fields::trim_ows;

/// `X-Forwarded-For`: the chain of client addresses, right-most added last.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the front-end listener's protocol, `http` or `https`.
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Port`: the front-end listener's port.
pub(crate) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// The value of `X-Forwarded-Proto`: the front-end listener's protocol in lower case. The listener builds it once and
/// every request clones it (a static value: the clone copies a pointer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardedProto(HeaderValue);

impl ForwardedProto {
    /// `http`, for HTTP listeners.
    pub(crate) const fn http() -> Self {
        Self(HeaderValue::from_static("http"))
    }

    /// `https`, for HTTPS listeners.
    pub(crate) const fn https() -> Self {
        Self(HeaderValue::from_static("https"))
    }

    /// Whether the listener is HTTPS (a redirect's `#{protocol}`).
    pub(crate) fn is_https(&self) -> bool {
        self.0 == "https"
    }
}

/// The value of `X-Forwarded-Port` for a listener on `port`: built once per listener, then passed to
/// [`set_forwarded`] for every request.
pub(crate) fn forwarded_port(port: u16) -> HeaderValue {
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
/// Call it after [`strip_hop_by_hop`](super::strip_hop_by_hop) (see the module documentation).
///
/// For a client at 203.0.113.7 on an HTTP listener on port 80 (the unit tests below check each case):
///
/// ```text
/// X-Forwarded-For: 10.1.1.1      ->  X-Forwarded-For: 10.1.1.1, 203.0.113.7
/// X-Forwarded-Proto: https       ->  X-Forwarded-Proto: http
///                                ->  X-Forwarded-Port: 80
/// ```
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &ForwardedProto,
    port: &HeaderValue,
) {
    set_forwarded_for(headers, &peer_value(peer), proto, port);
}

/// A peer address as the header value elbe appends, from the worker's cache of recent peers ([`RecentPeers`]).
pub(crate) fn peer_value(peer: IpAddr) -> HeaderValue {
    RECENT_PEERS.with(|recent| recent.borrow_mut().value_of(peer))
}

/// How many peers a worker's cache holds.
const RECENT_PEER_SLOTS: usize = 64;

thread_local! {
    /// The worker's own: no other thread sees it, so no lock (a `RefCell` is a flag, and only `peer_value`
    /// borrows it).
    static RECENT_PEERS: RefCell<RecentPeers> = const { RefCell::new(RecentPeers::new()) };
}

/// The `X-Forwarded-For` text of the peers a worker served last, one slot per address hash. The proxy needs it on
/// every request and no longer keeps it per connection (40 bytes of every connection, idle or not, for an address
/// the connection already has); made per request it cost about 410 instructions a request (the text, an
/// allocation and its free: callgrind); with the cache, about 80 more than the text kept per connection did. A miss makes the text and takes the slot.
struct RecentPeers {
    slots: [Option<(IpAddr, HeaderValue)>; RECENT_PEER_SLOTS],
}

impl RecentPeers {
    const fn new() -> Self {
        RecentPeers {
            slots: [const { None }; RECENT_PEER_SLOTS],
        }
    }

    fn value_of(&mut self, peer: IpAddr) -> HeaderValue {
        let slot = &mut self.slots[slot_of(peer)];
        match slot {
            Some((ip, value)) if *ip == peer => value.clone(),
            _ => {
                let value = IpText::new(peer).to_header_value();
                *slot = Some((peer, value.clone()));
                value
            }
        }
    }
}

/// A slot for `peer`: its bits folded to 64 and multiplied by 2^64 / phi (Fibonacci hashing), the top bits kept.
fn slot_of(peer: IpAddr) -> usize {
    let bits = match peer {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let folded = (bits as u64) ^ ((bits >> 64) as u64);
    let shift = u64::BITS - RECENT_PEER_SLOTS.trailing_zeros();
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

/// [`set_forwarded`] with the peer's address already made a header value ([`peer_value`]).
pub(crate) fn set_forwarded_for(
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
/// use elbe::headers::trusted_client_ip;
/// use http::HeaderMap;
/// use std::net::IpAddr;
///
/// // An attacker at 203.0.113.7 claims to be an internal address; elbe appended the address it saw on the socket.
/// let attacker: IpAddr = "203.0.113.7".parse().unwrap();
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "127.0.0.1, 203.0.113.7".parse().unwrap());
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    const PEER: &str = "203.0.113.7";

    /// A peer seen again gets the cached text (the same bytes, not a copy), and peers that share a slot each get
    /// their own address, whichever came last.
    #[test]
    fn recent_peers_give_each_address_its_own_text() {
        let mut recent = RecentPeers::new();
        let first: IpAddr = PEER.parse().unwrap();
        let made = recent.value_of(first);
        assert_eq!(made, PEER);
        let again = recent.value_of(first);
        assert_eq!(again.as_bytes().as_ptr(), made.as_bytes().as_ptr());
        let rival = (0..=u32::MAX)
            .map(|n| IpAddr::from(n.to_be_bytes()))
            .find(|ip| *ip != first && slot_of(*ip) == slot_of(first))
            .unwrap();
        assert_eq!(recent.value_of(rival), rival.to_string().as_str());
        assert_eq!(recent.value_of(first), PEER);
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(recent.value_of(v6), "2001:db8::7");
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(recent.value_of(mapped), PEER);
        assert_eq!(peer_value(first), PEER);
    }

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
}
