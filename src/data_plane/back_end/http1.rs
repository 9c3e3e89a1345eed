//! elbe's HTTP/1.1 client: one keep-alive connection to an instance, and the exchange of one request on it.
//!
//! Why elbe speaks HTTP/1.1 to instances itself rather than through hyper's client connection: hyper runs every
//! client connection on a task of its own and passes each request and response across channels, so a proxied
//! request costs two extra task wake-ups. Measured, that hop was the largest part of elbe's per-request cost
//! (BENCHMARKS.md). Here an [`Exchange`] is driven by whoever polls it, the client connection's own task: a
//! request costs one write and one read on the instance's socket and nothing else. Between requests a
//! [`BackendConnection`] is a plain value sitting in the lock-free pool.
//!
//! Scope, RFC 9112: requests go out with `Content-Length` or chunked framing (whatever the client's body needs);
//! responses are read with `Content-Length`, chunked or close-delimited framing; interim 1xx responses are skipped;
//! a response that cannot be framed unambiguously is a 502. Request and response bodies stream frame by frame in
//! both directions at once: an instance that answers before it has read the whole request body gets the rest
//! while its answer streams back.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use crate::data_plane::back_end::error::BackendError;
use crate::data_plane::body::RequestBody;
use crate::data_plane::headers;
use crate::http1::framing::{decode, Chunk, Download, FieldSpans, Span};

/// Most header lines a response head may have (hyper's limit too); more is a 502.
const MAX_HEADERS: usize = 100;
/// Largest response head accepted; a longer one is a 502.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Reads start this large and double while they fill the buffer (a large download), up to `MAX_READ`.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;
/// Buffers written to the socket in one `writev`.
const MAX_IOVECS: usize = 16;

/// An open HTTP/1.1 connection to an instance, idle or carrying one exchange.
pub struct BackendConnection {
    stream: TcpStream,
    /// Bytes read from the instance and not consumed yet.
    read_buf: BytesMut,
    /// How much the next read asks for.
    read_size: usize,
}

impl BackendConnection {
    /// Connects to an instance, bounded by the connect timeout.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, BackendError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(BackendError::Connect { addr, source }),
            Err(_) => return Err(BackendError::ConnectTimeout { addr }),
        };
        // Request heads are written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        Ok(BackendConnection {
            stream,
            read_buf: BytesMut::new(),
            read_size: MIN_READ,
        })
    }

    /// Whether the instance closed this idle connection (or sent something unasked) while it sat in the pool.
    /// Costs a system call only when the reactor has seen the socket become readable; a close it has not seen
    /// yet is the keep-alive race, which the caller handles by replaying (or answering 504, as ELB does).
    pub fn closed_while_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => match self.stream.try_read_buf(&mut self.read_buf) {
                Err(error) => error.kind() != io::ErrorKind::WouldBlock,
                // End of stream, or bytes nobody asked for: either way not a connection to send on.
                Ok(_) => true,
            },
        }
    }

    /// Reads what the instance sent into `read_buf`; `Ok(0)` is the end of the stream. Reads grow while they
    /// fill the buffer (a large download).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < self.read_size / 2 {
            self.read_buf.reserve(self.read_size);
        }
        let asked = self.read_buf.capacity() - self.read_buf.len();
        let n = ready!(crate::http1::io::poll_read_drained(
            &self.stream,
            cx,
            &mut self.read_buf
        ))?;
        if n == asked {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Writes `head` from `head_written` on, then `queue`, front first, dropping each queued buffer once written
    /// and moving `head_written` on. `Ok`: all written; on `Pending` or an error, what was written is accounted.
    fn poll_write_all(
        &mut self,
        head: &[u8],
        head_written: &mut usize,
        queue: &mut VecDeque<Bytes>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while *head_written < head.len() || !queue.is_empty() {
            ready!(self.stream.poll_write_ready(cx))?;
            let first = &head[*head_written..];
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let buffers = std::iter::once(first)
                .filter(|b| !b.is_empty())
                .chain(queue.iter().map(|b| &b[..]));
            let mut count = 0;
            for (slice, buf) in slices.iter_mut().zip(buffers) {
                *slice = IoSlice::new(buf);
                count += 1;
            }
            let written = match self.stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            };
            let from_first = written.min(first.len());
            *head_written += from_first;
            advance(queue, written - from_first);
        }
        Poll::Ready(Ok(()))
    }
}

