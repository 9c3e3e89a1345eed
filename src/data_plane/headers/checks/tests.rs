//! The request checks, case by case, in the order they run.

use super::*;
use http::header;
use http::{HeaderValue, Uri};

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

/// A POST to `/upload` over HTTP/1.1 with `pairs` (and `Host: example.com` unless `pairs` has a Host).
fn h1(pairs: &[(&'static str, &'static str)]) -> Result<(), Rejection> {
    let mut with_host = pairs.to_vec();
    if !pairs.iter().any(|(name, _)| *name == "host") {
        with_host.push(("host", "example.com"));
    }
    check("POST", "/upload", Version::HTTP_11, &with_host)
}

fn is_bad(result: Result<(), Rejection>) -> bool {
    matches!(result, Err(Rejection::BadRequest(_)))
}

#[test]
fn valid_requests_pass() {
    let host = ("host", "example.com");
    assert_eq!(check("GET", "/", Version::HTTP_11, &[host]), Ok(()));
    assert_eq!(check("OPTIONS", "*", Version::HTTP_11, &[host]), Ok(()));
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
        check("GET", "http://example.com/", Version::HTTP_10, &[]),
        Ok(()),
        "HTTP/1.0 may leave Host out"
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
    assert_eq!(
        get("http://user@example.com/", "user@example.com"),
        Err(Rejection::BadRequest("userinfo in the target's authority"))
    );
}

/// Found by the `check_request` fuzz target (`fuzz/corpus/check_request/seed-found-port-not-a-number`): a target
/// whose port is not a number passed, its port taken as absent.
#[test]
fn an_absolute_form_port_that_is_not_a_number_is_bad() {
    let get = |uri, host| check("GET", uri, Version::HTTP_11, &[("host", host)]);
    let invalid = Err(Rejection::BadRequest(
        "invalid authority in the request target",
    ));
    assert_eq!(get("http://example.com:abc/", "example.com"), invalid);
    assert_eq!(get("http://example.com:abc/", "example.com:abc"), invalid);
    assert_eq!(get("http://example.com:8o/", "example.com:80"), invalid);
    assert_eq!(get("http://example.com:80/", "example.com"), Ok(()));
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
    assert_eq!(
        check("GET", &path, Version::HTTP_11, &[("host", "h")]),
        Ok(())
    );
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
fn http2_skips_http1_framing_but_host_must_agree_with_authority() {
    let pairs = [("content-length", "5"), ("transfer-encoding", "gzip")];
    assert_eq!(
        check("POST", "https://example.com/", Version::HTTP_2, &pairs),
        Ok(())
    );
    assert_eq!(
        check("GET", "https://example.com/", Version::HTTP_2, &[]),
        Ok(())
    );
    assert_eq!(
        check(
            "GET",
            "https://example.com/",
            Version::HTTP_2,
            &[("host", "example.com:443")]
        ),
        Ok(())
    );
    assert_eq!(
        check(
            "GET",
            "https://example.com/",
            Version::HTTP_2,
            &[("host", "other")]
        ),
        Err(Rejection::BadRequest(":authority and host disagree"))
    );
    assert_eq!(
        check(
            "GET",
            "https://example.com/",
            Version::HTTP_2,
            &[("host", "a b")]
        ),
        Err(Rejection::BadRequest("host is not host[:port]"))
    );
    assert_eq!(
        check("GET", "https://user@example.com/", Version::HTTP_2, &[]),
        Err(Rejection::BadRequest("userinfo in the target's authority"))
    );
}

#[test]
fn http2_values_with_leading_or_trailing_whitespace_are_bad() {
    for value in [" x", "x ", "\tx", "x\t"] {
        let mut headers = HeaderMap::new();
        headers.insert("x-padded", HeaderValue::from_str(value).unwrap());
        let checked = check_request(
            &Method::GET,
            &Uri::from_static("https://example.com/"),
            Version::HTTP_2,
            &headers,
            MAX_URI,
        );
        assert_eq!(
            checked,
            Err(Rejection::BadRequest(
                "field value with leading or trailing whitespace"
            )),
            "{value:?}"
        );
    }
}

#[test]
fn target_forms_follow_rfc_9112_section_3_2() {
    let host = [("host", "example.com")];
    assert_eq!(
        check("GET", "*", Version::HTTP_11, &host),
        Err(Rejection::BadRequest(
            "asterisk-form with a method other than OPTIONS"
        ))
    );
    assert_eq!(
        check("GET", "example.com:80", Version::HTTP_11, &host),
        Err(Rejection::BadRequest("authority-form target"))
    );
    assert_eq!(
        check("GET", "ftp://example.com/", Version::HTTP_11, &host),
        Err(Rejection::BadRequest(
            "absolute-form target that is not http or https"
        ))
    );
    assert_eq!(
        check("GET", "HTTP://example.com/", Version::HTTP_11, &host),
        Ok(())
    );
}

#[test]
fn host_must_be_one_valid_host_on_http11() {
    assert_eq!(
        check("GET", "/", Version::HTTP_11, &[]),
        Err(Rejection::BadRequest("HTTP/1.1 request without Host"))
    );
    for bad in ["", "a b", "a/b", "exa@mple", ":80", "[::1"] {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(bad).unwrap());
        assert_eq!(
            check_request(
                &Method::GET,
                &Uri::from_static("/"),
                Version::HTTP_11,
                &headers,
                MAX_URI
            ),
            Err(Rejection::BadRequest("Host is not host[:port]")),
            "{bad:?}"
        );
    }
}

