//! elbe's HTTP/1.x server: one client connection (a "front-end connection" in ELB's terms), its requests read and
//! its responses written by elbe itself.
//!
//! Why not hyper's server: per request it parses the head into its own structures, runs a dispatcher between the
//! socket and the service, passes request bodies over a channel, and elbe had to wrap the socket to see framing
//! hyper repairs out of sight and to start ELB's idle timer (a task wake-up per request). Measured with callgrind,
//! that was two fifths of elbe's user-space instructions per request (BENCHMARKS.md). Here the connection's task
//! reads a head, hands the request to the tower stack ([`crate::data_plane::proxy::stack`]) and writes the response as its body
//! arrives: a keep-alive request costs one read and one write on the client's socket.
//!
//! What it speaks (RFC 9112, and ELB where ELB differs):
//! - request heads parsed with `httparse`; a head larger than `max_request_header_bytes` or with more than
//!   `max_headers` fields gets 431, one that does not parse gets 400; both close the connection;
//! - request bodies framed by `Content-Length` or a final `chunked`, streamed to the stack as [`ClientBody`];
//!   ambiguous framing reaches the stack without a body, the stack refuses it (400) and the connection closes;
//! - keep-alive: HTTP/1.1 unless the client says `Connection: close`, HTTP/1.0 when it says `keep-alive`;
//!   pipelined requests are answered in order; `Expect: 100-continue` is answered when the body is first read;
//! - ELB's timers: a connection that sends nothing within the request-header timeout is closed, a request head
//!   that does not complete within it gets ELB's 408, a keep-alive connection idle for the idle timeout is closed;
//! - responses carry `Content-Length` when the length is known, else chunked framing (HTTP/1.1 clients) or
//!   framing by close (HTTP/1.0);
//! - a connection that starts with the HTTP/2 preface is handed back ([`Served::Http2`]) for hyper's HTTP/2
//!   server, with the bytes already read.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::data_plane::body::{BodySender, ClientBody, RequestBody};
use crate::data_plane::elb_response::ElbResponse;
use crate::data_plane::headers;
use crate::data_plane::proxy::response_body::ResponseBody;
use crate::data_plane::proxy::{ElbGenerated, Refused};
use crate::http1::framing::{decode, Chunk, Download, FieldSpans, Span};
use crate::observability::metrics::ZoneMetrics;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Header slots parsed on the stack; a larger `max_headers` uses the heap.
const STACK_HEADERS: usize = 128;
/// Reads ask for at least this much room.
const MIN_READ: usize = 8 * 1024;
/// Response bytes queued before they are written; and the most buffers one `writev` takes.
const MAX_QUEUED: usize = 64 * 1024;
const MAX_IOVECS: usize = 16;
/// How long a closing connection that may have unread request bytes keeps reading (and discarding) them after
/// its last response, so the kernel does not answer them with a reset that could destroy that response.
const LINGER: Duration = Duration::from_secs(2);

/// The limits and timers of one client connection.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// A new connection must send its first byte, and a request head must arrive whole, within this.
    pub request_header_timeout: Duration,
    /// A keep-alive connection with no request is closed after this (ELB's idle timeout).
    pub idle_timeout: Duration,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Closed, by either side.
    Closed,
    /// The client spoke the HTTP/2 preface: the socket and what was read from it ([`Connection::into_parts`])
    /// are for an HTTP/2 server.
    Http2,
}

/// A client socket the server reads from.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin {
    /// Appends what arrived to `buf`; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        std::pin::pin!(self.read_buf(buf)).poll(cx)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {}

impl ClientStream for TcpStream {
    /// Clears the socket's readiness after a short read, as [`crate::data_plane::back_end::http1`] reads instances.
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        crate::http1::io::poll_read_drained(self, cx, buf)
    }
}

/// The connection's side of a [`ClientBody`]: decodes the body out of what the client sends.
struct Feed {
    sender: BodySender,
    body: Download,
    /// The client waits for `100 Continue` before it sends the body.
    expect_continue: bool,
}

/// What the connection is doing.
enum Stage<F> {
    /// Waiting for a request head.
    Head,
    /// The stack is working out the response.
    Call(F),
    /// Writing the response.
    Respond(Box<Responding>),
    /// Writing what is queued, then closing; `linger`: then reading and discarding what the client still sends.
    Close { linger: bool },
    /// Closed for writing, discarding what the client sends until it closes or [`LINGER`] passes.
    Linger,
}

