//! Writing responses to a client: the head (an instance's lines as received, or elbe's own as ELB writes them),
//! and the body as it arrives, framed for the client.
//!
//! An instance's response head reaches an HTTP/1 client as the instance sent it, hop-by-hop lines left out
//! ([`crate::data_plane::back_end::http1::RawHead`]); the response's header map holds only what elbe's layers
//! added. The body goes with `Content-Length` when its length is known, else chunked (HTTP/1.1 clients) or framed
//! by closing the connection (HTTP/1.0). The `Connection` line says what the connection will actually do next.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{Response, StatusCode};
use http_body::Body;

use super::request::Current;
use crate::data_plane::back_end::http1::InstanceStream;
use crate::data_plane::back_end::http1::RawHead;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::proxy::ElbGenerated;
use crate::http1::fields::{has_token, put_field};
use crate::http1::framing::{chunk_size_line, last_chunk_with, CHUNK_END, LAST_CHUNK};
use crate::http1::io::{WriteQueue, MAX_IOVECS};

/// Response bytes queued before they are written.
const MAX_QUEUED: usize = 64 * 1024;

/// How a response body is framed for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outbound {
    /// No body (HEAD, 204, 304, or length 0).
    None,
    Length,
    Chunked,
    /// HTTP/1.0 without a length: the body ends when the connection closes.
    UntilClose,
}

/// A response being written: its body, and how it is framed.
pub(super) struct Responding {
    body: ResponseBody,
    framing: Outbound,
    /// The body has ended (the last chunk is queued).
    ended: bool,
}

/// What moving a response body's frames into the write queue came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Moved {
    /// The queue is full, or the body ended (see [`Responding::ended`]).
    Queued,
    /// The body has nothing more now; it wakes the task when it has.
    Waiting,
    /// The instance's body broke off: the client can only learn that from the connection closing early.
    Failed,
}

/// Queues the head of `response` and returns the response being written. `current.close` is set when the
/// connection must close after it (the client asked, the response asked, shutdown, HTTP/1.0 without a length).
pub(super) fn start(
    response: Response<ResponseBody>,
    current: &mut Current,
    shutting_down: bool,
    out: &mut WriteQueue,
) -> Responding {
    if let Some(&ElbGenerated(kind)) = response.extensions().get::<ElbGenerated>() {
        // ELB's own, written as ELB writes it; the body is empty and carries the request's bookkeeping.
        current.close |= shutting_down || kind.closes_connection();
        out.push(kind.http1_bytes(current.http10, current.close));
        return Responding {
            body: response.into_body(),
            framing: Outbound::None,
            ended: true,
        };
    }
    let (parts, mut body) = response.into_parts();
    let raw = body.take_raw_head();
    let reason = reason(&parts, raw.as_ref());
    let mut size = 32 + reason.len() + raw.as_ref().map_or(0, |raw| raw.lines.len());
    for (name, value) in &parts.headers {
        size += name.as_str().len() + value.len() + 4;
    }
    let mut head = Vec::with_capacity(size);
    head.put_slice(if current.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    head.put_slice(parts.status.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(reason);
    head.put_slice(b"\r\n");
    let mut says_keep_alive = false;
    let mut says_length = false;
    if let Some(raw) = &raw {
        head.put_slice(&raw.lines);
        says_length = raw.has_length;
    }
    for (name, value) in &parts.headers {
        if name == CONNECTION {
            // The line itself is written below, from what this connection will actually do.
            current.close |= has_token(value.as_bytes(), b"close");
            says_keep_alive |= has_token(value.as_bytes(), b"keep-alive");
            continue;
        } else if name == CONTENT_LENGTH {
            says_length = true;
        }
        put_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = framing(&mut head, parts.status, says_length, &body, current);
    current.close |= shutting_down;
    if current.close {
        head.put_slice(b"connection: close\r\n");
    } else if current.http10 || says_keep_alive {
        head.put_slice(b"connection: keep-alive\r\n");
    }
    head.put_slice(b"\r\n");
    out.push(Bytes::from(head));
    let ended = framing == Outbound::None || body.is_end_stream();
    Responding {
        body,
        framing,
        ended,
    }
}

/// The reason phrase: the instance's own, else one a layer set, else the status's canonical one.
fn reason<'a>(parts: &'a http::response::Parts, raw: Option<&'a RawHead>) -> &'a [u8] {
    match raw {
        Some(raw) if !raw.reason.is_empty() => &raw.reason[..],
        _ => parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| r.as_bytes())
            .or(parts.status.canonical_reason().map(str::as_bytes))
            .unwrap_or_default(),
    }
}

/// How the body is framed for this client, with the framing line it needs written into `head`.
fn framing(
    head: &mut Vec<u8>,
    status: StatusCode,
    says_length: bool,
    body: &ResponseBody,
    current: &mut Current,
) -> Outbound {
    let no_body = current.head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if no_body {
        Outbound::None
    } else if says_length {
        Outbound::Length
    } else if let Some(length) = body.size_hint().exact() {
        put_field(head, b"content-length", length.to_string().as_bytes());
        if length == 0 {
            Outbound::None
        } else {
            Outbound::Length
        }
    } else if !current.http10 {
        head.put_slice(b"transfer-encoding: chunked\r\n");
        Outbound::Chunked
    } else {
        current.close = true;
        Outbound::UntilClose
    }
}

impl Responding {
    /// Whether the whole body is queued.
    pub(super) fn ended(&self) -> bool {
        self.ended
    }

    /// After an instance's `101 Switching Protocols`: its socket and the bytes it sent past the head.
    pub(super) fn take_switched(&mut self) -> Option<(InstanceStream, bytes::Bytes)> {
        self.body.take_switched()
    }

    /// The body, which carries the request's bookkeeping until it is dropped.
    pub(super) fn into_body(self) -> ResponseBody {
        self.body
    }

    /// Moves body frames into `out` while there is room, framed for the client; `progress` counts the frames
    /// (the connection's idle timer reads it).
    pub(super) fn poll_move(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut WriteQueue,
        progress: &mut u64,
    ) -> Moved {
        let mut moved = Moved::Queued;
        while !self.ended && out.bytes() < MAX_QUEUED && out.buffers() < MAX_IOVECS - 2 {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        *progress += 1;
                        if self.framing == Outbound::Chunked {
                            out.push(chunk_size_line(data.len()));
                            out.push(data);
                            out.push_static(CHUNK_END);
                        } else {
                            out.push(data);
                        }
                    }
                    Err(frame) => {
                        if let (Outbound::Chunked, Ok(trailers)) =
                            (self.framing, frame.into_trailers())
                        {
                            out.push(last_chunk_with(&trailers));
                            self.framing = Outbound::None;
                        }
                    }
                },
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(%error, "response body failed; closing the client connection");
                    return Moved::Failed;
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => {
                    moved = Moved::Waiting;
                    break;
                }
            }
            if self.body.is_end_stream() {
                self.ended = true;
            }
        }
        if self.ended && self.framing == Outbound::Chunked {
            self.framing = Outbound::None;
            out.push_static(LAST_CHUNK);
        }
        moved
    }
}
