//! An instance's response head, checked (RFC 9112 §6.3, RFC 9110 §7.6.1): its status, which header lines go on
//! to the client (hop-by-hop ones and those `Connection` names stay behind), how its body is delimited, whether the
//! connection stays open after it. A head that cannot be framed unambiguously (conflicting lengths, `101`
//! unasked) is the instance's error, a 502 for the client.
//!
//! For an HTTP/1 client the kept lines are passed on as received ([`RawHead`]); for an HTTP/2 client, whose server
//! needs a header map, one is built ([`build_response`]).

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::data_plane::back_end::error::BackendError;
use crate::data_plane::headers::websocket::Accept;
use crate::http1::fields::{
    content_length, is_hop_by_hop, last_token_is, put_field, tokens, trim_ows,
};
use crate::http1::framing::{Chunk, Download};
use crate::http1::head::{FieldSpans, Span};

/// Most header lines a response head may have (hyper's limit too); more is a 502.
const MAX_HEADERS: usize = 100;
/// Largest response head accepted; a longer one is a 502.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A response head read off an instance's connection.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// The status, and for an HTTP/2 client the header map; for an HTTP/1 client the lines are in `raw`.
    pub(crate) response: Response<()>,
    pub(crate) raw: Option<RawHead>,
    /// How the body is delimited.
    pub(crate) download: Download,
    /// Whether the connection may carry another request after this response.
    pub(crate) keep_alive: bool,
}

/// What a request asked its instance to switch to: what a `101 Switching Protocols` is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Switch {
    /// Nothing: a 101 is the instance's error.
    No,
    /// WebSocket, with the `Sec-WebSocket-Accept` the instance must answer when the request carried a key.
    WebSocket(Option<Accept>),
}

impl From<bool> for Switch {
    /// `true`: a WebSocket handshake whose accept is not checked (the fuzz targets' and tests' request).
    fn from(websocket: bool) -> Self {
        if websocket {
            Switch::WebSocket(None)
        } else {
            Switch::No
        }
    }
}

/// Reads a response head out of `buf` (taking its bytes), skipping interim 1xx responses. `Ok(None)`: not all of it
/// has arrived. `raw`: keep the header lines as received ([`RawHead`]) instead of building a header map.
/// `upgrade`: what the request asked to switch to; a `101 Switching Protocols` is its answer only when it asked
/// for WebSocket (any other 101 is the instance's error).
pub(crate) fn read_head(
    buf: &mut BytesMut,
    head_only: bool,
    raw: bool,
    upgrade: impl Into<Switch>,
) -> Result<Option<ResponseHead>, BackendError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        // Uninitialized slots: zeroing 100 of them on every response measured as 11 % of elbe's instructions.
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        // Parsed within the limit only: a head over it is a 502 however its bytes arrived (it was accepted when it
        // came whole in one read, refused when a first read held more than the limit without its end).
        let within = &buf[..buf.len().min(MAX_HEAD_BYTES)];
        let parsing = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            within,
            &mut slots,
        );
        let length = match parsing {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(BackendError::BadResponse("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(BackendError::BadResponse("malformed response head")),
        };
        let code = parsed.code.unwrap_or(0);
        if (100..200).contains(&code) && code != 101 {
            buf.advance(length);
            continue;
        }
        let fields = FieldSpans::new(buf, parsed.headers);
        let index = HeadIndex {
            code,
            http10: parsed.version == Some(0),
            // httparse returns a static "" (not a slice of `buf`) for a missing reason phrase and for one with
            // obs-text; both are no phrase (RFC 9110 §15.1: clients ignore it). Its position would be garbage.
            reason: parsed
                .reason
                .filter(|reason| !reason.is_empty())
                .map(|reason| Span::within(buf, reason.as_bytes())),
            fields: fields.as_slice(),
        };
        let head = buf.split_to(length).freeze();
        let scanned = if code == 101 {
            scan_switch(&head, &index, upgrade.into())?
        } else {
            scan_response(&head, &index, head_only)?
        };
        let (response, raw) = if raw {
            let mut response = Response::new(());
            *response.status_mut() = scanned.status;
            (response, Some(raw_head(&head, &index, &scanned)))
        } else {
            (build_response(&head, &index, &scanned)?, None)
        };
        return Ok(Some(ResponseHead {
            response,
            raw,
            download: scanned.download,
            keep_alive: scanned.keep_alive,
        }));
    }
}

/// A parsed response head, as positions in its bytes.
struct HeadIndex<'a> {
    pub code: u16,
    pub http10: bool,
    pub reason: Option<Span>,
    /// (name, value) of each header line.
    pub fields: &'a [(Span, Span)],
}