/// A response being written.
struct Responding {
    body: ResponseBody,
    framing: Outbound,
    /// The body has ended (the last chunk is queued).
    ended: bool,
}

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

/// Which wait the connection's timer is timing while no request is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A new connection that has sent nothing yet.
    Fresh,
    /// Part of a request head has arrived.
    Head,
    /// Keep-alive between requests.
    Idle,
    /// A response is streaming and waits for its instance or for the client (ELB's idle timeout covers both).
    Respond,
    /// A request is in flight (the proxy times it), or the connection is lingering.
    None,
}

/// What the connection remembers of the request being answered.
#[derive(Debug, Clone, Copy)]
struct Current {
    http10: bool,
    head_only: bool,
    /// The connection closes after this response.
    close: bool,
    /// The client may still be sending this request when the connection closes (a refused head).
    unread: bool,
}

/// One HTTP/1.x client connection, served until it closes.
pub struct Connection<IO, S: Service<Request<RequestBody>>> {
    io: IO,
    read_buf: BytesMut,
    /// Bytes for the client, front first.
    out: VecDeque<Bytes>,
    queued: usize,
    service: S,
    stage: Stage<S::Future>,
    feed: Option<Feed>,
    current: Current,
    settings: Settings,
    metrics: Arc<ZoneMetrics>,
    wait: Wait,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    shutting_down: bool,
    /// Response frames queued and writes made, and the count when the streaming response's idle wait began: the
    /// wait's timer, when it fires, looks at these instead of the clock being read on every frame.
    progress: u64,
    progress_mark: u64,
    /// No HTTP/1 request has been read yet: the connection may still turn out to be HTTP/2 (prior knowledge).
    fresh: bool,
}

