//! Refusing requests before they reach an instance: what ELB refuses (ELB-SPEC §1.1 and §9: `CONNECT`, over-long
//! methods and URIs) and every message whose meaning an instance might read differently from elbe (request
//! smuggling, RFC 9112 §11.2): refused, never forwarded as the client sent it.
//!
//! Compared with AWS's own classifier (awslabs/http-desync-guardian, whose tiers ALB applies as its desync
//! mitigation modes): elbe refuses what it calls *Severe* (`BadHeader`, `BadUri`, `BadVersion`,
//! `MultipleContentLength`, `BadContentLength`, `MultipleTransferEncodingChunked`, `BadTransferEncoding`,
//! `BadMethod`) and also what it calls *Ambiguous*: `BothTeClPresent`, `DuplicateContentLength` (even with the same
//! value), `SuspiciousHeader` (a name that normalises to a framing field, e.g. `Content_Length`),
//! `MultilineHeader` (httparse refuses obs-fold), `EmptyHeader`, and Transfer-Encoding on HTTP/1.0. Where the
//! guardian would serve an ambiguous request and close both connections (`UndefinedContentLengthSemantics`: a body
//! on GET or HEAD), elbe does the same: the body is forwarded framed exactly and both connections close after the
//! response (the HTTP/1 server and [`crate::data_plane::back_end`] see to that). Its *Acceptable* tier
//! (`NonCrLfLineTermination`, `SpaceInUri`...) is normalised: elbe's HTTP/1 server re-serialises every head with
//! CRLF and a parsed target, so the instance never sees the client's bytes.
//!
//! Layout: [`target`] (request-target forms, `Host`, `:authority`), [`framing`] (`Content-Length`,
//! `Transfer-Encoding`, `Connection`), [`fields`] (field names and values, `Expect`). The checks run in the order of
//! [`check_request`]'s documentation; the first that fails decides the answer.

mod fields;
mod framing;
mod target;

use http::{HeaderMap, Method, Uri, Version};

pub(crate) use framing::check_framing;

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
    /// 417: an `Expect` other than `100-continue` (RFC 9110 §10.1.1).
    #[error("expectation other than 100-continue")]
    ExpectationFailed,
}

/// Checks one request head, in this order (the first failure is the answer):
///
/// 1. `CONNECT` -> 400 (ELB-SPEC §1.1);
/// 2. a method longer than 127 bytes -> 405;
/// 3. a request target longer than `max_uri_bytes` -> 414. The length is that of the target as received: path and
///    query for origin-form (and for HTTP/2, whose `:path` is that), the whole URI for absolute-form;
/// 4. the target's form (RFC 9112 §3.2) -> 400: `*` with any method but OPTIONS, authority-form (only CONNECT may
///    use it), absolute-form with a scheme other than http or https, userinfo (`user@host`) in any authority;
/// 5. a field name that normalises to a framing or routing field (`Content_Length`, `transfer_encoding`,
///    `Host_`...) -> 400;
/// 6. an `Expect` other than `100-continue` -> 417;
///
/// then, for HTTP/1.x (each -> 400):
///
/// 7. `Transfer-Encoding` on an HTTP/1.0 request (RFC 9112 §6.1: faulty framing);
/// 8. both `Content-Length` and `Transfer-Encoding`; more than one `Content-Length` line, or one that is not a
///    plain decimal fitting in 64 bits; a `Transfer-Encoding` (all lines, comma-separated, case-insensitive, empty
///    elements ignored) that is anything but exactly one `chunked`;
/// 9. a `Connection` line naming `Host`, `Content-Length` or `Transfer-Encoding` (fields a proxy must keep: a
///    proxy honouring the option would strip the request's framing or routing);
/// 10. no `Host` on HTTP/1.1, more than one `Host`, a `Host` that is not `host[:port]`, or an absolute-form target
///     whose `host[:port]` differs from `Host` (case-insensitive; a missing port equals the scheme's default);
///
/// and for HTTP/2 (each -> 400, RFC 9113 §8.2 and §8.3.1):
///
/// 11. a field value with leading or trailing whitespace;
/// 12. a `host` field that is not `host[:port]` or disagrees with `:authority`.
///
/// elbe's HTTP/1 server builds the header map as received, repairing nothing, so these checks see what the client
/// actually sent; the server gives a request with ambiguous framing no body and closes the connection after the
/// 400.
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
    if target::len(uri, is_http1) > max_uri_bytes {
        return Err(Rejection::UriTooLong);
    }
    target::check_form(method, uri, is_http1)?;
    fields::check_names(headers)?;
    fields::check_expect(headers)?;
    if is_http1 {
        if version == Version::HTTP_10 && headers.contains_key(http::header::TRANSFER_ENCODING) {
            return Err(Rejection::BadRequest("Transfer-Encoding on HTTP/1.0"));
        }
        check_framing(headers)?;
        framing::check_connection_options(headers)?;
        target::check_host(uri, headers, version == Version::HTTP_11)
    } else {
        fields::check_http2_values(headers)?;
        target::check_http2_host(uri, headers)
    }
}

#[cfg(test)]
mod tests;
