//! A client's header block, decoded, made into the request the proxy stack gets (RFC 9113 §8.3.1).
//!
//! What makes a request malformed is checked here, before anything reaches an instance: a field name with an
//! uppercase letter or outside the token characters (§8.2.1), a pseudo-header after a regular field, unknown,
//! repeated or belonging to responses (§8.3), the fields HTTP/2 has no use for because they describe an HTTP/1
//! connection (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, and `te` other
//! than `trailers`, §8.2.2), a request without `:method`, `:scheme` or `:path` (or with an empty `:path`), a
//! `CONNECT` with the fields the other methods use. Each is a stream error (`PROTOCOL_ERROR`); the fields the
//! proxy refuses with ELB's answers (whitespace, framing names, `Host` against `:authority`) are left to it, as
//! for HTTP/1 clients.
//!
//! The trade-off: the URI is built from `:scheme`, `:authority` and `:path` without a copy, as the `Bytes` the
//! decoder handed over; a header value is taken as it came when it has no control characters.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, COOKIE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Uri, Version};

use crate::http2::hpack::Field;

/// Why a header block is not a request elbe will serve (each a stream error `PROTOCOL_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("a field name that is empty, has an uppercase letter or a character outside a token")]
    FieldName,
    #[error("a field value with a control character")]
    FieldValue,
    #[error("a pseudo-header field after a regular field")]
    PseudoAfterRegular,
    #[error("a pseudo-header field requests do not have")]
    UnknownPseudo,
    #[error("a pseudo-header field given twice")]
    RepeatedPseudo,
    #[error("a field that describes an HTTP/1 connection")]
    ConnectionSpecific,
    #[error("no :method, :scheme or :path, or an empty :path")]
    MissingPseudo,
    #[error("a CONNECT with :scheme or :path but no :protocol, or without :authority")]
    Connect,
    #[error(
        ":protocol on a request that is not a CONNECT, or before the extended CONNECT is allowed"
    )]
    Protocol,
    #[error("a :method, :scheme, :authority or :path that does not parse")]
    Target,
    #[error("a content-length that is not one decimal number")]
    ContentLength,
}

/// A request's head, decoded: what the stack gets, and the length its DATA frames must add up to.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) request: Request<()>,
    /// `content-length`, when the client gave one: the DATA frames must carry exactly this many bytes (§8.1.1).
    pub(crate) content_length: Option<u64>,
    /// `:protocol` was given: an extended CONNECT (RFC 8441).
    pub(crate) extended_connect: bool,
}

#[derive(Default)]
struct Pseudo {
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    protocol: Option<Bytes>,
}

/// The fields of one header block made into a request head. `extended_connect_allowed`: elbe announced
/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3).
pub(crate) fn request_head(
    fields: Vec<Field>,
    extended_connect_allowed: bool,
) -> Result<RequestHead, Malformed> {
    let mut pseudo = Pseudo::default();
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut regular_seen = false;
    let mut content_length = None;
    let mut cookies = 0;
    for field in fields {
        if field.name.first() == Some(&b':') {
            if regular_seen {
                return Err(Malformed::PseudoAfterRegular);
            }
            pseudo_field(&mut pseudo, field)?;
            continue;
        }
        regular_seen = true;
        let (name, value) = regular_field(field)?;
        if name == CONTENT_LENGTH {
            content_length = Some(parse_content_length(&value, content_length)?);
        } else if name == COOKIE {
            cookies += 1;
        }
        headers.append(name, value);
    }
    if cookies > 1 {
        join_cookies(&mut headers)?;
    }
    let extended_connect = pseudo.protocol.is_some();
    let request = build(pseudo, headers, extended_connect_allowed)?;
    Ok(RequestHead {
        request,
        content_length,
        extended_connect,
    })
}

/// RFC 9113 §8.2.3: an HTTP/2 client may send each cookie as a field of its own (browsers do, so HPACK indexes
/// them apart); before the request goes on to an HTTP/1.1 instance they are one `Cookie` line, joined with "; ".
/// Several `Cookie` lines are not HTTP/1.1 (RFC 6265 §5.4): many servers read only the first.
fn join_cookies(headers: &mut HeaderMap) -> Result<(), Malformed> {
    let mut joined = BytesMut::new();
    for crumb in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    let joined =
        HeaderValue::from_maybe_shared(joined.freeze()).map_err(|_| Malformed::FieldValue)?;
    headers.insert(COOKIE, joined);
    Ok(())
}

fn pseudo_field(pseudo: &mut Pseudo, field: Field) -> Result<(), Malformed> {
    let slot = match &field.name[..] {
        b":method" => &mut pseudo.method,
        b":scheme" => &mut pseudo.scheme,
        b":authority" => &mut pseudo.authority,
        b":path" => &mut pseudo.path,
        b":protocol" => &mut pseudo.protocol,
        _ => return Err(Malformed::UnknownPseudo),
    };
    if slot.replace(field.value).is_some() {
        return Err(Malformed::RepeatedPseudo);
    }
    Ok(())
}

