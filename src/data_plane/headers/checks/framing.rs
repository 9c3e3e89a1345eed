//! How a request body is framed (RFC 9112 §6): by one plain `Content-Length` or by exactly one final `chunked`,
//! never both, never repeated; and `Connection` options that would make a proxy strip the framing or routing
//! fields themselves.

use http::header;
use http::HeaderMap;

use super::Rejection;
use crate::http1::fields::{parse_decimal, tokens};

/// Fields a `Connection` line must not name: a proxy that honoured it would remove the request's framing or
/// routing, and the instance would read another request than elbe did.
const KEPT_BY_PROXIES: [&[u8]; 3] = [b"host", b"content-length", b"transfer-encoding"];

/// A body framed one way only, by one plain `Content-Length` or by exactly one `chunked`. elbe's HTTP/1 server
/// frames request bodies only when this passes.
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
        for coding in tokens(line.as_bytes()) {
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return false;
            }
            chunked += 1;
        }
    }
    chunked == 1
}

/// No `Connection` line names `Host`, `Content-Length` or `Transfer-Encoding`.
pub(super) fn check_connection_options(headers: &HeaderMap) -> Result<(), Rejection> {
    for line in headers.get_all(header::CONNECTION) {
        for option in tokens(line.as_bytes()) {
            if KEPT_BY_PROXIES
                .iter()
                .any(|kept| option.eq_ignore_ascii_case(kept))
            {
                return Err(Rejection::BadRequest(
                    "Connection names a field a proxy must keep",
                ));
            }
        }
    }
    Ok(())
}