/// Drops `n` written bytes from the front of `queue`.
fn advance(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if n >= front.len() {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The request

/// How a request body is framed on the wire to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestFraming {
    /// No body, or one of known length: bytes as they come.
    Plain,
    /// A body of unknown length (an HTTP/2 client's, or a chunked one): re-chunked.
    Chunked,
}

/// A request serialized for an instance whose body has not been sent: what a retry on another connection, or
/// another instance, sends again. The head is kept as bytes, so resending it costs nothing.
pub struct Outgoing {
    head: Bytes,
    body: Option<RequestBody>,
    framing: RequestFraming,
    /// Idempotent (RFC 9110 §9.2.2) and body-less: safe to send again after an instance may have seen it.
    replayable: bool,
    /// HEAD: the response has no body, whatever its headers say.
    head_only: bool,
    /// The client speaks HTTP/1: the response head is passed on as received ([`RawHead`]) instead of as a header
    /// map.
    pub raw_response: bool,
}

impl Outgoing {
    /// Serializes a request already rewritten for the instance (origin-form target, hop-by-hop headers gone).
    pub fn new(request: Request<RequestBody>) -> Self {
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
        Outgoing {
            head: serialize_head(&parts, length, framing),
            body,
            framing,
            replayable,
            head_only: parts.method == Method::HEAD,
            raw_response: false,
        }
    }

    /// Whether the request has a body still to send (it cannot be replayed once the body has started).
    pub fn has_body(&self) -> bool {
        self.body.is_some()
    }
}

/// The request line and headers, with the framing header elbe decided on (a client's own `Content-Length` is
/// replaced when the body's length is known, and dropped when the body is re-chunked).
fn serialize_head(
    parts: &http::request::Parts,
    length: Option<u64>,
    framing: RequestFraming,
) -> Bytes {
    const CHUNKED: &[u8] = b"transfer-encoding: chunked\r\n";
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
    let mut head = Vec::with_capacity(size);
    head.put_slice(parts.method.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(target.as_bytes());
    head.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if !skip(name) {
            put_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if let Some(length) = &length {
        put_header(&mut head, b"content-length", length.as_bytes());
    }
    if framing == RequestFraming::Chunked {
        head.put_slice(CHUNKED);
    }
    head.put_slice(b"\r\n");
    debug_assert_eq!(head.len(), size);
    Bytes::from(head)
}

fn put_header(buf: &mut impl BufMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

// ---------------------------------------------------------------------------------------------------------------
// The exchange

/// What may be done with a request whose exchange failed before a response head arrived.
pub enum Resend {
    /// Not a byte of it reached the instance: it can go anywhere.
    Anywhere(Outgoing),
    /// It reached the instance, which closed the connection without answering; the request is safe to send
    /// again, once, on a fresh connection (the keep-alive race, DESIGN.md).
    Once(Outgoing),
    /// It cannot be sent again.
    Never,
}

/// One request on a connection and its response: driven by the request's future until the response head has
/// arrived, then by the response body until the response ends.
pub struct Exchange {
    conn: BackendConnection,
    request: Outgoing,
    /// How much of the request head has been written (an offset, not a copy: cloning the head's `Bytes` would
    /// allocate).
    head_written: usize,
    /// Framed body data queued behind the head.
    to_write: VecDeque<Bytes>,
    wrote_any: bool,
    body_started: bool,
    /// The instance stopped taking the request (it closed or reset); its answer may still be readable.
    write_failed: bool,
    received_any: bool,
    /// How the response body is delimited (`Done` until the head has arrived).
    response: Download,
    keep_alive: bool,
    /// The response head, for an HTTP/1 client ([`Outgoing::raw_response`]).
    raw: Option<RawHead>,
}

impl Exchange {
    pub fn new(conn: BackendConnection, request: Outgoing) -> Self {
        Exchange {
            conn,
            head_written: 0,
            request,
            to_write: VecDeque::new(),
            wrote_any: false,
            body_started: false,
            write_failed: false,
            received_any: false,
            response: Download::Done,
            keep_alive: false,
            raw: None,
        }
    }

    /// Sends the request and waits for the response head (interim 1xx responses skipped).
    pub async fn response_head(&mut self) -> Result<Response<()>, BackendError> {
        std::future::poll_fn(|cx| self.poll_head(cx)).await
    }

    /// After a failed [`Exchange::response_head`]: whether and where the request may be sent again.
    pub fn resend(self, error: &BackendError) -> Resend {
        if self.body_started || self.received_any {
            return Resend::Never;
        }
        if !self.wrote_any {
            return Resend::Anywhere(self.request);
        }
        match error {
            BackendError::Closed(_) if self.request.replayable => Resend::Once(self.request),
            _ => Resend::Never,
        }
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response<()>, BackendError>> {
        loop {
            if let Poll::Ready(Err(error)) = self.poll_upload(cx) {
                return Poll::Ready(Err(BackendError::ClientBody(error)));
            }
            if let Some(response) = self.parse_head()? {
                return Poll::Ready(Ok(response));
            }
            match ready!(self.conn.poll_fill(cx)) {
                Ok(0) if self.received_any => {
                    return Poll::Ready(Err(BackendError::BadResponse(
                        "closed in the response head",
                    )))
                }
                Ok(0) => {
                    let closed =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "closed without answering");
                    return Poll::Ready(Err(BackendError::Closed(closed)));
                }
                Ok(_) => self.received_any = true,
                Err(error) => return Poll::Ready(Err(BackendError::Closed(error))),
            }
        }
    }

    /// Writes what is queued and feeds the request body in, frame by frame, as the socket takes it. `Ready(Ok)`
    /// once the whole request is out (or the instance stopped taking it); an error is the client's body failing.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.write_failed {
                return Poll::Ready(Ok(()));
            }
            if self.head_written < self.request.head.len() || !self.to_write.is_empty() {
                let head_written = self.head_written;
                let written = self.conn.poll_write_all(
                    &self.request.head,
                    &mut self.head_written,
                    &mut self.to_write,
                    cx,
                );
                self.wrote_any |= self.head_written > head_written;
                match written {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "instance stopped taking the request");
                        self.write_failed = true;
                        self.head_written = self.request.head.len();
                        self.to_write.clear();
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            let Some(body) = self.request.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    self.body_started = true;
                    self.queue_frame(frame);
                }
                Some(Err(error)) => {
                    self.request.body = None;
                    self.write_failed = true;
                    return Poll::Ready(Err(error));
                }
                None => {
                    self.body_started = true;
                    self.request.body = None;
                    if self.request.framing == RequestFraming::Chunked {
                        self.to_write.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
            }
        }
    }

    fn queue_frame(&mut self, frame: Frame<Bytes>) {
        let chunked = self.request.framing == RequestFraming::Chunked;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) if chunked => {
                self.to_write
                    .push_back(Bytes::from(format!("{:x}\r\n", data.len())));
                self.to_write.push_back(data);
                self.to_write.push_back(Bytes::from_static(b"\r\n"));
            }
            Ok(data) => self.to_write.push_back(data),
            Err(frame) => {
                // Trailers end a chunked body; a body of known length has nowhere to put them.
                let Ok(trailers) = frame.into_trailers() else {
                    return;
                };
                if chunked {
                    let mut last = BytesMut::from(&b"0\r\n"[..]);
                    for (name, value) in &trailers {
                        put_header(&mut last, name.as_str().as_bytes(), value.as_bytes());
                    }
                    last.put_slice(b"\r\n");
                    self.to_write.push_back(last.freeze());
                    self.request.body = None;
                }
            }
        }
    }

    /// Parses a response head from what has been read, skipping interim responses. `None`: not all there yet.
    fn parse_head(&mut self) -> Result<Option<Response<()>>, BackendError> {
        loop {
            if self.conn.read_buf.is_empty() {
                return Ok(None);
            }
            // Uninitialized slots: zeroing 100 of them on every response measured as 11 % of elbe's instructions.
            let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let parsing = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                &self.conn.read_buf,
                &mut slots,
            );
            let length = match parsing {
                Ok(httparse::Status::Complete(length)) => length,
                Ok(httparse::Status::Partial) if self.conn.read_buf.len() > MAX_HEAD_BYTES => {
                    return Err(BackendError::BadResponse("response head too large"))
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(BackendError::BadResponse("malformed response head")),
            };
            let code = parsed.code.unwrap_or(0);
            if (100..200).contains(&code) && code != 101 {
                self.conn.read_buf.advance(length);
                continue;
            }
            let buf = &self.conn.read_buf[..];
            let fields = FieldSpans::new(buf, parsed.headers);
            let index = HeadIndex {
                code,
                http10: parsed.version == Some(0),
                reason: parsed
                    .reason
                    .map(|reason| Span::within(buf, reason.as_bytes())),
                fields: fields.as_slice(),
            };
            let head = self.conn.read_buf.split_to(length).freeze();
            let scanned = scan_response(&head, &index, self.request.head_only)?;
            let response = if self.request.raw_response {
                self.raw = Some(raw_head(&head, &index, &scanned));
                let mut response = Response::new(());
                *response.status_mut() = scanned.status;
                response
            } else {
                build_response(&head, &index, &scanned)?
            };
            self.response = scanned.download;
            self.keep_alive = scanned.keep_alive;
            return Ok(Some(response));
        }
    }
}