/// A regular field, checked: lowercase token name, no connection-specific field, a value without control
/// characters.
fn regular_field(field: Field) -> Result<(HeaderName, HeaderValue), Malformed> {
    let name = &field.name[..];
    if name.is_empty() || name.iter().any(|&byte| !is_lowercase_token_char(byte)) {
        return Err(Malformed::FieldName);
    }
    if is_connection_specific(name, &field.value) {
        return Err(Malformed::ConnectionSpecific);
    }
    let name = HeaderName::from_bytes(name).map_err(|_| Malformed::FieldName)?;
    let value = HeaderValue::from_maybe_shared(field.value).map_err(|_| Malformed::FieldValue)?;
    Ok((name, value))
}

/// RFC 9110 §5.6.2's token characters, without the uppercase letters HTTP/2 forbids in names (§8.2.1).
fn is_lowercase_token_char(byte: u8) -> bool {
    matches!(byte,
        b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// §8.2.2: the fields that only mean something to an HTTP/1 connection (lowercase names), in requests and
/// responses alike.
pub(super) fn is_connection_field(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

/// A request field HTTP/2 refuses: a connection field, or `te` other than `trailers` (§8.2.2).
fn is_connection_specific(name: &[u8], value: &[u8]) -> bool {
    is_connection_field(name) || (name == b"te" && !value.eq_ignore_ascii_case(b"trailers"))
}

/// One decimal number; a repeated `content-length` must repeat the same one.
fn parse_content_length(value: &HeaderValue, seen: Option<u64>) -> Result<u64, Malformed> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(Malformed::ContentLength);
    }
    let length = bytes
        .iter()
        .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0'));
    match seen {
        Some(other) if other != length => Err(Malformed::ContentLength),
        _ => Ok(length),
    }
}

fn build(
    pseudo: Pseudo,
    headers: HeaderMap,
    extended_connect_allowed: bool,
) -> Result<Request<()>, Malformed> {
    let method_bytes = pseudo.method.ok_or(Malformed::MissingPseudo)?;
    let method = Method::from_bytes(&method_bytes).map_err(|_| Malformed::Target)?;
    let is_connect = method == Method::CONNECT;
    if pseudo.protocol.is_some() && (!is_connect || !extended_connect_allowed) {
        return Err(Malformed::Protocol);
    }
    let mut parts = http::uri::Parts::default();
    if is_connect && pseudo.protocol.is_none() {
        // §8.5: only :authority, the tunnel's destination.
        if pseudo.scheme.is_some() || pseudo.path.is_some() {
            return Err(Malformed::Connect);
        }
        let authority = pseudo.authority.ok_or(Malformed::Connect)?;
        parts.authority =
            Some(Authority::from_maybe_shared(authority).map_err(|_| Malformed::Target)?);
    } else {
        let scheme = pseudo.scheme.ok_or(Malformed::MissingPseudo)?;
        let path = pseudo
            .path
            .filter(|path| !path.is_empty())
            .ok_or(Malformed::MissingPseudo)?;
        if pseudo.protocol.is_some() && pseudo.authority.is_none() {
            return Err(Malformed::Connect);
        }
        parts.scheme = Some(Scheme::try_from(&scheme[..]).map_err(|_| Malformed::Target)?);
        parts.authority = match pseudo.authority {
            Some(authority) => {
                Some(Authority::from_maybe_shared(authority).map_err(|_| Malformed::Target)?)
            }
            None => None,
        };
        parts.path_and_query =
            Some(PathAndQuery::from_maybe_shared(path).map_err(|_| Malformed::Target)?);
    }
    let uri = uri_from(parts)?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = headers;
    if let Some(protocol) = pseudo.protocol {
        let protocol = std::str::from_utf8(&protocol).map_err(|_| Malformed::Protocol)?;
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from(protocol));
    }
    Ok(request)
}