/// An instance's response head, checked: its status, the header lines that go on to the client (hop-by-hop ones
/// left out, RFC 9110 §7.6.1: they are the instance's business with elbe), how its body is delimited (RFC 9112
/// §6.3) and whether the connection stays open after it.
struct Scanned {
    pub status: StatusCode,
    /// Per header line of the head: whether it goes on to the client.
    keep: [bool; MAX_HEADERS],
    pub download: Download,
    pub keep_alive: bool,
}

/// Checks a response head without building anything from it.
fn scan_response(
    head: &Bytes,
    index: &HeadIndex<'_>,
    head_only: bool,
) -> Result<Scanned, BackendError> {
    let status = StatusCode::from_u16(index.code)
        .ok()
        .filter(|status| *status != StatusCode::SWITCHING_PROTOCOLS)
        .ok_or(BackendError::BadResponse("invalid status code"))?;
    let mut keep = [false; MAX_HEADERS];
    let mut framing = Framing::default();
    // Header names the Connection lines list, all of them (RFC 9110 §7.6.1: each is removed). Most responses
    // name none, and then nothing is allocated.
    let mut named: Vec<&[u8]> = Vec::new();
    let mut length_line = None;
    for (i, (name, value)) in index.fields.iter().enumerate() {
        let name_bytes = &head[name.range()];
        let value_bytes = &head[value.range()];
        if name_bytes.eq_ignore_ascii_case(b"connection") {
            framing.connection(value_bytes, |option| named.push(option));
        } else if name_bytes.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.chunked_last = last_token_is(value_bytes, b"chunked");
            framing.transfer_encoding = true;
        } else if name_bytes.eq_ignore_ascii_case(b"content-length") {
            framing.content_length(value_bytes)?;
            length_line = Some(i);
            keep[i] = true;
        } else {
            keep[i] = !is_hop_by_hop(name_bytes);
        }
    }
    for option in named {
        for (i, (name, _)) in index.fields.iter().enumerate() {
            if head[name.range()].eq_ignore_ascii_case(option) {
                keep[i] = false;
            }
        }
    }
    let mut keep_alive = if index.http10 {
        framing.keep_alive_token
    } else {
        !framing.close_token
    };
    let no_body =
        head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let download = if no_body {
        Download::Length(0)
    } else if framing.transfer_encoding {
        // Transfer-Encoding wins over Content-Length, but a response with both is suspect: not reused.
        if let Some(i) = length_line {
            keep_alive = false;
            keep[i] = false;
        }
        if framing.chunked_last {
            Download::Chunked(Chunk::Size)
        } else {
            Download::UntilClose
        }
    } else if let Some(length) = framing.length {
        Download::Length(length)
    } else {
        Download::UntilClose
    };
    if matches!(download, Download::UntilClose) {
        keep_alive = false;
    }
    Ok(Scanned {
        status,
        keep,
        download,
        keep_alive,
    })
}

/// Checks a `101 Switching Protocols`: only to a request that asked to switch to WebSocket, only to WebSocket,
/// and with the `Sec-WebSocket-Accept` its key calls for (RFC 6455 §4.2.2; a client would fail the connection, so
/// the instance's error is ELB's 502 instead of a tunnel to nowhere). Its `Upgrade` and `Connection` lines go on
/// to the client, who needs them to complete the handshake; the connection then carries the tunnel, never another
/// request.
fn scan_switch(
    head: &Bytes,
    index: &HeadIndex<'_>,
    upgrade: Switch,
) -> Result<Scanned, BackendError> {
    let Switch::WebSocket(expected) = upgrade else {
        return Err(BackendError::BadResponse(
            "101 to a request that did not ask to switch",
        ));
    };
    let mut keep = [false; MAX_HEADERS];
    let mut to_websocket = false;
    let mut accepted = expected.is_none();
    for (i, (name, value)) in index.fields.iter().enumerate() {
        let name = &head[name.range()];
        if let Some(expected) = &expected {
            if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
                accepted = trim_ows(&head[value.range()]) == expected;
            }
        }
        if name.eq_ignore_ascii_case(b"upgrade") {
            to_websocket =
                tokens(&head[value.range()]).any(|t| t.eq_ignore_ascii_case(b"websocket"));
            keep[i] = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            keep[i] = true;
        } else {
            keep[i] = !is_hop_by_hop(name) && !name.eq_ignore_ascii_case(b"content-length");
        }
    }
    if !to_websocket {
        return Err(BackendError::BadResponse(
            "101 to something other than WebSocket",
        ));
    }
    if !accepted {
        return Err(BackendError::BadResponse(
            "101 whose Sec-WebSocket-Accept does not answer the key",
        ));
    }
    Ok(Scanned {
        status: StatusCode::SWITCHING_PROTOCOLS,
        keep,
        download: Download::Length(0),
        keep_alive: false,
    })
}

