//! Header field syntax both ends of elbe read and write (RFC 9110 §5, RFC 9112): writing a field line, the
//! comma-separated tokens of a list field (`Connection`, `Transfer-Encoding`), decimal lengths, `host[:port]`, and
//! which field names are hop-by-hop. Plain functions over bytes: the front end applies them to requests, the
//! back end to responses, the health probe to its answers.

use bytes::BufMut;

/// The fixed hop-by-hop field names (RFC 9110 §7.6.1), in lower case: they describe one connection, not the
/// message, so a proxy never passes them on. `Connection` may name more.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Writes one field line: `name: value` and CRLF.
pub(crate) fn put_field(buf: &mut impl BufMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// Trims optional whitespace (spaces and tabs, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The elements of a comma-separated list field, trimmed, empty ones skipped (RFC 9110 §5.6.1).
pub(crate) fn tokens(line: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    line.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|token| !token.is_empty())
}

/// Whether a list field has `token` (case-insensitive).
pub(crate) fn has_token(line: &[u8], token: &[u8]) -> bool {
    tokens(line).any(|t| t.eq_ignore_ascii_case(token))
}

/// Whether the last element of a list field is `token` (case-insensitive): a `Transfer-Encoding` whose last coding
/// is `chunked` frames the body by chunks (RFC 9112 §6.3).
pub(crate) fn last_token_is(line: &[u8], token: &[u8]) -> bool {
    tokens(line)
        .next_back()
        .is_some_and(|last| last.eq_ignore_ascii_case(token))
}

/// `1*DIGIT` that fits in a u64: no sign, no spaces, no list.
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A `Content-Length` line as a recipient may accept it (RFC 9110 §8.6): one decimal, or a list of the same
/// decimal repeated. `None` for anything else.
pub(crate) fn content_length(line: &[u8]) -> Option<u64> {
    let mut length = None;
    for value in line.split(|&b| b == b',') {
        let value = parse_decimal(trim_ows(value))?;
        if length.is_some_and(|seen| seen != value) {
            return None;
        }
        length = Some(value);
    }
    length
}

/// Whether a field name, in any case, is one of the fixed hop-by-hop names.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|fixed| name.eq_ignore_ascii_case(fixed.as_bytes()))
}

/// Splits a `host[:port]` value into host and port (`None` when absent or empty). An IPv6 literal keeps its
/// brackets, as `http::uri::Authority::host` does. `None` overall when the port is not a number.
pub(crate) fn split_host_port(value: &[u8]) -> Option<(&[u8], Option<u16>)> {
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
    let port = u16::try_from(parse_decimal(port)?).ok()?;
    Some((name, Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_empty_ones_skipped() {
        let all: Vec<&[u8]> = tokens(b" close ,,\tX-Foo, ").collect();
        assert_eq!(all, [&b"close"[..], b"X-Foo"]);
        assert!(has_token(b"Keep-Alive, Upgrade", b"keep-alive"));
        assert!(!has_token(b"keep-alive-ish", b"keep-alive"));
        assert!(last_token_is(b"gzip, Chunked ", b"chunked"));
        assert!(!last_token_is(b"chunked, gzip", b"chunked"));
        assert!(!last_token_is(b"", b"chunked"));
    }

    #[test]
    fn decimals_are_strict_and_lists_must_agree() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b" 1",
            b"1 ",
            b"0x10",
            b"18446744073709551616",
        ] {
            assert_eq!(
                parse_decimal(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(content_length(b"5"), Some(5));
        assert_eq!(content_length(b"5, 5"), Some(5));
        assert_eq!(content_length(b"5, 6"), None);
        assert_eq!(content_length(b"5,"), None);
        assert_eq!(content_length(b"-1"), None);
    }

    #[test]
    fn host_and_port_split_like_an_authority() {
        assert_eq!(
            split_host_port(b"a.example"),
            Some((&b"a.example"[..], None))
        );
        assert_eq!(
            split_host_port(b"a.example:8080"),
            Some((&b"a.example"[..], Some(8080)))
        );
        assert_eq!(
            split_host_port(b"a.example:"),
            Some((&b"a.example"[..], None))
        );
        assert_eq!(
            split_host_port(b"[::1]:443"),
            Some((&b"[::1]"[..], Some(443)))
        );
        assert_eq!(split_host_port(b"[::1]"), Some((&b"[::1]"[..], None)));
        assert_eq!(split_host_port(b"[::1]x"), None);
        assert_eq!(split_host_port(b"a:b"), None);
        assert_eq!(split_host_port(b"a:70000"), None);
    }

    #[test]
    fn hop_by_hop_names_in_any_case() {
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        assert!(is_hop_by_hop(b"TE"));
        assert!(!is_hop_by_hop(b"Trailers"));
        assert!(!is_hop_by_hop(b"Content-Length"));
    }
}
