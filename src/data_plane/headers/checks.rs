//! Refusing requests before they reach an instance: what ELB refuses (ELB-SPEC §1.1 and §9: `CONNECT`, over-long
//! methods and URIs) and what would make the framing ambiguous between elbe and an instance (request smuggling).

use http::header;
use http::{HeaderMap, Method, Uri, Version};

use crate::http1::fields::{parse_decimal, split_host_port, trim_ows};

/// ELB answers 405 to a method longer than this (ELB-SPEC §1.1).
const MAX_METHOD_BYTES: usize = 127;

/// Why elbe refuses a request before it reaches an instance. The proxy maps each to ELB's response (ELB-SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
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
pub(crate) fn check_request(
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
pub(crate) fn check_framing(headers: &HeaderMap) -> Result<(), Rejection> {
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
        if parse_decimal(length.as_bytes()).is_none() {
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
    // The target's own port as written: `Authority::port_u16` is `None` for a port that is not a number, which
    // would then compare equal to a Host line without one.
    let hostport = authority.as_str().rsplit('@').next().unwrap_or_default();
    let Some((_, port)) = split_host_port(hostport.as_bytes()) else {
        return Err(Rejection::BadRequest("invalid port in the request target"));
    };
    let target_port = port.or(default_port);
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MAX_URI: usize = 64;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

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

    /// Found by the `check_request` fuzz target (`fuzz/corpus/check_request/seed-found-port-not-a-number`): a
    /// target whose port is not a number passed, its port taken as absent.
    #[test]
    fn an_absolute_form_port_that_is_not_a_number_is_bad() {
        let get = |uri, host| check("GET", uri, Version::HTTP_11, &[("host", host)]);
        let invalid = Err(Rejection::BadRequest("invalid port in the request target"));
        assert_eq!(get("http://example.com:abc/", "example.com"), invalid);
        assert_eq!(get("http://example.com:abc/", "example.com:abc"), invalid);
        assert_eq!(get("E://:ex+e/ple", ""), invalid);
        assert_eq!(
            get("http://user@example.com:8o/", "example.com:80"),
            invalid
        );
        assert_eq!(get("http://user@example.com:80/", "example.com"), Ok(()));
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
