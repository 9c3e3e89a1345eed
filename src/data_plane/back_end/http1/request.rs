//! A request as it goes to an instance: serialized once, so a retry on another connection or instance sends the
//! same bytes again, with the body framing elbe chose (RFC 9112 §6): `Content-Length` when the body's length is
//! known, chunked when it is not (an HTTP/2 client's body, a chunked upload).

use bytes::{BufMut, Bytes};
use http::header::{HeaderName, CONTENT_LENGTH, UPGRADE};
use http::{Method, Request};
use http_body::Body;

use super::response::Switch;
use crate::data_plane::body::{body_is_ignored_on, RequestBody};
use crate::data_plane::headers::websocket::{accept_for, SEC_WEBSOCKET_KEY};
use crate::http1::fields::put_field;

/// How a request body is framed on the wire to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body, or one of known length: bytes as they come.
    Plain,
    /// A body of unknown length (an HTTP/2 client's, or a chunked one): re-chunked.
    Chunked,
}

/// A request serialized for an instance whose body has not been sent: what a retry on another connection, or
/// another instance, sends again. The head is kept as bytes, so resending it costs nothing.
pub(crate) struct Outgoing {
    pub(super) head: Bytes,
    pub(super) body: Option<RequestBody>,
    pub(super) framing: RequestFraming,
    /// Idempotent (RFC 9110 §9.2.2) and body-less: safe to send again after an instance may have seen it.
    pub(super) replayable: bool,
    /// HEAD: the response has no body, whatever its headers say.
    pub(super) head_only: bool,
    /// The connection is not reused after this request (it carries a body its method gives no meaning to, and
    /// says `Connection: close`).
    pub(super) close_after: bool,
    /// The request asks to switch to WebSocket (the Forwarded layer kept its `Upgrade` line for that alone), and
    /// the accept its key calls for.
    pub(super) upgrade: Switch,
    /// The client speaks HTTP/1: the response head is passed on as received ([`super::response::RawHead`]) instead of as a header
    /// map.
    pub raw_response: bool,
}

impl Outgoing {
    /// Serializes a request already rewritten for the instance (origin-form target, hop-by-hop headers gone).
    pub(crate) fn new(request: Request<RequestBody>) -> Self {
        let (parts, body) = request.into_parts();
        let (body, length, framing) = if body.is_end_stream() {
            // POST, PUT and PATCH without a body still say so, as clients do; other methods say nothing.
            let say_zero = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
                && !parts.headers.contains_key(CONTENT_LENGTH);
            (None, say_zero.then_some(0), RequestFraming::Plain)
        } else {
            match body.size_hint().exact() {
                Some(length) => (Some(body), Some(length), RequestFraming::Plain),
                None => (Some(body), None, RequestFraming::Chunked),
            }
        };
        let replayable = body.is_none()
            && matches!(
                parts.method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            );
        let upgrade = if parts.headers.contains_key(UPGRADE) {
            Switch::WebSocket(
                parts
                    .headers
                    .get(SEC_WEBSOCKET_KEY)
                    .map(|key| accept_for(key.as_bytes())),
            )
        } else {
            Switch::No
        };
        let close_after = body.is_some() && body_is_ignored_on(&parts.method);
        Outgoing {
            head: serialize_head(&parts, length, framing, close_after),
            body,
            framing,
            replayable,
            head_only: parts.method == Method::HEAD,
            close_after,
            upgrade,
            raw_response: false,
        }
    }

    /// Whether the request has a body still to send (it cannot be replayed once the body has started).
    pub(crate) fn has_body(&self) -> bool {
        self.body.is_some()
    }
}

/// The request line and headers, with the framing header elbe decided on (a client's own `Content-Length` is
/// replaced when the body's length is known, and dropped when the body is re-chunked).
fn serialize_head(
    parts: &http::request::Parts,
    length: Option<u64>,
    framing: RequestFraming,
    close: bool,
) -> Bytes {
    const CHUNKED: &[u8] = b"transfer-encoding: chunked\r\n";
    const CLOSE: &[u8] = b"connection: close\r\n";
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let replace_length = length.is_some() || framing == RequestFraming::Chunked;
    let skip = |name: &HeaderName| replace_length && name == CONTENT_LENGTH;
    let length = length.map(|n| n.to_string());
    // Sized exactly: a Vec that is full becomes `Bytes` without a second allocation.
    let mut size = parts.method.as_str().len() + 1 + target.len() + b" HTTP/1.1\r\n\r\n".len();
    for (name, value) in &parts.headers {
        if !skip(name) {
            size += name.as_str().len() + value.len() + 4;
        }
    }
    if let Some(length) = &length {
        size += "content-length".len() + length.len() + 4;
    }
    if framing == RequestFraming::Chunked {
        size += CHUNKED.len();
    }
    if close {
        size += CLOSE.len();
    }
    let mut head = Vec::with_capacity(size);
    head.put_slice(parts.method.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(target.as_bytes());
    head.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if !skip(name) {
            put_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if let Some(length) = &length {
        put_field(&mut head, b"content-length", length.as_bytes());
    }
    if framing == RequestFraming::Chunked {
        head.put_slice(CHUNKED);
    }
    if close {
        head.put_slice(CLOSE);
    }
    head.put_slice(b"\r\n");
    debug_assert_eq!(head.len(), size);
    Bytes::from(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_carry_the_framing_elbe_chose() {
        let post = Request::post("/form")
            .header("host", "a")
            .body(RequestBody::Empty)
            .unwrap();
        assert_eq!(
            Outgoing::new(post).head,
            "POST /form HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"
        );
        let delete = Request::delete("/x").body(RequestBody::Empty).unwrap();
        assert_eq!(Outgoing::new(delete).head, "DELETE /x HTTP/1.1\r\n\r\n");
        let options = Request::options("*").body(RequestBody::Empty).unwrap();
        assert!(Outgoing::new(options)
            .head
            .starts_with(b"OPTIONS * HTTP/1.1\r\n"));
    }
}