/// The response as a header map, for a caller that asks for one (`Outgoing::raw_response` false; the proxy passes
/// heads on raw to both its HTTP/1 and HTTP/2 clients).
fn build_response(
    head: &Bytes,
    index: &HeadIndex<'_>,
    scanned: &Scanned,
) -> Result<Response<()>, BackendError> {
    let mut headers = HeaderMap::with_capacity(index.fields.len());
    for (i, (name, value)) in index.fields.iter().enumerate() {
        if scanned.keep[i] {
            let name = HeaderName::from_bytes(&head[name.range()])
                .map_err(|_| BackendError::BadResponse("invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(value.of(head))
                .map_err(|_| BackendError::BadResponse("invalid header value"))?;
            headers.append(name, value);
        }
    }
    let mut response = Response::new(());
    *response.status_mut() = scanned.status;
    *response.headers_mut() = headers;
    if let Some(reason) = index.reason.map(|span| span.of(head)) {
        let canonical = scanned.status.canonical_reason().map(str::as_bytes);
        if !reason.is_empty() && Some(&reason[..]) != canonical {
            if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
                response.extensions_mut().insert(reason);
            }
        }
    }
    Ok(response)
}

/// An instance's response head as it goes to an HTTP/1 client: the reason phrase and the header lines exactly as
/// the instance sent them (hop-by-hop lines left out), written on without being parsed into a header map.
/// Building the map and writing it out again measured as a sixth of elbe's work per request.
#[derive(Debug, Clone)]
pub(crate) struct RawHead {
    /// The reason phrase (may be empty).
    pub reason: Bytes,
    /// The kept header lines, each ending in CRLF.
    pub lines: Bytes,
    /// One of the lines is `Content-Length` (the body's framing).
    pub has_length: bool,
}

impl RawHead {
    /// The values of the header lines named `name` (any case), in order, trimmed: how a layer reads an instance's
    /// response headers without the header map an HTTP/1 client's response never builds.
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// Each header line as its name (as the instance wrote it) and its value, trimmed of whitespace and the CRLF.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut rest = &self.lines[..];
        std::iter::from_fn(move || loop {
            if rest.is_empty() {
                return None;
            }
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
            let (line, after) = rest.split_at(end);
            rest = after;
            if let Some(colon) = memchr::memchr(b':', line) {
                return Some((&line[..colon], line[colon + 1..].trim_ascii()));
            }
        })
    }
}

fn raw_head(head: &Bytes, index: &HeadIndex<'_>, scanned: &Scanned) -> RawHead {
    let reason = index.reason.map_or_else(Bytes::new, |span| span.of(head));
    let kept = || {
        index
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| scanned.keep[*i])
    };
    let has_length =
        kept().any(|(_, (name, _))| head[name.range()].eq_ignore_ascii_case(b"content-length"));
    // Lines are taken whole (name through CRLF). When the kept ones are contiguous in the head (typically only
    // `Connection` is dropped, and instances put it first or last) they are one slice of it, no copy.
    let line_end = |value: &Span| {
        if head[value.end()..].starts_with(b"\r\n") {
            Some(value.end() + 2)
        } else {
            None
        }
    };
    let mut first = None;
    let mut contiguous = true;
    let mut end = 0;
    for (_, (name, value)) in kept() {
        match first {
            None => first = Some(name.start()),
            Some(_) => contiguous &= name.start() == end,
        }
        // A line that ends in a bare LF is written anew with CRLF (the kept lines are then copied).
        match line_end(value) {
            Some(e) => end = e,
            None => contiguous = false,
        }
    }
    let lines = match first {
        None => Bytes::new(),
        Some(start) if contiguous => head.slice(start..end),
        Some(_) => {
            let mut lines = BytesMut::with_capacity(head.len());
            for (_, (name, value)) in kept() {
                put_field(&mut lines, &head[name.range()], &head[value.range()]);
            }
            lines.freeze()
        }
    };
    RawHead {
        reason,
        lines,
        has_length,
    }
}

/// What a response head says about its framing and its connection.
#[derive(Debug, Default)]
struct Framing {
    /// The Content-Length every line agreed on.
    length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding is `chunked` (RFC 9112 §6.3: otherwise the body runs until close).
    chunked_last: bool,
    close_token: bool,
    keep_alive_token: bool,
}

impl Framing {
    /// Notes `close` and `keep-alive` in a Connection line; any other option names a header to remove.
    fn connection<'a>(&mut self, line: &'a [u8], mut named: impl FnMut(&'a [u8])) {
        for option in tokens(line) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close_token = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive_token = true;
            } else {
                named(option);
            }
        }
    }

    /// A Content-Length line: every value (lines and comma lists) must be the same valid number.
    fn content_length(&mut self, line: &[u8]) -> Result<(), BackendError> {
        let bad = || BackendError::BadResponse("invalid Content-Length");
        let length = content_length(line).ok_or_else(bad)?;
        if self.length.is_some_and(|seen| seen != length) {
            return Err(bad());
        }
        self.length = Some(length);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