impl<IO, S> Connection<IO, S>
where
    IO: ClientStream,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Unpin,
{
    pub fn new(io: IO, service: S, settings: Settings, metrics: Arc<ZoneMetrics>) -> Self {
        let deadline = Instant::now() + settings.request_header_timeout;
        Connection {
            io,
            read_buf: BytesMut::with_capacity(MIN_READ),
            out: VecDeque::new(),
            queued: 0,
            service,
            stage: Stage::Head,
            feed: None,
            current: Current {
                http10: false,
                head_only: false,
                close: false,
                unread: false,
            },
            settings,
            metrics,
            wait: Wait::Fresh,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            shutting_down: false,
            progress: 0,
            progress_mark: 0,
            fresh: true,
        }
    }

    /// Stops taking requests: the response in progress finishes (with `Connection: close`), then the connection
    /// closes; an idle one closes now.
    pub fn graceful_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Serves the connection; the output says how it ended.
    pub fn poll_serve(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Served>> {
        loop {
            if let Err(error) = self.poll_feed(cx) {
                // The client's socket failed under the body: the body has been told; nothing more to say.
                return Poll::Ready(Err(error));
            }
            let step = match &mut self.stage {
                Stage::Head => self.poll_head(cx),
                Stage::Call(future) => match Pin::new(future).poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        self.start_response(response);
                        Poll::Ready(Ok(Step::Continue))
                    }
                    Poll::Pending => Poll::Pending,
                },
                Stage::Respond(_) => self.poll_respond(cx),
                Stage::Close { linger } => {
                    let linger = *linger;
                    self.poll_close(cx, linger)
                }
                Stage::Linger => self.poll_linger(cx),
            };
            match step {
                Poll::Ready(Ok(Step::Continue)) => {}
                Poll::Ready(Ok(Step::Closed)) => return Poll::Ready(Ok(Served::Closed)),
                Poll::Ready(Ok(Step::Http2)) => return Poll::Ready(Ok(Served::Http2)),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    // Whatever the stage waits for, queued bytes (a 100 Continue) go out meanwhile.
                    if !self.out.is_empty() {
                        match self.poll_write_out(cx) {
                            Poll::Ready(Ok(())) => continue,
                            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                            Poll::Pending => {}
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Gives up the socket and what was read from it (after `Served::Http2`).
    pub fn into_parts(self) -> (IO, Bytes) {
        (self.io, self.read_buf.freeze())
    }

    // -----------------------------------------------------------------------------------------------------------
    // Reading requests

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        loop {
            if !self.read_buf.is_empty() {
                if self.fresh && self.read_buf.len() >= 3 && self.read_buf.starts_with(b"PRI") {
                    let n = self.read_buf.len().min(H2_PREFACE.len());
                    if self.read_buf[..n] == H2_PREFACE[..n] {
                        if n == H2_PREFACE.len() {
                            return Poll::Ready(Ok(Step::Http2));
                        }
                        // Part of the preface: read on.
                    } else {
                        self.fresh = false;
                        continue;
                    }
                } else {
                    match self.parse_request() {
                        Ok(Some(request)) => {
                            self.fresh = false;
                            self.wait = Wait::None;
                            let future = self.service.call(request);
                            self.stage = Stage::Call(future);
                            return Poll::Ready(Ok(Step::Continue));
                        }
                        Err(kind) => {
                            self.fresh = false;
                            self.wait = Wait::None;
                            self.refuse(kind);
                            return Poll::Ready(Ok(Step::Continue));
                        }
                        Ok(None) => {}
                    }
                }
                if self.wait != Wait::Head {
                    self.start_wait(Wait::Head);
                }
            } else if self.shutting_down {
                self.stage = Stage::Close { linger: false };
                return Poll::Ready(Ok(Step::Continue));
            }
            self.reserve_read();
            match self.io.poll_fill(cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Step::Closed)),
                Poll::Ready(Ok(n)) => self.metrics.received_bytes.inc_by(n as u64),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return self.poll_wait(cx),
            }
        }
    }

    fn reserve_read(&mut self) {
        if self.read_buf.capacity() - self.read_buf.len() < MIN_READ / 2 {
            self.read_buf.reserve(MIN_READ);
        }
    }

    /// Parses a request head out of `read_buf`: `Ok(None)` while it is incomplete, `Err` for ELB's refusal.
    fn parse_request(&mut self) -> Result<Option<Request<RequestBody>>, ElbResponse> {
        let mut on_stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
        let mut on_heap = Vec::new();
        let slots = if self.settings.max_headers <= STACK_HEADERS {
            &mut on_stack[..self.settings.max_headers]
        } else {
            on_heap.resize_with(self.settings.max_headers, MaybeUninit::uninit);
            &mut on_heap[..]
        };
        let mut parsed = httparse::Request::new(&mut []);
        let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut parsed,
            &self.read_buf,
            slots,
        ) {
            Ok(httparse::Status::Complete(length)) if length > self.settings.max_head_bytes => {
                return Err(ElbResponse::HeadersTooLarge)
            }
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if self.read_buf.len() > self.settings.max_head_bytes => {
                return Err(ElbResponse::HeadersTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ElbResponse::HeadersTooLarge),
            Err(_) => return Err(ElbResponse::BadRequest),
        };
        let method = parsed.method.map(str::as_bytes).unwrap_or_default();
        let Ok(method) = Method::from_bytes(method) else {
            return Err(ElbResponse::BadRequest);
        };
        let target = Span::within(
            &self.read_buf,
            parsed.path.map(str::as_bytes).unwrap_or_default(),
        );
        let http10 = parsed.version == Some(0);
        // Spans first: the head's bytes are frozen below, and the values share them instead of being copied.
        let fields = FieldSpans::new(&self.read_buf, parsed.headers);
        let head = self.read_buf.split_to(length).freeze();
        let Ok(uri) = Uri::from_maybe_shared(target.of(&head)) else {
            return Err(ElbResponse::BadRequest);
        };
        // Room for what the proxy adds (X-Forwarded-For, -Proto, -Port, Host): growing the map rehashes it.
        let mut headers = HeaderMap::with_capacity(fields.as_slice().len() + 4);
        let mut options = Options::default();
        for (name, value) in fields.as_slice() {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&head[name.0..name.1]),
                HeaderValue::from_maybe_shared(value.of(&head)),
            ) else {
                return Err(ElbResponse::BadRequest);
            };
            if name == CONNECTION {
                options.connection(&value);
            } else if name == EXPECT {
                options.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
            } else if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                options.framed = true;
            }
            headers.append(name, value);
        }
        let body = if options.framed {
            self.request_body(&headers, http10, options.expect_continue)
        } else {
            Some(RequestBody::Empty)
        };
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; it is answered, then the
        // connection closes.
        let close = if http10 {
            !options.keep_alive || headers.contains_key(TRANSFER_ENCODING)
        } else {
            options.close
        };
        self.current = Current {
            http10,
            head_only: method == Method::HEAD,
            close: close || body.is_none(),
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
        Ok(Some(request))
    }

    /// The request's body, and the feed that reads it off the socket. `None` when the framing is ambiguous: the
    /// stack refuses such a request (400) and the connection closes, since where the next request starts is
    /// unknown.
    fn request_body(
        &mut self,
        headers: &HeaderMap,
        http10: bool,
        expect_continue: bool,
    ) -> Option<RequestBody> {
        let (body, length) = match headers::check_framing(headers) {
            Err(_) => return None,
            Ok(()) if headers.contains_key(TRANSFER_ENCODING) => {
                (Download::Chunked(Chunk::Size), None)
            }
            Ok(()) => match headers
                .get(CONTENT_LENGTH)
                .map(|v| v.to_str().map(str::parse))
            {
                Some(Ok(Ok(0))) | None => return Some(RequestBody::Empty),
                Some(Ok(Ok(length))) => (Download::Length(length), Some(length)),
                Some(_) => return None,
            },
        };
        let (client_body, sender) = ClientBody::channel(length);
        self.feed = Some(Feed {
            sender,
            body,
            expect_continue: expect_continue && !http10,
        });
        Some(RequestBody::Client(client_body))
    }

    /// Moves the request body along when it has asked for more: decodes what was read, reads the socket when
    /// nothing is left. Never waits itself; the socket's readiness wakes the task.
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(feed) = &mut self.feed else {
            return Ok(());
        };
        feed.sender.register(cx.waker());
        while feed.sender.wanted() {
            match decode(&mut feed.body, &mut self.read_buf) {
                Ok(Some(frame)) => {
                    feed.sender.send(Ok(frame));
                    if matches!(feed.body, Download::Length(0) | Download::Done) {
                        self.feed = None;
                    }
                    return Ok(());
                }
                Ok(None) if matches!(feed.body, Download::Done) => {
                    self.feed = None;
                    return Ok(());
                }
                Ok(None) => {}
                Err(error) => {
                    feed.sender.send(Err(error));
                    self.feed = None;
                    self.current.close = true;
                    return Ok(());
                }
            }
            if feed.expect_continue {
                feed.expect_continue = false;
                let interim = Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n");
                self.queued += interim.len();
                self.out.push_back(interim);
            }
            if self.read_buf.capacity() - self.read_buf.len() < MIN_READ / 2 {
                self.read_buf.reserve(MIN_READ.max(self.read_buf.len()));
            }
            match self.io.poll_fill(cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) => {
                    let cut =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "client closed mid-body");
                    feed.sender.send(Err(cut));
                    self.feed = None;
                    self.current.close = true;
                    return Ok(());
                }
                Poll::Ready(Ok(n)) => self.metrics.received_bytes.inc_by(n as u64),
                Poll::Ready(Err(error)) => {
                    feed.sender
                        .send(Err(io::Error::new(error.kind(), "client socket failed")));
                    self.feed = None;
                    return Err(error);
                }
                Poll::Pending => return Ok(()),
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------------
    // Timers

    fn start_wait(&mut self, wait: Wait) {
        self.wait = wait;
        let after = match wait {
            Wait::Idle | Wait::Respond => self.settings.idle_timeout,
            Wait::Fresh | Wait::Head => self.settings.request_header_timeout,
            Wait::None => return,
        };
        self.deadline = Instant::now() + after;
    }

    /// Called when a read would block. The timer is lazy: moved earlier when a wait's deadline comes sooner, never
    /// later; when it fires before the deadline it is re-armed. So a keep-alive connection resets it about once
    /// per idle timeout instead of once per request.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        if self.wait == Wait::None {
            return Poll::Pending;
        }
        loop {
            if self.deadline < self.timer.deadline() {
                self.timer.as_mut().reset(self.deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            if self.timer.deadline() >= self.deadline {
                return Poll::Ready(Ok(self.expire()));
            }
            let deadline = self.deadline;
            self.timer.as_mut().reset(deadline);
        }
    }

    fn expire(&mut self) -> Step {
        let stalled_head = self.wait == Wait::Head;
        self.wait = Wait::None;
        if stalled_head {
            // ELB's 408; then close, discarding the rest of the head.
            self.refuse(ElbResponse::RequestTimeout);
        } else {
            self.stage = Stage::Close { linger: false };
        }
        Step::Continue
    }

    // -----------------------------------------------------------------------------------------------------------
    // Writing responses

    /// A request elbe refuses before it is one (a head that does not parse, is too large or did not arrive in
    /// time): the stack answers it, counts it and logs it, like the requests it refuses itself
    /// ([`Refused`]); then the connection closes.
    fn refuse(&mut self, kind: ElbResponse) {
        self.read_buf.clear();
        self.current = Current {
            http10: false,
            head_only: false,
            close: true,
            unread: true,
        };
        let mut request = Request::new(RequestBody::Empty);
        request.extensions_mut().insert(Refused(kind));
        self.stage = Stage::Call(self.service.call(request));
    }

    fn start_response(&mut self, response: Response<ResponseBody>) {
        if let Some(&ElbGenerated(kind)) = response.extensions().get::<ElbGenerated>() {
            return self.start_elb_response(kind, response.into_body());
        }
        let (parts, mut body) = response.into_parts();
        // An instance's head comes as received; the map holds what elbe's layers added (or, for elbe's own
        // responses, everything).
        let raw = body.take_raw_head();
        let current = &mut self.current;
        let status = parts.status;
        let reason = match &raw {
            Some(raw) if !raw.reason.is_empty() => &raw.reason[..],
            _ => parts
                .extensions
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| r.as_bytes())
                .or(status.canonical_reason().map(str::as_bytes))
                .unwrap_or_default(),
        };
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
        head.put_slice(status.as_str().as_bytes());
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
                // elbe's own responses say what ELB says; the line itself is written below, from what this
                // connection will actually do.
                current.close |= has_token(value, b"close");
                says_keep_alive |= has_token(value, b"keep-alive");
                continue;
            } else if name == CONTENT_LENGTH {
                says_length = true;
            }
            put_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
        let no_body = current.head_only
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let framing = if no_body {
            Outbound::None
        } else if says_length {
            Outbound::Length
        } else if let Some(length) = body.size_hint().exact() {
            put_header(&mut head, b"content-length", length.to_string().as_bytes());
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
        };
        current.close |= self.shutting_down;
        if current.close {
            head.put_slice(b"connection: close\r\n");
        } else if current.http10 || says_keep_alive {
            head.put_slice(b"connection: keep-alive\r\n");
        }
        head.put_slice(b"\r\n");
        self.queue(Bytes::from(head));
        let ended = framing == Outbound::None || body.is_end_stream();
        self.stage = Stage::Respond(Box::new(Responding {
            body,
            framing,
            ended,
        }));
    }

    /// ELB's own response, written as ELB writes it; `body` is empty and carries the request's bookkeeping.
    fn start_elb_response(&mut self, kind: ElbResponse, body: ResponseBody) {
        let close = self.current.close || self.shutting_down || kind.closes_connection();
        self.current.close = close;
        self.queue(kind.http1_bytes(self.current.http10, close));
        self.stage = Stage::Respond(Box::new(Responding {
            body,
            framing: Outbound::None,
            ended: true,
        }));
    }

    fn poll_respond(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        let Stage::Respond(responding) = &mut self.stage else {
            return Poll::Ready(Ok(Step::Continue));
        };
        let mut waiting = false;
        while !responding.ended && self.queued < MAX_QUEUED && self.out.len() < MAX_IOVECS - 2 {
            match Pin::new(&mut responding.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        self.progress += 1;
                        if responding.framing == Outbound::Chunked {
                            let size = format!("{:x}\r\n", data.len());
                            self.queued += size.len() + data.len() + 2;
                            self.out.push_back(Bytes::from(size));
                            self.out.push_back(data);
                            self.out.push_back(Bytes::from_static(b"\r\n"));
                        } else {
                            self.queued += data.len();
                            self.out.push_back(data);
                        }
                    }
                    Err(frame) => {
                        if let (Outbound::Chunked, Ok(trailers)) =
                            (responding.framing, frame.into_trailers())
                        {
                            let mut last = b"0\r\n".to_vec();
                            for (name, value) in &trailers {
                                put_header(&mut last, name.as_str().as_bytes(), value.as_bytes());
                            }
                            last.put_slice(b"\r\n");
                            self.queued += last.len();
                            self.out.push_back(Bytes::from(last));
                            responding.framing = Outbound::None;
                        }
                    }
                },
                Poll::Ready(Some(Err(error))) => {
                    // The instance's body broke off: the client can only learn that from the connection closing
                    // before the body is complete.
                    tracing::debug!(%error, "response body failed; closing the client connection");
                    self.stage = Stage::Close { linger: false };
                    return Poll::Ready(Ok(Step::Continue));
                }
                Poll::Ready(None) => responding.ended = true,
                Poll::Pending => {
                    waiting = true;
                    break;
                }
            }
            if responding.body.is_end_stream() {
                responding.ended = true;
            }
        }
        if responding.ended && responding.framing == Outbound::Chunked {
            responding.framing = Outbound::None;
            self.queued += 5;
            self.out.push_back(Bytes::from_static(b"0\r\n\r\n"));
        }
        let ended = responding.ended;
        match self.poll_write_out(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return self.poll_stalled(cx),
        }
        if ended {
            self.end_response();
        } else if waiting {
            // All written; the body wakes the task when it has more.
            return self.poll_stalled(cx);
        }
        Poll::Ready(Ok(Step::Continue))
    }

    /// A streaming response waits (for its instance's next bytes, or for the client to take more): after the idle
    /// timeout without progress the connection is dropped, as ELB drops a connection idle in either direction.
    /// Dropped, not closed gracefully: a client that stopped reading would hold up a graceful close forever.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        if self.wait != Wait::Respond {
            self.wait = Wait::Respond;
            self.progress_mark = self.progress;
            self.deadline = Instant::now() + self.settings.idle_timeout;
        }
        loop {
            if self.deadline < self.timer.deadline() {
                self.timer.as_mut().reset(self.deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            let fired_at = self.timer.deadline();
            if fired_at < self.deadline {
                let deadline = self.deadline;
                self.timer.as_mut().reset(deadline);
            } else if self.progress != self.progress_mark {
                self.progress_mark = self.progress;
                self.deadline = Instant::now() + self.settings.idle_timeout;
            } else {
                tracing::debug!(
                    "response idle for the idle timeout; dropping the client connection"
                );
                return Poll::Ready(Ok(Step::Closed));
            }
        }
    }

    /// The response is out: the request is over (its body is dropped here, which ends its bookkeeping).
    fn end_response(&mut self) {
        let unread_body = self.feed.take().is_some();
        self.stage = Stage::Head;
        if self.current.close || self.shutting_down || unread_body {
            self.stage = Stage::Close {
                linger: unread_body || self.current.unread || !self.read_buf.is_empty(),
            };
        } else if self.read_buf.is_empty() {
            self.start_wait(Wait::Idle);
        } else {
            self.wait = Wait::None;
        }
    }

    fn queue(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.out.push_back(bytes);
    }

    /// Writes everything queued.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slice, buf) in slices.iter_mut().zip(self.out.iter()) {
                *slice = IoSlice::new(buf);
                count += 1;
            }
            let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.metrics.sent_bytes.inc_by(written as u64);
            self.progress += 1;
            self.queued -= written;
            let mut left = written;
            while left > 0 {
                let Some(front) = self.out.front_mut() else {
                    break;
                };
                if left >= front.len() {
                    left -= front.len();
                    self.out.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        // TLS takes bytes it cannot send yet (the socket is full) and sends them on flush; without it the tail of
        // a response could wait for the client's next request. A no-op on plain TCP.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes what is queued and sends FIN; then lingers when the client may still be sending.
    fn poll_close(&mut self, cx: &mut Context<'_>, linger: bool) -> Poll<io::Result<Step>> {
        ready!(self.poll_write_out(cx))?;
        ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
        if !linger {
            return Poll::Ready(Ok(Step::Closed));
        }
        self.wait = Wait::None;
        self.deadline = Instant::now() + LINGER;
        self.timer.as_mut().reset(self.deadline);
        self.stage = Stage::Linger;
        Poll::Ready(Ok(Step::Continue))
    }

    /// Reads and discards until the client closes or the linger time is up, so that closing with its bytes
    /// unread does not make the kernel send a reset that could destroy the last response on its way.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        loop {
            self.read_buf.clear();
            self.reserve_read();
            match self.io.poll_fill(cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(Step::Closed)),
                Poll::Ready(Ok(n)) => self.metrics.received_bytes.inc_by(n as u64),
                Poll::Pending => {
                    ready!(self.timer.as_mut().poll(cx));
                    return Poll::Ready(Ok(Step::Closed));
                }
            }
        }
    }
}

