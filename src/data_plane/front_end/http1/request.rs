//! Reading a client's requests: a head parsed out of what the connection read, made into the request the stack
//! gets, and its body fed to the stack as the stack asks for it.
//!
//! RFC 9112, and ELB where ELB differs: a head larger than `max_request_header_bytes` or with more than
//! `max_headers` fields gets 431, one that does not parse gets 400 (both close the connection); keep-alive is
//! HTTP/1.1's default unless the client says `Connection: close`, and HTTP/1.0's only when it says `keep-alive`;
//! bodies are framed by `Content-Length` or a final `chunked`; ambiguous framing reaches the stack without a body,
//! the stack refuses it (400) and the connection closes, since where the next request starts is unknown.
//! `Expect: 100-continue` is answered when the body is first read, not before: a request refused on its head never
//! makes the client send its body.

use std::io;
use std::mem::MaybeUninit;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use prometheus::IntCounter;

use crate::data_plane::body::{body_is_ignored_on, BodySender, ClientBody, RequestBody};
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::headers;
use crate::http1::buffers::{self, MIN_READ};
use crate::http1::fields::{has_token, parse_decimal};
use crate::http1::framing::{decode, Chunk, Download};
use crate::http1::head::{FieldSpans, Span};
use crate::http1::io::{Stream, WriteQueue};

/// Header slots parsed on the stack; a larger `max_headers` uses the heap.
const STACK_HEADERS: usize = 128;

/// The limits a request head is read under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
}

/// What the connection remembers of the request being answered.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Current {
    pub http10: bool,
    pub head_only: bool,
    /// The connection closes after this response.
    pub close: bool,
    /// The client may still be sending this request when the connection closes (a refused head).
    pub unread: bool,
}

/// A request head read off the connection: the request for the stack, what the connection must remember of it,
/// and the feed of its body.
pub(crate) struct Head {
    pub request: Request<RequestBody>,
    pub current: Current,
    pub feed: Option<Feed>,
}

/// Makes room in `buf` for the next read: at least half of [`MIN_READ`], growing by `MIN_READ` or by what the
/// buffer already holds, whichever is more (a large body streams through in reads that keep up with it). A
/// connection that holds no buffer (idle until now) takes one from the pool, or a fresh one.
pub(super) fn reserve_read(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = buffers::take();
    }
    if buf.capacity() - buf.len() < MIN_READ / 2 {
        buf.reserve(MIN_READ.max(buf.len()));
    }
}

/// Parses a request head out of `buf` (taking its bytes): `Ok(None)` while it is incomplete, `Err` for ELB's
/// refusal.
pub(crate) fn parse(buf: &mut BytesMut, limits: HeadLimits) -> Result<Option<Head>, ElbResponse> {
    let mut on_stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let slots = if limits.max_headers <= STACK_HEADERS {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut on_heap[..]
    };
    let mut parsed = httparse::Request::new(&mut []);
    let too_large = |buf: &[u8]| Err(too_large(buf, limits.max_uri_bytes));
    // Only the first `max_head_bytes` are parsed: a head already over the limit is 431 whatever follows, so the
    // verdict does not depend on how the bytes arrived (a malformed byte past the limit is not a 400 in one read
    // and a 431 in two).
    let within = &buf[..buf.len().min(limits.max_head_bytes)];
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        within,
        slots,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return too_large(within)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return too_large(within),
        Err(_) => return Err(ElbResponse::BadRequest),
    };
    let method = parsed.method.map(str::as_bytes).unwrap_or_default();
    let Ok(method) = Method::from_bytes(method) else {
        return Err(ElbResponse::BadRequest);
    };
    let target = Span::within(buf, parsed.path.map(str::as_bytes).unwrap_or_default());
    let http10 = parsed.version == Some(0);
    // Spans first: the head's bytes are frozen below, and the values share them instead of being copied.
    let fields = FieldSpans::new(buf, parsed.headers);
    let head = buf.split_to(length).freeze();
    let Ok(uri) = Uri::from_maybe_shared(target.of(&head)) else {
        return Err(ElbResponse::BadRequest);
    };
    let (headers, options) = header_map(&head, &fields)?;
    let (body, feed) = if options.framed {
        match request_body(&headers, http10, options.expect_continue) {
            Some((body, feed)) => (Some(body), feed),
            None => (None, None),
        }
    } else {
        (Some(RequestBody::Empty), None)
    };
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; it is answered, then the
    // connection closes.
    let close = if http10 {
        !options.keep_alive || headers.contains_key(TRANSFER_ENCODING)
    } else {
        options.close
    };
    let ignored_body = feed.is_some() && body_is_ignored_on(&method);
    let current = Current {
        http10,
        head_only: method == Method::HEAD,
        close: close || body.is_none() || ignored_body,
        unread: false,
    };
    let mut request = Request::new(body.unwrap_or(RequestBody::Empty));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        current,
        feed,
    }))
}

