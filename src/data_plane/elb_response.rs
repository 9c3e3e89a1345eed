//! ELB's own responses (ELB-SPEC.md §9): what each is, and its bytes on an HTTP/1 connection.
//!
//! Every response the load balancer makes itself has an empty body with `Content-Length: 0` and ELB's own reason
//! phrase (`503 Service Unavailable: Back-end server is at capacity`, `504 GATEWAY_TIMEOUT`...). Whoever detects
//! the condition (the HTTP/1 server reading a head, the Check layer, the surge queue, the Forward layer) names an
//! [`ElbResponse`]; the proxy turns it into a response marked as elbe's own
//! ([`crate::data_plane::proxy::answer::elb_answer`]), the Track layer counts it in `HTTPCode_ELB_*` and writes its
//! access-log line, and the HTTP/1 server writes [`ElbResponse::http1_bytes`]. So there is one path, and elbe never
//! invents a status of its own.

use bytes::Bytes;
use http::StatusCode;

/// ELB's 408, byte for byte as captured (ELB-SPEC.md §9), including `Content-Length:0` without a space.
const REQUEST_TIMEOUT_BYTES: &[u8] =
    b"HTTP/1.1 408 REQUEST_TIMEOUT\r\nContent-Length:0\r\nConnection: Close\r\n\r\n";

/// A response elbe makes itself (never an instance's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElbResponse {
    /// 400: malformed or ambiguous request; the connection is closed after it.
    BadRequest,
    /// 405: a method longer than 127 characters.
    MethodNotAllowed,
    /// 408: the request head did not arrive whole in time; the connection is closed after it.
    RequestTimeout,
    /// 414: request target longer than `max_uri_bytes`.
    UriTooLong,
    /// 417: an expectation other than `100-continue`; the connection is closed after it (the client may send the
    /// body it held back, or not: where the next request starts is unknown).
    ExpectationFailed,
    /// 431: request head larger than `max_request_header_bytes`, or more fields than `max_headers`; the connection
    /// is closed after it.
    HeadersTooLarge,
    /// 503: no instance can take the request (none registered, none healthy, spillover).
    NoInstance,
    /// 502: the instance's response could not be parsed.
    BadGateway,
    /// 504: the instance did not start its response within the idle timeout, or closed the connection under us.
    GatewayTimeout,
}

impl ElbResponse {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            ElbResponse::BadRequest => StatusCode::BAD_REQUEST,
            ElbResponse::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ElbResponse::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ElbResponse::UriTooLong => StatusCode::URI_TOO_LONG,
            ElbResponse::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            ElbResponse::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ElbResponse::NoInstance => StatusCode::SERVICE_UNAVAILABLE,
            ElbResponse::BadGateway => StatusCode::BAD_GATEWAY,
            ElbResponse::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The reason phrase ELB writes on the status line (ELB-SPEC.md §9).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ElbResponse::BadRequest => "BAD_REQUEST",
            ElbResponse::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ElbResponse::RequestTimeout => "REQUEST_TIMEOUT",
            ElbResponse::UriTooLong => "URI_TOO_LONG",
            ElbResponse::ExpectationFailed => "EXPECTATION_FAILED",
            ElbResponse::HeadersTooLarge => "Request Header Fields Too Large",
            ElbResponse::NoInstance => "Service Unavailable: Back-end server is at capacity",
            ElbResponse::BadGateway => "Bad Gateway",
            ElbResponse::GatewayTimeout => "GATEWAY_TIMEOUT",
        }
    }

    /// Whether the client connection must be closed after this response: after a framing error elbe cannot know
    /// where the next request starts, so it must not read one.
    pub(crate) fn closes_connection(self) -> bool {
        matches!(
            self,
            ElbResponse::BadRequest
                | ElbResponse::HeadersTooLarge
                | ElbResponse::RequestTimeout
                | ElbResponse::ExpectationFailed
        )
    }

    /// The whole response on an HTTP/1 connection: status line with ELB's phrase, `Content-Length: 0`, and a
    /// `Connection` line saying what the connection does next (`close` when it closes after this response, for
    /// whatever reason, `keep-alive` otherwise, as ELB says).
    pub(crate) fn http1_bytes(self, http10: bool, close: bool) -> Bytes {
        if self == ElbResponse::RequestTimeout {
            return Bytes::from_static(REQUEST_TIMEOUT_BYTES);
        }
        let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let connection = if close || self.closes_connection() {
            "close"
        } else {
            "keep-alive"
        };
        Bytes::from(format!(
            "{version} {} {}\r\ncontent-length: 0\r\nconnection: {connection}\r\n\r\n",
            self.status().as_str(),
            self.reason()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_bytes_carry_elbs_phrases_and_the_408_is_byte_for_byte() {
        assert_eq!(
            ElbResponse::NoInstance.http1_bytes(false, false),
            "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity\r\ncontent-length: 0\r\n\
             connection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            ElbResponse::GatewayTimeout.http1_bytes(true, true),
            "HTTP/1.0 504 GATEWAY_TIMEOUT\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            ElbResponse::BadRequest.http1_bytes(false, false),
            "HTTP/1.1 400 BAD_REQUEST\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            ElbResponse::RequestTimeout.http1_bytes(false, false),
            &b"HTTP/1.1 408 REQUEST_TIMEOUT\r\nContent-Length:0\r\nConnection: Close\r\n\r\n"[..]
        );
    }
}