#[test]
fn transfer_encoding_on_http10_is_bad() {
    assert_eq!(
        check(
            "POST",
            "/",
            Version::HTTP_10,
            &[("transfer-encoding", "chunked")]
        ),
        Err(Rejection::BadRequest("Transfer-Encoding on HTTP/1.0"))
    );
}

#[test]
fn names_that_imitate_framing_fields_are_bad() {
    for name in [
        "content_length",
        "transfer_encoding",
        "host_",
        "_host",
        "connection",
        "x_forwarded_for",
    ] {
        let result = h1(&[(name, "1")]);
        let imitates = matches!(name, "content_length" | "transfer_encoding");
        if imitates {
            assert_eq!(
                result,
                Err(Rejection::BadRequest(
                    "field name imitates a framing or routing field"
                )),
                "{name}"
            );
        } else {
            assert_ne!(
                result,
                Err(Rejection::BadRequest(
                    "field name imitates a framing or routing field"
                )),
                "{name}"
            );
        }
    }
}

#[test]
fn connection_may_not_name_framing_or_routing_fields() {
    for named in ["Host", "content-length", "Transfer-Encoding", "close, host"] {
        assert_eq!(
            h1(&[("connection", named)]),
            Err(Rejection::BadRequest(
                "Connection names a field a proxy must keep"
            )),
            "{named}"
        );
    }
    assert_eq!(h1(&[("connection", "keep-alive, Upgrade, TE")]), Ok(()));
}

#[test]
fn expectations_other_than_100_continue_are_417() {
    assert_eq!(h1(&[("expect", "100-continue")]), Ok(()));
    assert_eq!(h1(&[("expect", "100-Continue")]), Ok(()));
    for other in ["200-ok", "100-continue, x", ""] {
        assert_eq!(
            h1(&[("expect", other)]),
            Err(Rejection::ExpectationFailed),
            "{other:?}"
        );
    }
    assert_eq!(
        check(
            "GET",
            "https://example.com/",
            Version::HTTP_2,
            &[("expect", "x")]
        ),
        Err(Rejection::ExpectationFailed)
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
    assert_eq!(
        Rejection::ExpectationFailed.to_string(),
        "expectation other than 100-continue"
    );
}
