//! ELB's own responses, and the proxy's error type that decides which one a client gets.
//!
//! ELB-SPEC.md §9: every response the load balancer makes itself has an empty body with `Content-Length: 0` and
//! ELB's own reason phrase (`503 Service Unavailable: Back-end server is at capacity`, `504 GATEWAY_TIMEOUT`...).
//! All of them are built here, in one place, so the proxy never invents a status of its own.

use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::{Response, StatusCode};
use hyper::ext::ReasonPhrase;

use crate::body::ResponseBody;

/// A response elbe makes itself (never an instance's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElbResponse {
    /// 400: malformed or ambiguous request; the connection is closed after it.
    BadRequest,
    /// 405: a method longer than 127 characters.
    MethodNotAllowed,
    /// 414: request target longer than `max_uri_bytes`.
    UriTooLong,
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
    pub fn status(self) -> StatusCode {
        match self {
            ElbResponse::BadRequest => StatusCode::BAD_REQUEST,
            ElbResponse::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ElbResponse::UriTooLong => StatusCode::URI_TOO_LONG,
            ElbResponse::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ElbResponse::NoInstance => StatusCode::SERVICE_UNAVAILABLE,
            ElbResponse::BadGateway => StatusCode::BAD_GATEWAY,
            ElbResponse::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The reason phrase ELB writes on the status line (ELB-SPEC.md §9).
    pub fn reason(self) -> &'static str {
        match self {
            ElbResponse::BadRequest => "BAD_REQUEST",
            ElbResponse::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ElbResponse::UriTooLong => "URI_TOO_LONG",
            ElbResponse::HeadersTooLarge => "Request Header Fields Too Large",
            ElbResponse::NoInstance => "Service Unavailable: Back-end server is at capacity",
            ElbResponse::BadGateway => "Bad Gateway",
            ElbResponse::GatewayTimeout => "GATEWAY_TIMEOUT",
        }
    }

    /// Whether the client connection must be closed after this response: after a framing error elbe cannot know
    /// where the next request starts, so it must not read one.
    pub fn closes_connection(self) -> bool {
        matches!(self, ElbResponse::BadRequest | ElbResponse::HeadersTooLarge)
    }

    /// The response itself: empty body, `Content-Length: 0`, ELB's reason phrase (HTTP/1.x only; HTTP/2 has none).
    pub fn into_response(self) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let connection = if self.closes_connection() {
            "close"
        } else {
            "keep-alive"
        };
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static(connection));
        response
            .extensions_mut()
            .insert(ReasonPhrase::from_static(self.reason().as_bytes()));
        response
    }
}

/// Why forwarding a request to an instance failed, with whose fault it was and what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No instance is available to this node (none registered, none in service).
    #[error("no instance available")]
    NoInstance,
    /// The TCP connection to the instance could not be made.
    #[error("cannot connect to instance {addr}")]
    Connect {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Connecting took longer than `backend_connect_timeout`.
    #[error("timed out connecting to instance {addr}")]
    ConnectTimeout { addr: std::net::SocketAddr },
    /// The instance sent no response head within the idle timeout.
    #[error("instance did not answer within the idle timeout")]
    Timeout,
    /// The instance closed (or reset) the connection before a response head arrived.
    #[error("instance closed the connection")]
    Closed(#[source] std::io::Error),
    /// The instance's response could not be parsed as HTTP/1.1.
    #[error("instance sent an unparseable response: {0}")]
    BadResponse(&'static str),
    /// The client's own request body failed (it went away mid-upload, or its chunked framing was wrong).
    #[error("client request body failed")]
    ClientBody(#[source] std::io::Error),
}

impl ProxyError {
    /// Whether the failure was the instance's (it counts as a backend connection error) rather than elbe's.
    pub fn is_backend_connection_error(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. }
        )
    }

    /// Whether the instance itself failed (refused, timed out connecting, reset or closed under a request): what
    /// passive health checks take an instance out of rotation for. An unparseable response is not counted: the
    /// instance is up, its application is wrong.
    pub fn is_instance_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } | ProxyError::Closed(_)
        )
    }

    /// ELB's response to the client for this failure (ELB-SPEC.md §9). A refused connection is ELB's 503: the
    /// instance cannot take the request, exactly as when none is healthy.
    pub fn elb_response(&self) -> ElbResponse {
        match self {
            ProxyError::NoInstance
            | ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. } => ElbResponse::NoInstance,
            ProxyError::Timeout | ProxyError::Closed(_) => ElbResponse::GatewayTimeout,
            ProxyError::BadResponse(_) => ElbResponse::BadGateway,
            ProxyError::ClientBody(_) => ElbResponse::BadRequest,
        }
    }
}