/// A URI from its parts; without an authority (allowed by §8.3.1 when `Host` is given) it is the path alone.
fn uri_from(mut parts: http::uri::Parts) -> Result<Uri, Malformed> {
    if parts.authority.is_none() {
        parts.scheme = None;
    }
    Uri::from_parts(parts).map_err(|_| Malformed::Target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> Field {
        Field {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            sensitive: false,
        }
    }

    fn get(extra: &[(&str, &str)]) -> Vec<Field> {
        let mut fields = vec![
            field(":method", "GET"),
            field(":scheme", "https"),
            field(":authority", "example.com"),
            field(":path", "/a?b=c"),
        ];
        fields.extend(extra.iter().map(|(n, v)| field(n, v)));
        fields
    }

    #[test]
    fn a_request_becomes_an_http2_request_with_its_uri_and_fields() {
        let head = request_head(
            get(&[("x-a", "1"), ("x-a", "2"), ("content-length", "0")]),
            true,
        )
        .unwrap();
        let request = head.request;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(request.uri(), "https://example.com/a?b=c");
        let values: Vec<_> = request.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(head.content_length, Some(0));
        assert!(!head.extended_connect);
    }

    #[test]
    fn cookie_crumbs_are_joined_into_one_field_in_their_order() {
        let head = request_head(
            get(&[
                ("cookie", "a=1"),
                ("x-b", "2"),
                ("cookie", "AWSELB=c"),
                ("cookie", "d=4"),
            ]),
            true,
        )
        .unwrap();
        let cookies: Vec<_> = head.request.headers().get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; AWSELB=c; d=4"]);
        assert_eq!(head.request.headers()["x-b"], "2");
        let one = request_head(get(&[("cookie", "a=1; b=2")]), true).unwrap();
        assert_eq!(
            one.request.headers()[COOKIE],
            "a=1; b=2",
            "a single field is kept as sent"
        );
    }

    #[test]
    fn a_request_without_authority_has_a_path_only_uri() {
        let fields = vec![
            field(":method", "GET"),
            field(":scheme", "http"),
            field(":path", "/x"),
            field("host", "example.com"),
        ];
        let head = request_head(fields, true).unwrap();
        assert_eq!(head.request.uri(), "/x");
        assert_eq!(head.request.headers()["host"], "example.com");
    }

    #[test]
    fn malformed_blocks_are_refused_with_their_reason() {
        let cases: Vec<(Vec<Field>, Malformed)> = vec![
            (get(&[("X-Upper", "1")]), Malformed::FieldName),
            (get(&[("a b", "1")]), Malformed::FieldName),
            (get(&[("x-a", "a\nb")]), Malformed::FieldValue),
            (
                get(&[("connection", "keep-alive")]),
                Malformed::ConnectionSpecific,
            ),
            (
                get(&[("transfer-encoding", "chunked")]),
                Malformed::ConnectionSpecific,
            ),
            (get(&[("te", "gzip")]), Malformed::ConnectionSpecific),
            (
                get(&[("content-length", "1"), ("content-length", "2")]),
                Malformed::ContentLength,
            ),
            (get(&[("content-length", "-1")]), Malformed::ContentLength),
            (
                vec![
                    field(":method", "GET"),
                    field("x-a", "1"),
                    field(":path", "/"),
                ],
                Malformed::PseudoAfterRegular,
            ),
            (
                get(&[])
                    .into_iter()
                    .chain([field(":status", "200")])
                    .collect(),
                Malformed::UnknownPseudo,
            ),
            (
                get(&[])
                    .into_iter()
                    .chain([field(":method", "GET")])
                    .collect(),
                Malformed::RepeatedPseudo,
            ),
            (
                vec![field(":method", "GET"), field(":scheme", "http")],
                Malformed::MissingPseudo,
            ),
            (
                vec![
                    field(":method", "GET"),
                    field(":scheme", "http"),
                    field(":path", ""),
                ],
                Malformed::MissingPseudo,
            ),
            (
                vec![
                    field(":method", "CONNECT"),
                    field(":authority", "a:443"),
                    field(":path", "/"),
                ],
                Malformed::Connect,
            ),
            (
                get(&[])
                    .into_iter()
                    .chain([field(":protocol", "websocket")])
                    .collect(),
                Malformed::Protocol,
            ),
        ];
        for (fields, reason) in cases {
            assert_eq!(request_head(fields, true).unwrap_err(), reason);
        }
    }

    #[test]
    fn te_trailers_is_allowed() {
        assert!(request_head(get(&[("te", "trailers")]), true).is_ok());
    }

    #[test]
    fn an_extended_connect_carries_its_protocol_only_when_allowed() {
        let fields = || {
            vec![
                field(":method", "CONNECT"),
                field(":protocol", "websocket"),
                field(":scheme", "https"),
                field(":authority", "example.com"),
                field(":path", "/chat"),
            ]
        };
        let head = request_head(fields(), true).unwrap();
        assert!(head.extended_connect);
        let protocol = head
            .request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .unwrap();
        assert_eq!(protocol.as_str(), "websocket");
        assert_eq!(
            request_head(fields(), false).unwrap_err(),
            Malformed::Protocol
        );
    }

    #[test]
    fn a_plain_connect_names_only_its_authority() {
        let fields = vec![field(":method", "CONNECT"), field(":authority", "db:5432")];
        let head = request_head(fields, true).unwrap();
        assert_eq!(head.request.uri().authority().unwrap(), "db:5432");
    }
}