impl<IO, S> Future for Connection<IO, S>
where
    IO: ClientStream,
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Unpin,
    S::Future: Unpin,
{
    type Output = io::Result<Served>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_serve(cx)
    }
}

/// What the loop does next.
enum Step {
    Continue,
    Closed,
    Http2,
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

impl Options {
    fn connection(&mut self, line: &HeaderValue) {
        self.close |= has_token(line, b"close");
        self.keep_alive |= has_token(line, b"keep-alive");
    }
}

/// Whether a comma-separated header line has `token` (case-insensitive).
fn has_token(line: &HeaderValue, token: &[u8]) -> bool {
    line.as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn put_header(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::{self, ShutdownWatch, Trigger};
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    type Reply = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

    /// A stand-in for the proxy stack: notes the call in `called`, reads the whole request body, then answers 200
    /// (empty) with what it saw in `x-seen` (method, path, body or the body's error) after the client's `x-delay`
    /// in milliseconds.
    fn stack(
        called: Arc<tokio::sync::Notify>,
    ) -> impl Service<
        Request<RequestBody>,
        Response = Response<ResponseBody>,
        Error = Infallible,
        Future = Reply,
    > + Send
           + Unpin
           + 'static {
        tower::service_fn(move |request: Request<RequestBody>| -> Reply {
            if let Some(Refused(kind)) = request.extensions().get::<Refused>() {
                let answer = crate::data_plane::proxy::elb_answer(*kind);
                return Box::pin(std::future::ready(Ok(answer)));
            }
            called.notify_one();
            Box::pin(async move {
                let delay = request
                    .headers()
                    .get("x-delay")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                let seen = format!("{} {}", request.method(), request.uri());
                let body = match request.into_body().collect().await {
                    Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                    Err(error) => format!("error: {error}"),
                };
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let mut response = Response::new(ResponseBody::empty());
                let seen = HeaderValue::from_str(&format!("{seen} [{body}]")).unwrap();
                response.headers_mut().insert("x-seen", seen);
                Ok(response)
            })
        })
    }

    fn settings() -> Settings {
        Settings {
            max_head_bytes: 8192,
            max_headers: 32,
            request_header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
        }
    }

    /// How a served connection ended, and what it had read.
    type Ended = tokio::task::JoinHandle<(io::Result<Served>, Bytes)>;

    /// Serves one connection on a fresh listener; returns its address, the shutdown trigger, the stack's call
    /// signal and how the connection ended.
    async fn serve_noting_calls(
        settings: Settings,
    ) -> (
        std::net::SocketAddr,
        Trigger,
        Arc<tokio::sync::Notify>,
        Ended,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (trigger, signal) = shutdown::channel();
        let metrics = Arc::new(crate::observability::metrics::Metrics::new().zone("web", "zone-a"));
        let called = Arc::new(tokio::sync::Notify::new());
        let stack = stack(called.clone());
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut connection = Connection::new(stream, stack, settings, metrics);
            let mut stop = ShutdownWatch::new(signal);
            let served = std::future::poll_fn(|cx| {
                if stop.poll_fired(cx) {
                    connection.graceful_shutdown();
                }
                connection.poll_serve(cx)
            })
            .await;
            (served, connection.into_parts().1)
        });
        (address, trigger, called, task)
    }

    async fn serve(settings: Settings) -> (std::net::SocketAddr, Trigger, Ended) {
        let (address, trigger, _, ended) = serve_noting_calls(settings).await;
        (address, trigger, ended)
    }

    /// Writes `bytes`, then reads until the connection closes or `wait` passes.
    async fn exchange(stream: &mut TcpStream, bytes: &[u8], wait: Duration) -> String {
        use tokio::io::AsyncReadExt;
        stream.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn keep_alive_follows_the_version_and_the_clients_connection_header() {
        let (address, _trigger, served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        // HTTP/1.0 asking for keep-alive, then HTTP/1.1 asking to close, pipelined.
        let out = exchange(
            &mut stream,
            b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        let (first, second) = out.split_at(out.find("HTTP/1.1").unwrap());
        assert!(first.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
        assert!(first.contains("x-seen: GET /a []\r\n"), "{out}");
        assert!(first.contains("connection: keep-alive\r\n"), "{out}");
        assert!(second.contains("x-seen: GET /b []\r\n"), "{out}");
        assert!(second.contains("connection: close\r\n"), "{out}");
        assert!(matches!(served.await.unwrap().0, Ok(Served::Closed)));

        // HTTP/1.0 without keep-alive: one response, then close.
        let (address, _trigger, _served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let out = exchange(
            &mut stream,
            b"GET / HTTP/1.0\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert_eq!(out.matches("HTTP/1.0 200").count(), 1, "{out}");
    }

    #[tokio::test]
    async fn bodies_are_framed_exactly_and_the_next_request_is_not_swallowed() {
        let (address, _trigger, _served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let out = exchange(
            &mut stream,
            b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
              GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        let seen: Vec<&str> = out
            .lines()
            .filter_map(|line| line.strip_prefix("x-seen: "))
            .collect();
        assert_eq!(
            seen,
            [
                "POST /len [hello]",
                "GET /next []",
                "POST /chunked [abcde]",
                "GET /last []"
            ],
            "{out}"
        );
    }

    #[tokio::test]
    async fn expect_continue_is_answered_before_the_body_is_read() {
        let (address, _trigger, _served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            )
            .await
            .unwrap();
        let mut interim = [0u8; 25];
        use tokio::io::AsyncReadExt;
        stream.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        let out = exchange(&mut stream, b"ok", Duration::from_millis(500)).await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("x-seen: PUT /up [ok]\r\n"), "{out}");
    }

    #[tokio::test]
    async fn a_paused_upload_leaves_the_connection_asleep() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let metrics =
                Arc::new(crate::observability::metrics::Metrics::new().zone("web", "zone-a"));
            let stack = stack(Arc::new(tokio::sync::Notify::new()));
            let mut connection = Connection::new(stream, stack, settings(), metrics);
            std::future::poll_fn(|cx| {
                counted.fetch_add(1, Ordering::Relaxed);
                connection.poll_serve(cx)
            })
            .await
        });
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = polls.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let during_pause = polls.load(Ordering::Relaxed) - before;
        assert!(
            during_pause <= 2,
            "polled {during_pause} times while the client paused"
        );
        let out = exchange(&mut stream, b"def", Duration::from_millis(300)).await;
        assert!(out.contains("x-seen: POST /up [abcdef]\r\n"), "{out}");
    }

    #[tokio::test]
    async fn a_body_cut_short_fails_for_the_stack_and_the_connection_closes() {
        let (address, _trigger, served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let out = exchange(&mut stream, b"", Duration::from_secs(2)).await;
        assert!(
            out.contains("x-seen: POST / [error: client closed mid-body]\r\n"),
            "{out}"
        );
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(matches!(served.await.unwrap().0, Ok(Served::Closed)));
    }

    #[tokio::test]
    async fn elbe_timers_close_silent_stalled_and_idle_connections() {
        // Nothing sent: closed after the request-header timeout, without a word.
        let (address, _trigger, served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let started = Instant::now();
        assert_eq!(exchange(&mut stream, b"", Duration::from_secs(3)).await, "");
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(matches!(served.await.unwrap().0, Ok(Served::Closed)));
        // Half a head: ELB's 408, byte for byte.
        let (address, _trigger, _served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let out = exchange(&mut stream, b"GET / HTTP/1.1\r\nHo", Duration::from_secs(3)).await;
        assert_eq!(
            out.as_bytes(),
            ElbResponse::RequestTimeout.http1_bytes(false, true)
        );
        // Idle after a response: closed after the idle timeout, not before.
        let settings = Settings {
            idle_timeout: Duration::from_millis(600),
            ..settings()
        };
        let (address, _trigger, _served) = serve(settings).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let started = Instant::now();
        let out = exchange(
            &mut stream,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            started.elapsed() >= Duration::from_millis(550),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_lets_a_request_in_flight_finish() {
        let (address, trigger, called, served) = serve_noting_calls(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Delay: 200\r\n\r\n")
            .await
            .unwrap();
        called.notified().await;
        trigger.trigger();
        let out = exchange(&mut stream, b"", Duration::from_secs(2)).await;
        assert!(out.contains("x-seen: GET /slow []\r\n"), "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(matches!(served.await.unwrap().0, Ok(Served::Closed)));

        let (address, trigger, served) = serve(settings()).await;
        let _stream = TcpStream::connect(address).await.unwrap();
        trigger.trigger();
        let ended = tokio::time::timeout(Duration::from_millis(200), served).await;
        assert!(matches!(ended, Ok(Ok((Ok(Served::Closed), _)))));
    }

    #[tokio::test]
    async fn the_http2_preface_hands_the_connection_over_with_what_was_read() {
        let (address, _trigger, served) = serve(settings()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(&H2_PREFACE[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.write_all(&H2_PREFACE[10..]).await.unwrap();
        stream.write_all(b"frames").await.unwrap();
        let (ended, read) = served.await.unwrap();
        assert!(matches!(ended, Ok(Served::Http2)));
        assert!(read.starts_with(H2_PREFACE), "{read:?}");
    }
}