/// A parsed response head, as positions in its bytes.
struct HeadIndex<'a> {
    code: u16,
    http10: bool,
    reason: Option<Span>,
    /// (name, value) of each header line.
    fields: &'a [(Span, Span)],
}

/// An instance's response head, checked: its status, the header lines that go on to the client (hop-by-hop ones
/// left out, RFC 9110 §7.6.1: they are the instance's business with elbe), how its body is delimited (RFC 9112
/// §6.3) and whether the connection stays open after it.
struct Scanned {
    status: StatusCode,
    /// Per header line of the head: whether it goes on to the client.
    keep: [bool; MAX_HEADERS],
    download: Download,
    keep_alive: bool,
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
    // Header names the Connection lines list (more than a few is unheard of; beyond 16 they are ignored).
    let mut named = [Span(0, 0); 16];
    let mut named_len = 0;
    let mut length_line = None;
    for (i, (name, value)) in index.fields.iter().enumerate() {
        let name_bytes = &head[name.0..name.1];
        let value_bytes = &head[value.0..value.1];
        if name_bytes.eq_ignore_ascii_case(b"connection") {
            framing.connection(value_bytes, |option| {
                if let Some(slot) = named.get_mut(named_len) {
                    let start = option.as_ptr() as usize - head.as_ptr() as usize;
                    *slot = Span(start, start + option.len());
                    named_len += 1;
                }
            });
        } else if name_bytes.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.chunked_last = last_token_is(value_bytes, b"chunked");
            framing.transfer_encoding = true;
        } else if name_bytes.eq_ignore_ascii_case(b"content-length") {
            framing.content_length(value_bytes)?;
            length_line = Some(i);
            keep[i] = true;
        } else {
            keep[i] = !headers::is_hop_by_hop_name(name_bytes);
        }
    }
    for option in &named[..named_len] {
        let option = &head[option.0..option.1];
        for (i, (name, _)) in index.fields.iter().enumerate() {
            if head[name.0..name.1].eq_ignore_ascii_case(option) {
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

/// The response as a header map, for clients whose server needs one (hyper's HTTP/2 server).
fn build_response(
    head: &Bytes,
    index: &HeadIndex<'_>,
    scanned: &Scanned,
) -> Result<Response<()>, BackendError> {
    let mut headers = HeaderMap::with_capacity(index.fields.len());
    for (i, (name, value)) in index.fields.iter().enumerate() {
        if scanned.keep[i] {
            let name = HeaderName::from_bytes(&head[name.0..name.1])
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
pub struct RawHead {
    /// The reason phrase (may be empty).
    pub reason: Bytes,
    /// The kept header lines, each ending in CRLF.
    pub lines: Bytes,
    /// One of the lines is `Content-Length` (the body's framing).
    pub has_length: bool,
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
        kept().any(|(_, (name, _))| head[name.0..name.1].eq_ignore_ascii_case(b"content-length"));
    // Lines are taken whole (name through CRLF). When the kept ones are contiguous in the head (typically only
    // `Connection` is dropped, and instances put it first or last) they are one slice of it, no copy.
    let line_end = |value: &Span| {
        if head[value.1..].starts_with(b"\r\n") {
            Some(value.1 + 2)
        } else {
            None
        }
    };
    let mut first = None;
    let mut contiguous = true;
    let mut end = 0;
    for (_, (name, value)) in kept() {
        match (first, line_end(value)) {
            (_, None) => contiguous = false,
            (None, Some(e)) => {
                first = Some(name.0);
                end = e;
            }
            (Some(_), Some(e)) => {
                contiguous &= name.0 == end;
                end = e;
            }
        }
    }
    let lines = match first {
        None => Bytes::new(),
        Some(start) if contiguous => head.slice(start..end),
        Some(_) => {
            let mut lines = BytesMut::with_capacity(head.len());
            for (_, (name, value)) in kept() {
                put_header(&mut lines, &head[name.0..name.1], &head[value.0..value.1]);
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

impl Exchange {
    /// The next frame of the response body, keeping the request body going meanwhile.
    pub fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if let Poll::Ready(Err(error)) = self.poll_upload(cx) {
            return Poll::Ready(Some(Err(error)));
        }
        loop {
            match decode(&mut self.response, &mut self.conn.read_buf) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if matches!(self.response, Download::Done) => return Poll::Ready(None),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
            match ready!(self.conn.poll_fill(cx)) {
                Ok(0) => {
                    if matches!(self.response, Download::UntilClose) {
                        self.response = Download::Done;
                        return Poll::Ready(None);
                    }
                    let cut =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "instance closed mid-body");
                    return Poll::Ready(Some(Err(cut)));
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }

    /// The response head as received, when the request asked for it ([`Outgoing::raw_response`]).
    pub fn take_raw_head(&mut self) -> Option<RawHead> {
        self.raw.take()
    }

    /// Whether the response body is complete.
    pub fn is_end_stream(&self) -> bool {
        matches!(self.response, Download::Done | Download::Length(0))
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.response {
            Download::Length(n) => SizeHint::with_exact(n),
            Download::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The connection, if the exchange ended so cleanly that the next request can use it: the whole request
    /// sent, the whole response read and nothing more, and neither side asked to close.
    pub fn into_reusable(self) -> Option<BackendConnection> {
        let clean = self.is_end_stream()
            && self.keep_alive
            && self.request.body.is_none()
            && self.head_written == self.request.head.len()
            && self.to_write.is_empty()
            && !self.write_failed
            && self.conn.read_buf.is_empty();
        clean.then_some(self.conn)
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
        for option in line.split(|&b| b == b',') {
            let option = option.trim_ascii();
            if option.eq_ignore_ascii_case(b"close") {
                self.close_token = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive_token = true;
            } else if !option.is_empty() {
                named(option);
            }
        }
    }

    /// A Content-Length line: every value (lines and comma lists) must be the same valid number.
    fn content_length(&mut self, line: &[u8]) -> Result<(), BackendError> {
        let bad = || BackendError::BadResponse("invalid Content-Length");
        for value in line.split(|&b| b == b',') {
            let value = value.trim_ascii();
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let parsed = value
                .iter()
                .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
            if self.length.is_some_and(|seen| seen != parsed) {
                return Err(bad());
            }
            self.length = Some(parsed);
        }
        Ok(())
    }
}

/// Whether the last comma-separated token of a header line is `token` (case-insensitive).
fn last_token_is(line: &[u8], token: &[u8]) -> bool {
    line.rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An instance that answers each request head it reads with the next of `answers` (written in pieces of
    /// `piece` bytes), then closes. Returns its address and the request heads it read.
    async fn scripted(
        answers: Vec<&'static [u8]>,
        piece: usize,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut heads = Vec::new();
            let mut buf = Vec::new();
            for answer in answers {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client closed before its request head");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                heads.push(String::from_utf8(buf.drain(..end).collect()).unwrap());
                for part in answer.chunks(piece) {
                    stream.write_all(part).await.unwrap();
                    stream.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            heads
        });
        (addr, task)
    }

    fn get(path: &str) -> Outgoing {
        let request = Request::get(path)
            .header("host", "app.example")
            .body(RequestBody::Empty)
            .unwrap();
        Outgoing::new(request)
    }

    async fn open(addr: SocketAddr, request: Outgoing) -> Exchange {
        let conn = BackendConnection::connect(addr, Duration::from_secs(5))
            .await
            .unwrap();
        Exchange::new(conn, request)
    }

    /// Reads the whole response body: (data, trailers).
    async fn body(exchange: &mut Exchange) -> (Vec<u8>, Option<HeaderMap>) {
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = std::future::poll_fn(|cx| exchange.poll_body(cx)).await {
            match frame.unwrap().into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        (data, trailers)
    }

    #[tokio::test]
    async fn a_content_length_response_arriving_byte_by_byte_leaves_the_connection_reusable() {
        let (addr, server) = scripted(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nX-Secret: s\r\n\r\nhello"],
            1,
        )
        .await;
        let mut exchange = open(addr, get("/x?y=1")).await;
        let response = exchange.response_head().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-backend"], "a");
        // Hop-by-hop headers, and those Connection names, stay between elbe and the instance.
        for gone in ["connection", "keep-alive", "x-secret"] {
            assert!(!response.headers().contains_key(gone), "{gone}");
        }
        assert_eq!(response.headers()["content-length"], "5");
        assert_eq!(body(&mut exchange).await.0, b"hello");
        assert!(exchange.into_reusable().is_some());
        let heads = server.await.unwrap();
        assert_eq!(heads[0], "GET /x?y=1 HTTP/1.1\r\nhost: app.example\r\n\r\n");
    }

    /// The head an HTTP/1 client gets for `response` (sent by a scripted instance).
    async fn raw(response: &'static [u8]) -> (u16, RawHead) {
        let (addr, _server) = scripted(vec![response], 1).await;
        let mut request = get("/");
        request.raw_response = true;
        let mut exchange = open(addr, request).await;
        let response = exchange.response_head().await.unwrap();
        assert!(
            response.headers().is_empty(),
            "the lines travel raw, not as a map"
        );
        (
            response.status().as_u16(),
            exchange.take_raw_head().unwrap(),
        )
    }

    #[tokio::test]
    async fn raw_heads_keep_the_instances_lines_verbatim_without_hop_by_hop_ones() {
        // Connection last, as nginx sends it: the kept lines are one slice of the head.
        let (status, head) = raw(b"HTTP/1.1 201 Made It\r\nServer: x\r\nCONTENT-length: 2\r\nSet-Cookie: a=b\r\nConnection: keep-alive\r\n\r\nok").await;
        assert_eq!(status, 201);
        assert_eq!(head.reason, "Made It");
        assert_eq!(
            head.lines,
            "Server: x\r\nCONTENT-length: 2\r\nSet-Cookie: a=b\r\n"
        );
        assert!(head.has_length);
        // Dropped lines in the middle (and one Connection names), a bare LF: the kept lines are rebuilt with CRLF.
        let (_, head) = raw(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\nConnection: X-Secret\r\nX-Secret: s\r\nX-B: 2\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
        assert_eq!(head.lines, "X-A: 1\r\nX-B: 2\r\n");
        assert!(!head.has_length);
        // Transfer-Encoding with Content-Length: the length is not passed on.
        let (_, head) = raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(head.lines, "");
        assert!(!head.has_length);
    }

    #[tokio::test]
    async fn chunked_responses_are_decoded_with_extensions_and_trailers() {
        let (addr, _server) = scripted(
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n"],
            3,
        )
        .await;
        let mut exchange = open(addr, get("/")).await;
        let response = exchange.response_head().await.unwrap();
        // Hop-by-hop: hyper frames the body for the client itself.
        assert!(!response.headers().contains_key("transfer-encoding"));
        let (data, trailers) = body(&mut exchange).await;
        assert_eq!(data, b"hello, world");
        assert_eq!(trailers.unwrap()["x-sum"], "12");
        assert!(exchange.into_reusable().is_some());
    }

    #[tokio::test]
    async fn a_body_without_length_runs_until_close_and_the_connection_is_not_reused() {
        let (addr, _server) =
            scripted(vec![b"HTTP/1.1 200 OK\r\n\r\nstreamed until close"], 4).await;
        let mut exchange = open(addr, get("/")).await;
        exchange.response_head().await.unwrap();
        assert_eq!(body(&mut exchange).await.0, b"streamed until close");
        assert!(exchange.into_reusable().is_none());
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_the_reason_phrase_is_kept() {
        let (addr, _server) = scripted(
            vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Nothing Here\r\nContent-Length: 0\r\n\r\n"],
            7,
        )
        .await;
        let mut exchange = open(addr, get("/")).await;
        let response = exchange.response_head().await.unwrap();
        assert_eq!(response.status(), 404);
        let reason = response.extensions().get::<hyper::ext::ReasonPhrase>();
        assert_eq!(reason.unwrap().as_bytes(), b"Nothing Here");
        assert!(exchange.is_end_stream());
    }

    #[tokio::test]
    async fn head_204_and_304_have_no_body_whatever_their_headers_say() {
        let (addr, _server) = scripted(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            ],
            64,
        )
        .await;
        let head = Request::head("/")
            .body(RequestBody::Empty)
            .map(Outgoing::new)
            .unwrap();
        let mut exchange = open(addr, head).await;
        for _ in 0..3 {
            exchange.response_head().await.unwrap();
            assert!(exchange.is_end_stream());
            assert_eq!(body(&mut exchange).await.0, b"");
            let conn = exchange
                .into_reusable()
                .expect("reusable after a body-less response");
            exchange = Exchange::new(conn, get("/"));
        }
    }

    #[tokio::test]
    async fn responses_that_cannot_be_framed_are_bad_responses() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            let (addr, _server) = scripted(vec![answer], 64).await;
            let mut exchange = open(addr, get("/")).await;
            let error = exchange.response_head().await.unwrap_err();
            assert!(
                matches!(error, BackendError::BadResponse(_)),
                "{:?}: {error:?}",
                String::from_utf8_lossy(answer)
            );
            assert!(matches!(exchange.resend(&error), Resend::Never));
        }
    }

    #[tokio::test]
    async fn close_and_http10_responses_end_the_connection() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"[..],
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ] {
            let (addr, _server) = scripted(vec![answer], 64).await;
            let mut exchange = open(addr, get("/")).await;
            exchange.response_head().await.unwrap();
            assert_eq!(body(&mut exchange).await.0, b"ok");
            assert!(exchange.into_reusable().is_none());
        }
    }

    #[tokio::test]
    async fn a_request_the_instance_closed_on_is_replayable_only_when_idempotent_and_body_less() {
        let (addr, _server) = scripted(vec![b""], 1).await;
        let mut exchange = open(addr, get("/")).await;
        let error = exchange.response_head().await.unwrap_err();
        assert!(matches!(error, BackendError::Closed(_)), "{error:?}");
        assert!(matches!(exchange.resend(&error), Resend::Once(_)));

        let (addr, _server) = scripted(vec![b""], 1).await;
        let post = Request::post("/")
            .body(RequestBody::Empty)
            .map(Outgoing::new)
            .unwrap();
        let mut exchange = open(addr, post).await;
        let error = exchange.response_head().await.unwrap_err();
        assert!(matches!(exchange.resend(&error), Resend::Never));
    }

    #[tokio::test]
    async fn an_idle_connection_the_instance_closed_is_noticed_before_use() {
        let (addr, server) =
            scripted(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], 64).await;
        let mut exchange = open(addr, get("/")).await;
        exchange.response_head().await.unwrap();
        let mut conn = exchange.into_reusable().unwrap();
        assert!(!conn.closed_while_idle());
        server.await.unwrap();
        // The reactor learns of the close on its next turn.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !conn.closed_while_idle() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "close never noticed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

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