/// ELB's answer to a head over the limits: 414 when the request target alone is longer than `max_uri_bytes`
/// (the request line says so before any field does), else 431.
fn too_large(buf: &[u8], max_uri_bytes: usize) -> ElbResponse {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let target_len = match line.iter().position(|&b| b == b' ') {
        Some(start) => {
            let target = &line[start + 1..];
            target
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or(target.len())
        }
        None => 0,
    };
    if target_len > max_uri_bytes {
        ElbResponse::UriTooLong
    } else {
        ElbResponse::HeadersTooLarge
    }
}

/// What a request's `Connection` and `Expect` lines say.
#[derive(Debug, Default)]
struct Options {
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    /// `Content-Length` or `Transfer-Encoding` is present: the request may have a body.
    framed: bool,
}

/// The header map, built as received (nothing repaired, so the Check layer sees what the client sent), and the
/// options the connection acts on.
fn header_map(head: &Bytes, fields: &FieldSpans) -> Result<(HeaderMap, Options), ElbResponse> {
    // Room for what the proxy adds (X-Forwarded-For, -Proto, -Port, Host): growing the map rehashes it.
    let mut headers = HeaderMap::with_capacity(fields.as_slice().len() + 4);
    let mut options = Options::default();
    for (name, value) in fields.as_slice() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&head[name.range()]),
            HeaderValue::from_maybe_shared(value.of(head)),
        ) else {
            return Err(ElbResponse::BadRequest);
        };
        if name == CONNECTION {
            options.close |= has_token(value.as_bytes(), b"close");
            options.keep_alive |= has_token(value.as_bytes(), b"keep-alive");
        } else if name == EXPECT {
            options.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        } else if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            options.framed = true;
        }
        headers.append(name, value);
    }
    Ok((headers, options))
}

/// The request's body, and the feed that reads it off the socket (none for an empty body). `None` when the
/// framing is ambiguous: the stack refuses such a request.
fn request_body(
    headers: &HeaderMap,
    http10: bool,
    expect_continue: bool,
) -> Option<(RequestBody, Option<Feed>)> {
    let (body, length) = match headers::check_framing(headers) {
        Err(_) => return None,
        Ok(()) if headers.contains_key(TRANSFER_ENCODING) => (Download::Chunked(Chunk::Size), None),
        Ok(()) => match headers
            .get(CONTENT_LENGTH)
            .map(|v| parse_decimal(v.as_bytes()))
        {
            Some(Some(0)) | None => return Some((RequestBody::Empty, None)),
            Some(Some(length)) => (Download::Length(length), Some(length)),
            Some(None) => return None,
        },
    };
    let (client_body, sender) = ClientBody::channel(length);
    let feed = Feed {
        sender,
        body,
        expect_continue: expect_continue && !http10,
    };
    Some((RequestBody::Client(client_body), Some(feed)))
}

/// The connection's side of a [`ClientBody`]: decodes the body out of what the client sends, when the body asks.
pub(crate) struct Feed {
    sender: BodySender,
    body: Download,
    /// The client waits for `100 Continue` before it sends the body.
    expect_continue: bool,
}

/// Where a body's feed is after a poll.
#[derive(Debug)]
pub(super) enum Fed {
    /// More to come, when the body asks for it or the socket has it.
    Going,
    /// The whole body was handed on.
    Ended,
    /// The body was malformed or cut short: it has been told, and the connection must close after the response.
    Failed,
    /// The client's socket failed under the body (the body has been told).
    SocketFailed(io::Error),
}

impl Feed {
    /// Moves the body along when it has asked for more: decodes what was read, reads the socket when nothing is
    /// left, queues `100 Continue` the first time the socket is read. Never waits itself; the socket's readiness
    /// or the body's demand wakes the task.
    pub(super) fn poll<IO: Stream>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut IO,
        read_buf: &mut BytesMut,
        out: &mut WriteQueue,
        received: &IntCounter,
    ) -> Fed {
        self.sender.register(cx.waker());
        while self.sender.wanted() {
            match decode(&mut self.body, read_buf) {
                Ok(Some(frame)) => {
                    self.sender.send(Ok(frame));
                    if matches!(self.body, Download::Length(0) | Download::Done) {
                        return Fed::Ended;
                    }
                    return Fed::Going;
                }
                Ok(None) if matches!(self.body, Download::Done) => return Fed::Ended,
                Ok(None) => {}
                Err(error) => {
                    self.sender.send(Err(error));
                    return Fed::Failed;
                }
            }
            if self.expect_continue {
                self.expect_continue = false;
                out.push_static(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            reserve_read(read_buf);
            match io.poll_fill(cx, read_buf) {
                Poll::Ready(Ok(0)) => {
                    let cut =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "client closed mid-body");
                    self.sender.send(Err(cut));
                    return Fed::Failed;
                }
                Poll::Ready(Ok(n)) => received.inc_by(n as u64),
                Poll::Ready(Err(error)) => {
                    let failed = io::Error::new(error.kind(), "client socket failed");
                    self.sender.send(Err(failed));
                    return Fed::SocketFailed(error);
                }
                Poll::Pending => return Fed::Going,
            }
        }
        Fed::Going
    }
}

#[cfg(test)]
mod tests;
