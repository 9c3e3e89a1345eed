//! What elbe's HTTP/2 front end must do, by RFC 9113 (HTTP/2) and RFC 7541 (HPACK), pinned down against today's
//! server (hyper's, `serve_http2`) so that elbe's own HTTP/2 server connection (issue 18) can be run against it
//! before it replaces hyper's. Clients are real: a raw-frame client written here (frames by hand, read with a
//! deadline), the `h2` crate's client where a well-formed client is enough, curl, h2load, and one TLS client with
//! ALPN h2; the instance is a real HTTP/1.1 server that records what it read (ELB-SPEC §1.1: the back end always
//! speaks HTTP/1.1, whatever the client spoke; HTTP/2 on the front end is elbe's own addition, README).
//!
//! Where the RFC lets a server answer with either a stream error or a connection error, both are accepted: the
//! tests assert what any conforming server does, not what hyper happens to do. Each test starts its own elbe on
//! port 0 (h2c with prior knowledge on the HTTP listener) in front of its own instance.
mod common;
mod h2_wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{ConfigBuilder, Elbe, InstanceSpec};
use h2_wire::{
    frame, ping, preface, rst_stream, string, window_update, ACK, CONTINUATION, DATA, END_HEADERS,
    END_STREAM, GOAWAY, HEADERS, PING, RST_STREAM, SETTINGS, SETTINGS_INITIAL_WINDOW_SIZE,
    WINDOW_UPDATE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Upper bound for any one network step: a step that takes longer is hung, not slow.
const STEP: Duration = Duration::from_secs(5);

/// How long a client waits to be sure that elbe sends nothing more (a window that is used up stays used up).
const QUIET: Duration = Duration::from_millis(250);

// RFC 9113 §7 error codes and §6.5.2 settings.
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const ENABLE_PUSH: u16 = 0x2;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const MAX_FRAME_SIZE: u16 = 0x5;
/// DATA and HEADERS flags (RFC 9113 §6.1, §6.2).
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// A window may never exceed 2^31-1 (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = 0x7fff_ffff;
/// The default SETTINGS_MAX_FRAME_SIZE and initial window (RFC 9113 §6.5.2).
const DEFAULT_MAX_FRAME: u32 = 16_384;
const DEFAULT_WINDOW: u32 = 65_535;

// ---------------------------------------------------------------------------------------------------------------
// The instance: an HTTP/1.1 server that records each request (head verbatim, body de-framed) and answers by path.

/// One request as the instance read it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }

    fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    /// The first value of header `name` (any case), trimmed.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A recording instance. Requests whose path starts with `/hold` are recorded at once but answered only after
/// [`Instance::release`], so a test can keep streams in flight for as long as it needs.
struct Instance {
    address: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Instance {
    async fn start() -> Instance {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (log, seen) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, log.clone(), released.clone()));
            }
        });
        Instance {
            address,
            seen,
            release,
            task,
        }
    }

    /// The next request the instance read; fails the test when none arrives within [`STEP`].
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(STEP, self.seen.recv())
            .await
            .expect("a request reached the instance in time")
            .expect("the instance is running")
    }

    /// Every request read since the last call.
    fn take(&mut self) -> Vec<Seen> {
        std::iter::from_fn(|| self.seen.try_recv().ok()).collect()
    }

    /// Answers every held request, and every later one at once.
    fn release(&self) {
        self.release.send_replace(true);
    }

    /// elbe (one zone, an HTTP listener) in front of this instance, already InService.
    async fn behind_elbe(&self, builder: ConfigBuilder) -> Elbe {
        builder
            .instance(InstanceSpec {
                id: "i-1".into(),
                zone: "zone-a".into(),
                address: self.address,
            })
            .start()
            .await
    }
}

async fn serve(
    mut stream: TcpStream,
    log: mpsc::UnboundedSender<Seen>,
    mut released: watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    while let Some(seen) = read_request(&mut stream, &mut buf).await {
        let reply = answer(&seen);
        let hold = seen.path().starts_with("/hold");
        let _ = log.send(seen);
        if hold && released.wait_for(|open| *open).await.is_err() {
            return;
        }
        if stream.write_all(&reply).await.is_err() || reply.starts_with(CLOSE_AFTER) {
            return;
        }
    }
}

/// The body `/bytes/N` answers: N bytes that differ from their neighbours, so a lost or repeated byte shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A 200 with `body` and its Content-Length.
fn ok(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The response of `/hop`: hop-by-hop fields that must not reach an HTTP/2 client (RFC 9113 §8.2.2), and the
/// instance closes the connection after it.
const CLOSE_AFTER: &[u8] = b"HTTP/1.1 201 Created\r\nConnection: close\r\n";
const HOP: &[u8] = b"HTTP/1.1 201 Created\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-Custom: Value-1\r\nX-Mixed: AbC dEf\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

/// The length of `/big-head`'s X-Big value: more than two frames of the default SETTINGS_MAX_FRAME_SIZE even
/// Huffman coded ('x' is 7 bits: RFC 7541 Appendix B), well under elbe's 64 KiB limit on a response head.
const BIG_FIELD: usize = 40_000;

/// How the instance answers: by path (and HEAD), the body `/bytes/N`, the path itself otherwise.
fn answer(seen: &Seen) -> Vec<u8> {
    let path = seen.path();
    if seen.method() == "HEAD" {
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec();
    }
    match path {
        "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec(),
        "/hop" => HOP.to_vec(),
        "/big-head" => format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
            "x".repeat(BIG_FIELD)
        )
        .into_bytes(),
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n".to_vec(),
        _ => match path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
            Some(n) => ok(&pattern(n)),
            None => ok(path.as_bytes()),
        },
    }
}

/// Reads one request: the head, then a Content-Length or chunked body. `None` when the connection ends first.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let end = read_until(stream, buf, b"\r\n\r\n").await?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let mut seen = Seen {
        head,
        body: Vec::new(),
    };
    if let Some(length) = seen.header("content-length").and_then(|v| v.parse().ok()) {
        while buf.len() < length {
            read_more(stream, buf).await?;
        }
        seen.body = buf.drain(..length).collect();
    } else if seen
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        seen.body = read_chunked(stream, buf).await?;
    }
    Some(seen)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// Reads until `needle` is in `buf`; the index just past it.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(needle.len()).position(|w| w == needle) {
            return Some(at + needle.len());
        }
        read_more(stream, buf).await?;
    }
}

/// A chunked body (RFC 9112 §7.1), its trailer section read and dropped.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = read_until(stream, buf, b"\r\n").await?;
        let line = String::from_utf8_lossy(&buf[..end - 2]).into_owned();
        buf.drain(..end);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            let end = if buf.starts_with(b"\r\n") {
                2
            } else {
                read_until(stream, buf, b"\r\n\r\n").await?
            };
            buf.drain(..end);
            return Some(body);
        }
        while buf.len() < size + 2 {
            read_more(stream, buf).await?;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The raw client: frames written by hand, frames read with a deadline.

/// A frame elbe sent, padding and priority fields taken off; a header block that came in HEADERS and
/// CONTINUATION frames is one frame here, with END_HEADERS.
#[derive(Debug)]
struct In {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
    /// The frame's length on the wire (what flow control counts, padding included: RFC 9113 §6.9.1).
    length: usize,
}

impl In {
    fn is(&self, kind: u8, stream: u32) -> bool {
        self.kind == kind && self.stream == stream
    }

    fn ends_stream(&self) -> bool {
        matches!(self.kind, DATA | HEADERS) && self.flags & END_STREAM != 0
    }

    /// A GOAWAY's or RST_STREAM's error code.
    fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        Some(u32::from_be_bytes(
            self.payload.get(at..at + 4)?.try_into().ok()?,
        ))
    }
}

enum Next {
    Frame(In),
    Closed,
    Quiet,
}

/// How elbe answered a stream.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Reset(u32),
    GoAway(u32),
    /// A response head with this `:status` (0 when it could not be read: see [`status_of`]).
    Status(u16),
    Closed,
}

/// A response read to its END_STREAM.
struct Response {
    status: u16,
    body: Vec<u8>,
    /// Every frame of the stream, in order.
    frames: Vec<In>,
}

impl Response {
    fn data_frames(&self) -> impl Iterator<Item = &In> {
        self.frames.iter().filter(|f| f.kind == DATA)
    }
}

/// A prior-knowledge h2c connection (RFC 9113 §3.3) driven frame by frame.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// elbe's SETTINGS, as its first frame carried them.
    settings: Vec<(u16, u32)>,
    /// The longest frame elbe sent on this connection, as the wire counts it (a header block's pieces apart).
    largest: usize,
}

impl Raw {
    /// Sends the preface with `ours`, reads elbe's first frame (which must be its SETTINGS: RFC 9113 §3.4) and
    /// acknowledges it, as every client must (§6.5.3).
    async fn connect(address: SocketAddr, ours: &[(u16, u32)]) -> Raw {
        let mut raw = Raw {
            stream: TcpStream::connect(address).await.unwrap(),
            buf: Vec::new(),
            settings: Vec::new(),
            largest: 0,
        };
        raw.send(&preface(ours)).await;
        match raw.next().await {
            Some(first) if first.kind == SETTINGS && first.flags & ACK == 0 => {
                raw.settings = first
                    .payload
                    .chunks_exact(6)
                    .map(|p| {
                        (
                            u16::from_be_bytes([p[0], p[1]]),
                            u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                        )
                    })
                    .collect();
            }
            other => {
                panic!("elbe's first frame must be a SETTINGS frame (RFC 9113 §3.4), got {other:?}")
            }
        }
        raw.send(&frame(SETTINGS, ACK, 0, &[])).await;
        raw
    }

    /// One of elbe's settings, as it sent it.
    fn setting(&self, id: u16) -> Option<u32> {
        self.settings
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
    }

    /// Writes `bytes`. A failed write is not the test's verdict: elbe may have closed on an earlier frame, and
    /// what it answered is read next.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next frame within `wait`, [`Next::Closed`] when elbe closed (or reset) the connection, or
    /// [`Next::Quiet`] when nothing came.
    async fn next_within(&mut self, wait: Duration) -> Next {
        let deadline = Instant::now() + wait;
        let mut block: Option<In> = None;
        loop {
            while let Some(frame) = self.parse() {
                match block.take() {
                    None if frame.kind == HEADERS && frame.flags & END_HEADERS == 0 => {
                        block = Some(frame)
                    }
                    None => return Next::Frame(frame),
                    Some(mut open) => {
                        assert!(
                            frame.is(CONTINUATION, open.stream),
                            "elbe sent {frame:?} inside a header block (RFC 9113 §6.10)"
                        );
                        open.payload.extend_from_slice(&frame.payload);
                        open.length += frame.length;
                        if frame.flags & END_HEADERS != 0 {
                            open.flags |= END_HEADERS;
                            return Next::Frame(open);
                        }
                        block = Some(open);
                    }
                }
            }
            let mut chunk = [0u8; 32 * 1024];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return Next::Quiet,
            }
        }
    }

    /// One whole frame off the buffer, if there is one.
    fn parse(&mut self) -> Option<In> {
        let header = self.buf.get(..9)?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        if self.buf.len() < 9 + length {
            return None;
        }
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & MAX_WINDOW;
        let mut payload: Vec<u8> = self.buf.drain(..9 + length).skip(9).collect();
        self.largest = self.largest.max(length);
        if matches!(kind, DATA | HEADERS) && flags & PADDED != 0 {
            let pad = usize::from(payload[0]);
            payload.truncate(payload.len().saturating_sub(pad));
            payload.remove(0);
        }
        if kind == HEADERS && flags & PRIORITY != 0 {
            payload.drain(..5);
        }
        Some(In {
            kind,
            flags,
            stream,
            payload,
            length,
        })
    }

    /// The next frame, `None` when elbe closed; fails the test when elbe sends nothing for [`STEP`].
    async fn next(&mut self) -> Option<In> {
        match self.next_within(STEP).await {
            Next::Frame(frame) => Some(frame),
            Next::Closed => None,
            Next::Quiet => panic!("elbe sent nothing for {STEP:?}"),
        }
    }

    /// Reads frames until one satisfies `wanted`; fails the test when the connection closes first.
    async fn until(&mut self, what: &str, wanted: impl Fn(&In) -> bool) -> In {
        loop {
            match self.next().await {
                Some(frame) if wanted(&frame) => return frame,
                Some(_) => {}
                None => panic!("elbe closed the connection before {what}"),
            }
        }
    }

    /// A connection error: the GOAWAY's code, once elbe has also closed the connection (RFC 9113 §5.4.1: an
    /// endpoint sends GOAWAY for a connection error, then MUST close the TCP connection).
    async fn connection_error(&mut self) -> u32 {
        let goaway = loop {
            match self.next().await {
                Some(frame) if frame.kind == GOAWAY => break frame,
                Some(_) => {}
                None => panic!("elbe closed the connection without a GOAWAY (RFC 9113 §5.4.1)"),
            }
        };
        let code = goaway.error_code().expect("a GOAWAY carries an error code");
        while self.next().await.is_some() {}
        code
    }

    /// How elbe answered `stream`: its reset, a GOAWAY, its response head, or a close.
    async fn answer(&mut self, stream: u32) -> Answer {
        loop {
            match self.next().await {
                Some(f) if f.is(RST_STREAM, stream) => {
                    return Answer::Reset(f.error_code().unwrap_or(0))
                }
                Some(f) if f.kind == GOAWAY => return Answer::GoAway(f.error_code().unwrap_or(0)),
                Some(f) if f.is(HEADERS, stream) => {
                    return Answer::Status(status_of(&f.payload).unwrap_or(0))
                }
                Some(_) => {}
                None => return Answer::Closed,
            }
        }
    }

    /// Reads the response on `stream` to its END_STREAM, giving back the window of every DATA frame (stream and
    /// connection) so that any response can flow.
    async fn response(&mut self, stream: u32) -> Response {
        let mut response = Response {
            status: 0,
            body: Vec::new(),
            frames: Vec::new(),
        };
        loop {
            let frame = self
                .until("the response ended", |f| {
                    f.stream == stream || f.kind == GOAWAY
                })
                .await;
            assert!(
                !matches!(frame.kind, RST_STREAM | GOAWAY),
                "stream {stream} ended with {frame:?}"
            );
            if frame.kind == HEADERS && response.status == 0 {
                response.status = status_of(&frame.payload).unwrap_or(0);
            }
            if frame.kind == DATA {
                response.body.extend_from_slice(&frame.payload);
                if frame.length > 0 {
                    let mut updates = window_update(0, frame.length as u32);
                    if !frame.ends_stream() {
                        updates.extend(window_update(stream, frame.length as u32));
                    }
                    self.send(&updates).await;
                }
            }
            let end = frame.ends_stream();
            response.frames.push(frame);
            if end {
                return response;
            }
        }
    }
}

/// An HPACK block of literal fields without indexing, new names, no Huffman coding (RFC 7541 §6.2.2): exactly
/// the bytes given, uppercase or misplaced ones included.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        out.extend(string(name.as_bytes()));
        out.extend(string(value.as_bytes()));
    }
    out
}

/// The pseudo-header fields of a request for `path` with `method`.
fn request_fields<'a>(method: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "example.test"),
    ]
}

/// A complete GET (HEADERS with END_HEADERS and END_STREAM) on `stream`.
fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &block(&request_fields("GET", path)),
    )
}

/// The `:status` of a response header block: the first field (pseudo-fields come first: RFC 9113 §8.3), after any
/// dynamic table size update (RFC 7541 §4.2), as a static table entry or a literal with the static name `:status`,
/// its value raw or Huffman coded. Only digits are decoded from Huffman (RFC 7541 Appendix B: '0'-'2' are the
/// 5-bit codes 0-2, '3'-'9' the 6-bit codes 0x19-0x1f), which is all a status is. `None` for anything else (a
/// reference to the dynamic table).
fn status_of(block: &[u8]) -> Option<u16> {
    let mut at = 0;
    while block.get(at)? & 0xe0 == 0x20 {
        at += hpack_integer(&block[at..], 5)?.1;
    }
    let first = *block.get(at)?;
    if first & 0x80 != 0 {
        let (index, _) = hpack_integer(&block[at..], 7)?;
        return [200, 204, 206, 304, 400, 404, 500]
            .get(index.checked_sub(8)?)
            .copied();
    }
    let prefix = if first & 0x40 != 0 { 6 } else { 4 };
    let (name, used) = hpack_integer(&block[at..], prefix)?;
    if name != 8 {
        return None;
    }
    at += used;
    let huffman = block.get(at)? & 0x80 != 0;
    let (length, used) = hpack_integer(&block[at..], 7)?;
    let value = block.get(at + used..at + used + length)?;
    let text = if huffman {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    text.parse().ok()
}

/// One field representation of an HPACK block, as much of it as the dynamic table concerns (RFC 7541 §6).
#[derive(Debug, PartialEq, Eq)]
enum Representation {
    /// §6.1: an index into the static (1-61) or dynamic (62-) table.
    Indexed(usize),
    /// §6.2: a literal, its name an index (0: a new name), added to the dynamic table or not.
    Literal { name: usize, indexing: bool },
    /// §6.3.
    SizeUpdate(usize),
}

/// The representations of a header block, strings skipped (Huffman or not); `None` when the block does not parse.
fn representations(block: &[u8]) -> Option<Vec<Representation>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        let (prefix, kind) = match first {
            b if b & 0x80 != 0 => (7, 0),
            b if b & 0xc0 == 0x40 => (6, 1),
            b if b & 0xe0 == 0x20 => (5, 2),
            _ => (4, 3),
        };
        let (index, used) = hpack_integer(&block[at..], prefix)?;
        at += used;
        let skip_string = |at: usize| -> Option<usize> {
            let (length, used) = hpack_integer(block.get(at..)?, 7)?;
            (at + used + length <= block.len()).then_some(at + used + length)
        };
        out.push(match kind {
            0 => Representation::Indexed(index),
            2 => Representation::SizeUpdate(index),
            _ => {
                if index == 0 {
                    at = skip_string(at)?;
                }
                at = skip_string(at)?;
                Representation::Literal {
                    name: index,
                    indexing: kind == 1,
                }
            }
        });
    }
    Some(out)
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1): (value, bytes used).
fn hpack_integer(bytes: &[u8], prefix: u32) -> Option<(usize, usize)> {
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(*bytes.first()?) & max;
    if value < max {
        return Some((value, 1));
    }
    for (i, byte) in bytes.iter().enumerate().skip(1).take(4) {
        value += usize::from(byte & 0x7f) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A Huffman-coded string of digits (see [`status_of`]); `None` for any other symbol.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let take = |at: usize, n: usize| -> Option<u8> {
        bits.get(at..at + n)
            .map(|b| b.iter().fold(0, |v, bit| (v << 1) | bit))
    };
    let (mut out, mut at) = (String::new(), 0);
    while at < bits.len() {
        if let Some(code) = take(at, 5).filter(|c| *c <= 2) {
            out.push(char::from(b'0' + code));
            at += 5;
        } else if let Some(code) = take(at, 6).filter(|c| (0x19..=0x1f).contains(c)) {
            out.push(char::from(b'3' + code - 0x19));
            at += 6;
        } else if bits.len() - at < 8 && bits[at..].iter().all(|b| *b == 1) {
            break; // the padding: the most significant bits of EOS (RFC 7541 §5.2)
        } else {
            return None;
        }
    }
    Some(out)
}

/// elbe in front of a fresh instance, and a raw connection to its HTTP listener with the client settings `ours`.
async fn raw_setup(ours: &[(u16, u32)]) -> (Instance, Elbe, Raw) {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let raw = Raw::connect(elbe.node("zone-a"), ours).await;
    (instance, elbe, raw)
}

/// A control request on a fresh connection: a well-formed GET of `path` gets the instance's 200.
async fn control(elbe: &Elbe, path: &str) {
    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    raw.send(&get(1, path)).await;
    let response = raw.response(1).await;
    assert_eq!(response.status, 200, "the control request");
    assert_eq!(response.body, path.as_bytes(), "the control request's body");
}

// ---------------------------------------------------------------------------------------------------------------
// Connection level

/// RFC 9113 §3.4, §6.5.3, §6.7: the server's preface is a SETTINGS frame; it acknowledges the client's SETTINGS
/// with an empty SETTINGS ACK; a PING is answered by a PING ACK carrying the same 8 bytes.
#[tokio::test]
async fn elbe_opens_with_settings_acks_the_clients_and_answers_ping() {
    let (_instance, _elbe, mut raw) = raw_setup(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]).await;
    let ack = raw
        .until("the SETTINGS ACK", |f| {
            f.kind == SETTINGS && f.flags & ACK != 0
        })
        .await;
    assert!(
        ack.payload.is_empty(),
        "a SETTINGS ACK is empty (RFC 9113 §6.5): {ack:?}"
    );
    assert_eq!(ack.stream, 0);
    let payload = *b"elbe-h2!";
    raw.send(&ping(payload)).await;
    let pong = raw.until("the PING ACK", |f| f.kind == PING).await;
    assert_eq!(pong.flags & ACK, ACK, "{pong:?}");
    assert_eq!(pong.payload, payload);
    assert_eq!(pong.stream, 0);
}

/// RFC 9113 §8.2.3: cookies a client sent as separate fields (browsers split them for HPACK) reach the HTTP/1.1
/// instance as one `Cookie` line, joined with "; " in the order sent.
#[tokio::test]
async fn cookie_crumbs_reach_the_instance_as_one_cookie_line() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    let mut fields = request_fields("GET", "/cookies");
    fields.extend([
        ("cookie", "a=1"),
        ("accept", "*/*"),
        ("cookie", "b=2"),
        ("cookie", "c=3"),
    ]);
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&fields),
    ))
    .await;
    assert_eq!(raw.response(1).await.status, 200);
    let seen = instance.next().await;
    let lines: Vec<&str> = seen
        .head
        .split("\r\n")
        .filter(|line| line.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    assert_eq!(lines.len(), 1, "one Cookie line: {}", seen.head);
    assert_eq!(
        seen.header("cookie"),
        Some("a=1; b=2; c=3"),
        "{}",
        seen.head
    );
}

/// RFC 9113 §5.1.1: client streams are odd, and each new one is higher than every one opened before; anything
/// else is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn a_stream_id_that_is_even_or_goes_backwards_is_a_connection_error() {
    let (_instance, elbe, mut raw) = raw_setup(&[]).await;
    raw.send(&get(2, "/even")).await;
    assert_eq!(
        raw.connection_error().await,
        PROTOCOL_ERROR,
        "HEADERS on stream 2"
    );

    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    raw.send(&get(5, "/five")).await;
    assert_eq!(raw.response(5).await.status, 200);
    raw.send(&get(3, "/three")).await;
    assert_eq!(
        raw.connection_error().await,
        PROTOCOL_ERROR,
        "HEADERS on stream 3 after 5"
    );
}

/// RFC 9113 §6.2, §6.10: a header block is HEADERS then CONTINUATION frames with nothing in between; any other
/// frame there is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn a_frame_inside_a_header_block_is_a_connection_error() {
    let (mut instance, elbe, mut raw) = raw_setup(&[]).await;
    let fields = block(&request_fields("GET", "/split"));
    let (first, rest) = fields.split_at(10);
    let mut bytes = frame(HEADERS, END_STREAM, 1, first);
    bytes.extend(ping(*b"between!"));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    raw.send(&bytes).await;
    assert_eq!(raw.connection_error().await, PROTOCOL_ERROR);
    control(&elbe, "/after").await;
    let paths: Vec<String> = instance
        .take()
        .iter()
        .map(|s| s.path().to_string())
        .collect();
    assert_eq!(
        paths,
        ["/after"],
        "the broken header block reached the instance"
    );

    // The control: the same block split the same way, without the PING, is one request.
    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    let mut bytes = frame(HEADERS, END_STREAM, 1, first);
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    raw.send(&bytes).await;
    let response = raw.response(1).await;
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"/split"[..])
    );
}

/// RFC 9113 §6.9.1: a WINDOW_UPDATE that takes a window past 2^31-1 is FLOW_CONTROL_ERROR, a connection error
/// for the connection's window, a stream error (or a connection error) for a stream's.
#[tokio::test]
async fn a_window_update_past_the_largest_window_is_a_flow_control_error() {
    let (mut instance, elbe, mut raw) = raw_setup(&[]).await;
    raw.send(&window_update(0, MAX_WINDOW)).await;
    assert_eq!(
        raw.connection_error().await,
        FLOW_CONTROL_ERROR,
        "the connection's window"
    );

    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    raw.send(&get(1, "/hold/window")).await;
    assert_eq!(instance.next().await.path(), "/hold/window");
    raw.send(&window_update(1, MAX_WINDOW)).await;
    let answer = raw.answer(1).await;

    assert!(
        matches!(
            answer,
            Answer::Reset(FLOW_CONTROL_ERROR) | Answer::GoAway(FLOW_CONTROL_ERROR)
        ),
        "a stream's window: {answer:?}"
    );
}

/// RFC 9113 §5.1: a frame other than HEADERS or PRIORITY on an idle stream is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn data_on_a_stream_never_opened_is_a_connection_error() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    raw.send(&frame(DATA, END_STREAM, 1, b"nobody asked")).await;
    assert_eq!(raw.connection_error().await, PROTOCOL_ERROR);
    assert!(instance.take().is_empty());
}

/// RFC 9113 §6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1, and SETTINGS_MAX_FRAME_SIZE under 16,384 or over
/// 2^24-1, are connection errors PROTOCOL_ERROR; the largest legal values are accepted.
#[tokio::test]
async fn a_setting_out_of_its_range_is_a_connection_error() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    for (setting, value) in [
        (ENABLE_PUSH, 2),
        (MAX_FRAME_SIZE, DEFAULT_MAX_FRAME - 1),
        (MAX_FRAME_SIZE, 1 << 24),
    ] {
        let mut raw = Raw::connect(elbe.node("zone-a"), &[(setting, value)]).await;
        assert_eq!(
            raw.connection_error().await,
            PROTOCOL_ERROR,
            "setting {setting:#x} = {value}"
        );
    }
    // The control: the largest legal values are accepted and a request goes through.
    let mut raw = Raw::connect(
        elbe.node("zone-a"),
        &[
            (SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW),
            (ENABLE_PUSH, 0),
            (MAX_FRAME_SIZE, (1 << 24) - 1),
        ],
    )
    .await;
    raw.send(&get(1, "/legal")).await;
    assert_eq!(raw.response(1).await.status, 200);
}

/// RFC 9113 §6.5.2: "Values above the maximum flow-control window size of 2^31-1 MUST be treated as a connection
/// error of type FLOW_CONTROL_ERROR". Today's server (h2 0.4, `frame::Settings::load`) refuses the value as an
/// invalid setting, PROTOCOL_ERROR: the connection is still refused, with the wrong code.
#[tokio::test]

async fn an_initial_window_over_the_largest_window_is_a_flow_control_error() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let mut raw = Raw::connect(
        elbe.node("zone-a"),
        &[(SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW + 1)],
    )
    .await;
    assert_eq!(raw.connection_error().await, FLOW_CONTROL_ERROR);
}

/// RFC 9113 §4.2: a frame longer than the SETTINGS_MAX_FRAME_SIZE elbe announced is FRAME_SIZE_ERROR; for a frame
/// that carries a field block it must be a connection error, for DATA it may be a stream error.
#[tokio::test]
async fn a_frame_over_elbes_max_frame_size_is_a_frame_size_error() {
    let (_instance, elbe, mut raw) = raw_setup(&[]).await;
    let max = raw.setting(MAX_FRAME_SIZE).unwrap_or(DEFAULT_MAX_FRAME) as usize;
    let mut fields = request_fields("GET", "/big-headers");
    let big = "b".repeat(max);
    fields.push(("x-big", &big));
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&fields),
    ))
    .await;
    assert_eq!(
        raw.connection_error().await,
        FRAME_SIZE_ERROR,
        "HEADERS of {max}+ bytes"
    );

    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    let max = raw.setting(MAX_FRAME_SIZE).unwrap_or(DEFAULT_MAX_FRAME) as usize;
    raw.send(&frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(&request_fields("POST", "/big-data")),
    ))
    .await;
    raw.send(&frame(DATA, END_STREAM, 1, &vec![b'd'; max + 1]))
        .await;
    let answer = raw.answer(1).await;

    assert!(
        matches!(
            answer,
            Answer::Reset(FRAME_SIZE_ERROR) | Answer::GoAway(FRAME_SIZE_ERROR)
        ),
        "DATA of {} bytes: {answer:?}",
        max + 1
    );
}

/// RFC 9113 §5.1.2: a HEADERS that takes the client past elbe's SETTINGS_MAX_CONCURRENT_STREAMS is a stream error
/// PROTOCOL_ERROR or REFUSED_STREAM; the streams within the limit are served once the instance answers.
#[tokio::test]
async fn streams_past_the_concurrency_limit_are_refused_and_the_others_complete() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    let limit = raw
        .setting(MAX_CONCURRENT_STREAMS)
        .expect("elbe announces SETTINGS_MAX_CONCURRENT_STREAMS");
    assert!(
        (1..=1000).contains(&limit),
        "a limit a test can reach: {limit}"
    );
    let streams: Vec<u32> = (0..=limit).map(|i| 1 + 2 * i).collect();
    let mut bytes = Vec::new();
    for id in &streams {
        bytes.extend(get(*id, &format!("/hold/{id}")));
    }
    raw.send(&bytes).await;
    for _ in 0..limit {
        instance.next().await;
    }
    let extra = *streams.last().unwrap();
    let refused = raw
        .until("the extra stream's refusal", |f| {
            f.kind == RST_STREAM || f.kind == GOAWAY
        })
        .await;

    assert_eq!(
        refused.stream, extra,
        "the stream past the limit is the one refused: {refused:?}"
    );
    assert!(
        matches!(refused.error_code(), Some(REFUSED_STREAM | PROTOCOL_ERROR)),
        "{refused:?}"
    );
    instance.release();
    let mut done = std::collections::HashSet::new();
    while done.len() < limit as usize {
        let frame = raw
            .until("every held stream's response", |f| f.stream != 0)
            .await;
        assert!(
            frame.kind != RST_STREAM,
            "a stream within the limit was reset: {frame:?}"
        );
        if frame.kind == HEADERS && !done.contains(&frame.stream) {
            assert_eq!(
                status_of(&frame.payload),
                Some(200),
                "stream {}",
                frame.stream
            );
        }
        if frame.ends_stream() {
            done.insert(frame.stream);
        }
    }
    assert!(!done.contains(&extra));
    assert!(instance
        .take()
        .iter()
        .all(|s| s.path() != format!("/hold/{extra}")));
}

/// RFC 9113 §6.8: after the client's GOAWAY elbe opens nothing new, finishes the streams in flight, then closes.
#[tokio::test]
async fn after_the_clients_goaway_elbe_finishes_streams_in_flight_and_closes() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    raw.send(&get(1, "/hold/in-flight")).await;
    assert_eq!(instance.next().await.path(), "/hold/in-flight");
    let mut goaway = 0u32.to_be_bytes().to_vec(); // last stream id: elbe opened none
    goaway.extend(NO_ERROR.to_be_bytes());
    raw.send(&frame(GOAWAY, 0, 0, &goaway)).await;
    instance.release();
    let response = raw.response(1).await;
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"/hold/in-flight"[..])
    );
    loop {
        match raw.next_within(STEP).await {
            Next::Closed => break,
            Next::Frame(f) => assert!(
                f.kind != HEADERS && f.kind != DATA,
                "after the response: {f:?}"
            ),
            Next::Quiet => {
                panic!("elbe kept the connection open {STEP:?} after the client's GOAWAY")
            }
        }
    }
}

/// Sends each case's bytes on a fresh connection; fails naming every case whose GOAWAY code was not the one
/// expected (all are run, so one run lists every divergence).
async fn assert_connection_errors(elbe: &Elbe, cases: Vec<(&str, Vec<u8>, u32)>) {
    let mut failures = Vec::new();
    for (name, bytes, code) in cases {
        let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
        raw.send(&bytes).await;
        let got = raw.connection_error().await;
        println!("{name}: GOAWAY {got:#x}");
        if got != code {
            failures.push(format!("{name}: GOAWAY {got:#x}, expected {code:#x}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// RFC 9113 §5.1, §6: a frame on the wrong stream (or on none), or out of its place, is a connection error
/// PROTOCOL_ERROR; a frame of an unknown type, or an unknown flag, is ignored (§4.1, §5.5), so the connection goes
/// on.
#[tokio::test]
async fn frames_on_the_wrong_stream_or_out_of_place_are_connection_errors() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let headers = |stream| {
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &block(&request_fields("GET", "/x")),
        )
    };
    let continuation = frame(
        CONTINUATION,
        END_HEADERS,
        1,
        &block(&request_fields("GET", "/x")),
    );
    let cases = vec![
        (
            "PING on a stream (§6.7)",
            frame(PING, 0, 1, &[0; 8]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS on a stream (§6.5)",
            frame(SETTINGS, 0, 1, &[]),
            PROTOCOL_ERROR,
        ),
        (
            "GOAWAY on a stream (§6.8)",
            frame(GOAWAY, 0, 1, &[0; 8]),
            PROTOCOL_ERROR,
        ),
        (
            "DATA on stream 0 (§6.1)",
            frame(DATA, 0, 0, b"x"),
            PROTOCOL_ERROR,
        ),
        ("HEADERS on stream 0 (§6.2)", headers(0), PROTOCOL_ERROR),
        (
            "WINDOW_UPDATE of 0 on the connection (§6.9)",
            window_update(0, 0),
            PROTOCOL_ERROR,
        ),
        (
            "RST_STREAM on an idle stream (§6.4)",
            rst_stream(1, h2_wire::CANCEL),
            PROTOCOL_ERROR,
        ),
        (
            "CONTINUATION without HEADERS (§6.10)",
            continuation,
            PROTOCOL_ERROR,
        ),
    ];
    assert_connection_errors(&elbe, cases).await;

    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    let mut bytes = frame(0xfa, 0xff, 0, b"extension");
    bytes.extend(frame(0xfb, 0, 1, b"on a stream"));
    bytes.extend(frame(PING, 0xfe, 0, b"flags!!!"));
    bytes.extend(get(1, "/after-unknown"));
    raw.send(&bytes).await;
    let response = raw.response(1).await;
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"/after-unknown"[..])
    );
}

/// RFC 9113 §6.4, §6.5, §6.7, §6.9: a PING that is not 8 bytes, a SETTINGS that is not a multiple of 6 (or an ACK
/// that is not empty), a WINDOW_UPDATE or RST_STREAM that is not 4 bytes "MUST be treated as a connection error of
/// type FRAME_SIZE_ERROR". Today's server closes each with GOAWAY PROTOCOL_ERROR.
#[tokio::test]

async fn a_control_frame_of_the_wrong_length_is_a_frame_size_error() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let cases = vec![
        (
            "PING of 7 bytes (§6.7)",
            frame(PING, 0, 0, &[0; 7]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS of 5 bytes (§6.5)",
            frame(SETTINGS, 0, 0, &[0; 5]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS ACK with a payload (§6.5)",
            frame(SETTINGS, ACK, 0, &[0, 3, 0, 0, 0, 1]),
            FRAME_SIZE_ERROR,
        ),
        (
            "WINDOW_UPDATE of 3 bytes (§6.9)",
            frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1]),
            FRAME_SIZE_ERROR,
        ),
        (
            "RST_STREAM of 3 bytes (§6.4)",
            frame(RST_STREAM, 0, 1, &[0, 0, 8]),
            FRAME_SIZE_ERROR,
        ),
    ];
    assert_connection_errors(&elbe, cases).await;
}

/// Opens `path` (which the instance holds) on a fresh connection, then sends `bytes` on that open stream: how
/// elbe answered stream 1.
async fn answer_on_an_open_stream(
    elbe: &Elbe,
    instance: &mut Instance,
    path: &str,
    bytes: &[u8],
) -> Answer {
    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    raw.send(&get(1, path)).await;
    assert_eq!(instance.next().await.path(), path);
    raw.send(bytes).await;
    raw.answer(1).await
}

/// RFC 9113 §5.3.1, §6.9: a WINDOW_UPDATE of 0 on a stream and a stream that depends on itself are stream errors
/// PROTOCOL_ERROR (a RST_STREAM, or, as any stream error may be, a connection error with that code); nothing a
/// refused request carried reaches the instance.
#[tokio::test]
async fn a_zero_window_update_or_a_self_dependency_is_a_stream_error() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let mut instance = instance;
    let answer =
        answer_on_an_open_stream(&elbe, &mut instance, "/hold/zero", &window_update(1, 0)).await;
    assert!(
        matches!(
            answer,
            Answer::Reset(PROTOCOL_ERROR) | Answer::GoAway(PROTOCOL_ERROR)
        ),
        "WINDOW_UPDATE of 0 on a stream: {answer:?}"
    );

    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    let mut payload = 1u32.to_be_bytes().to_vec(); // depends on stream 1: itself
    payload.push(15); // weight
    payload.extend(block(&request_fields("GET", "/self-dependent")));
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM | PRIORITY,
        1,
        &payload,
    ))
    .await;
    let answer = raw.answer(1).await;
    assert!(
        matches!(
            answer,
            Answer::Reset(PROTOCOL_ERROR) | Answer::GoAway(PROTOCOL_ERROR)
        ),
        "a stream that depends on itself: {answer:?}"
    );
    control(&elbe, "/control").await;
    let paths: Vec<String> = instance
        .take()
        .iter()
        .map(|s| s.path().to_string())
        .collect();
    assert_eq!(
        paths,
        ["/control"],
        "a refused request reached the instance"
    );
}

/// RFC 9113 §5.1, §6.1: DATA on a stream the client already ended (half-closed remote) is a stream error
/// STREAM_CLOSED (or a connection error with that code). Today's server sends GOAWAY PROTOCOL_ERROR.
#[tokio::test]

async fn data_after_the_clients_end_stream_is_stream_closed() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let mut instance = instance;
    const STREAM_CLOSED: u32 = 0x5;
    let data = frame(DATA, END_STREAM, 1, b"after the end");
    let answer = answer_on_an_open_stream(&elbe, &mut instance, "/hold/closed", &data).await;
    assert!(
        matches!(
            answer,
            Answer::Reset(STREAM_CLOSED) | Answer::GoAway(STREAM_CLOSED)
        ),
        "{answer:?}"
    );
}

/// The response-status reader itself, on RFC 7541's own examples, C.5.1 (`:status: 302` as a raw literal with
/// incremental indexing) and C.6.1 (the same Huffman coded), and on the other forms a status can take: the other
/// literal kinds, static entries, a dynamic table size update first.
#[test]
fn the_status_reader_reads_rfc_7541s_examples() {
    assert_eq!(
        status_of(&[0x48, 0x03, b'3', b'0', b'2', 0x58, 0x07]),
        Some(302)
    );
    assert_eq!(status_of(&[0x48, 0x82, 0x64, 0x02]), Some(302));
    assert_eq!(status_of(&[0x08, 0x83, 0x6c, 0x0c, 0xff]), Some(503)); // without indexing
    assert_eq!(status_of(&[0x18, 0x82, 0x10, 0x01]), Some(200)); // never indexed
    assert_eq!(status_of(&[0x88]), Some(200));
    assert_eq!(status_of(&[0x8b]), Some(304));
    assert_eq!(status_of(&[0x20, 0x8d]), Some(404));
    assert_eq!(
        status_of(&[0xbe]),
        None,
        "a dynamic table reference is not guessed"
    );
    assert_eq!(
        status_of(&[0x5a, 0x01, b'x']),
        None,
        "another name is not a status"
    );
    assert_eq!(
        huffman_digits(&[0x08, 0x99, 0x69, 0xb7, 0x1d, 0x79, 0xf0, 0x7f]).as_deref(),
        Some("1234567890")
    );
    assert_eq!(huffman_digits(&[0x17]).as_deref(), Some("2"));
    assert_eq!(huffman_digits(&[0x10]), None, "padding must be ones");
    assert_eq!(
        huffman_digits(&[0x17, 0xff]),
        None,
        "padding of more than 7 bits"
    );
    assert_eq!(
        huffman_digits(&[0x64, 0x03]),
        None,
        "neither a digit nor padding"
    );
    assert_eq!(huffman_digits(&[0xf8]), None, "'&' is no digit");
}

// ---------------------------------------------------------------------------------------------------------------
// Streams and messages

/// RFC 9113 §8.2.1, §8.3: uppercase field names, a pseudo-header after a regular field, an unknown pseudo-header,
/// a missing or empty `:path` and a repeated `:method` make a request malformed: a stream error PROTOCOL_ERROR (or
/// a 400, or a connection error), and nothing reaches the instance.
#[tokio::test]
async fn malformed_requests_are_refused_and_never_reach_the_instance() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let mut instance = instance;
    let path = "/malformed";
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "an uppercase name",
            [request_fields("GET", path), vec![("X-Upper", "1")]].concat(),
        ),
        (
            "a pseudo-header after a regular field",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                ("x-a", "1"),
                (":path", path),
                (":authority", "example.test"),
            ],
        ),
        (
            "an unknown pseudo-header",
            [request_fields("GET", path), vec![(":colour", "blue")]].concat(),
        ),
        (
            "no :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "example.test"),
            ],
        ),
        ("an empty :path", request_fields("GET", "")),
        (
            "two :method",
            [vec![(":method", "GET")], request_fields("GET", path)].concat(),
        ),
    ];
    for (name, fields) in cases {
        let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
        raw.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &block(&fields),
        ))
        .await;
        let answer = raw.answer(1).await;

        assert!(
            matches!(
                answer,
                Answer::Reset(PROTOCOL_ERROR)
                    | Answer::GoAway(PROTOCOL_ERROR)
                    | Answer::Status(400)
            ),
            "{name}: {answer:?}"
        );
        // A request elbe forwarded would be at the instance before the control's, which follows it.
        control(&elbe, "/control").await;
        let paths: Vec<String> = instance
            .take()
            .iter()
            .map(|s| s.path().to_string())
            .collect();
        assert_eq!(paths, ["/control"], "{name}: reached the instance");
    }
}

/// RFC 9113 §6.9: a request body larger than elbe's windows arrives whole at the instance, because elbe gives the
/// window back (WINDOW_UPDATE) as it forwards the body.
#[tokio::test]
async fn a_body_larger_than_the_windows_reaches_the_instance_whole() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    let max_frame = raw.setting(MAX_FRAME_SIZE).unwrap_or(DEFAULT_MAX_FRAME) as usize;
    let mut stream_window = i64::from(
        raw.setting(SETTINGS_INITIAL_WINDOW_SIZE)
            .unwrap_or(DEFAULT_WINDOW),
    );
    let mut connection_window = i64::from(DEFAULT_WINDOW);
    // More than either window elbe can have opened: the client must wait for WINDOW_UPDATE to finish.
    let body = pattern(stream_window.max(1 << 20) as usize + 100_000);
    raw.send(&frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(&request_fields("POST", "/upload")),
    ))
    .await;
    let (mut sent, mut updates) = (0, 0);
    while sent < body.len() {
        let room = stream_window.min(connection_window).min(max_frame as i64);
        if room > 0 {
            let n = (room as usize).min(body.len() - sent);
            let last = sent + n == body.len();
            let flags = if last { END_STREAM } else { 0 };
            raw.send(&frame(DATA, flags, 1, &body[sent..sent + n]))
                .await;
            (sent, stream_window, connection_window) = (
                sent + n,
                stream_window - n as i64,
                connection_window - n as i64,
            );
            continue;
        }
        let update = raw
            .until("a WINDOW_UPDATE", |f| {
                f.kind == WINDOW_UPDATE || f.kind == RST_STREAM || f.kind == GOAWAY
            })
            .await;
        assert_eq!(update.kind, WINDOW_UPDATE, "{update:?}");
        let increment = i64::from(u32::from_be_bytes(update.payload[..4].try_into().unwrap()));
        match update.stream {
            0 => connection_window += increment,
            1 => stream_window += increment,
            _ => {}
        }
        updates += 1;
    }
    let response = raw.response(1).await;
    assert_eq!(response.status, 200);
    let seen = instance.next().await;
    assert_eq!(seen.body.len(), body.len(), "bytes at the instance");
    assert!(
        seen.body == body,
        "the instance received other bytes than sent"
    );
    assert!(updates > 0, "elbe sent no WINDOW_UPDATE");
}

/// RFC 9113 §6.9, §6.5.2: elbe sends no more DATA than the client's stream window (SETTINGS_INITIAL_WINDOW_SIZE
/// 100) until the client gives more with WINDOW_UPDATE; then the rest, and the bytes are the instance's.
#[tokio::test]
async fn elbe_sends_no_more_than_the_clients_window() {
    let (_instance, _elbe, mut raw) = raw_setup(&[(SETTINGS_INITIAL_WINDOW_SIZE, 100)]).await;
    raw.send(&get(1, "/bytes/10000")).await;
    let (mut granted, mut body, mut ended) = (100usize, Vec::new(), false);
    while !ended {
        // Read what the window allows, then make sure nothing more comes.
        loop {
            let wait = if body.len() < granted { STEP } else { QUIET };
            match raw.next_within(wait).await {
                Next::Frame(f) if f.is(DATA, 1) => {
                    body.extend_from_slice(&f.payload);
                    assert!(
                        body.len() <= granted,
                        "elbe sent {} bytes with a window of {granted}",
                        body.len()
                    );
                    if f.ends_stream() {
                        ended = true;
                        break;
                    }
                }
                Next::Frame(f) => assert!(!matches!(f.kind, RST_STREAM | GOAWAY), "{f:?}"),
                Next::Quiet if body.len() == granted => break,
                Next::Quiet => panic!("elbe sent {} of a window of {granted}", body.len()),
                Next::Closed => panic!("elbe closed after {} bytes", body.len()),
            }
        }
        if !ended {
            raw.send(&window_update(1, 2_500)).await;
            granted += 2_500;
        }
    }
    assert!(
        body == pattern(10_000),
        "the client received other bytes than the instance sent"
    );
}

/// RFC 9113 §4.2: no DATA frame is longer than the client's SETTINGS_MAX_FRAME_SIZE (the default 16,384 here),
/// however wide the windows.
#[tokio::test]
async fn no_data_frame_is_longer_than_the_clients_max_frame_size() {
    let (_instance, _elbe, mut raw) =
        raw_setup(&[(SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)]).await;
    raw.send(&window_update(0, MAX_WINDOW - DEFAULT_WINDOW))
        .await;
    raw.send(&get(1, "/bytes/300000")).await;
    let response = raw.response(1).await;
    assert_eq!(response.status, 200);
    let longest = response.data_frames().map(|f| f.length).max().unwrap_or(0);
    assert!(
        longest <= DEFAULT_MAX_FRAME as usize,
        "a DATA frame of {longest} bytes"
    );
    assert!(
        response.body == pattern(300_000),
        "the body differs from the instance's"
    );
}

/// RFC 9113 §5.4.2, §6.4: a client's RST_STREAM (CANCEL) ends that stream only; the connection goes on.
#[tokio::test]
async fn a_cancelled_stream_leaves_the_connection_usable() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    raw.send(&get(1, "/hold/cancelled")).await;
    assert_eq!(instance.next().await.path(), "/hold/cancelled");
    raw.send(&rst_stream(1, h2_wire::CANCEL)).await;
    raw.send(&get(3, "/next")).await;
    let response = raw.response(3).await;
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"/next"[..])
    );
}

/// RFC 9113 §8.2.2, §8.3.2: connection-specific fields the instance sent (Connection, Keep-Alive,
/// Transfer-Encoding) never reach the HTTP/2 client; names are lowercase (the `h2` client refuses a response with
/// an uppercase name: RFC 9113 §8.2.1), other fields keep their values, `:status` is the instance's.
#[tokio::test]
async fn response_fields_are_lowercase_without_connection_specific_ones() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let mut client = h2_client(TcpStream::connect(elbe.node("zone-a")).await.unwrap()).await;
    let (parts, body) = h2_send(&mut client, get_request("/hop"), None).await;
    assert_eq!(parts.status, 201);
    for name in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            !parts.headers.contains_key(name),
            "{name} reached the client: {:?}",
            parts.headers
        );
    }
    for name in parts.headers.keys() {
        assert_eq!(name.as_str(), name.as_str().to_ascii_lowercase());
    }
    assert_eq!(parts.headers["x-custom"], "Value-1");
    assert_eq!(parts.headers["x-mixed"], "AbC dEf");
    assert_eq!(body, b"hello world");
}

/// RFC 9110 §9.3.2, §15.3.5, §15.4.5 and RFC 9113 §8.1: a response to HEAD, a 204 and a 304 carry no content; a
/// response with content ends its stream with END_STREAM on its last frame, and nothing follows on that stream.
#[tokio::test]
async fn responses_without_content_carry_no_data_and_others_end_their_stream() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    for (method, path, status) in [
        ("HEAD", "/head", 200),
        ("GET", "/204", 204),
        ("GET", "/304", 304),
    ] {
        let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
        raw.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &block(&request_fields(method, path)),
        ))
        .await;
        let response = raw.response(1).await;
        assert_eq!(response.status, status, "{method} {path}");
        assert!(
            response.body.is_empty(),
            "{method} {path}: {} bytes of DATA",
            response.body.len()
        );
    }
    for (path, body) in [
        ("/chunked", &b"abcdefg"[..]),
        ("/bytes/5000", &pattern(5000)[..]),
    ] {
        let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
        raw.send(&get(1, path)).await;
        let response = raw.response(1).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.body, body, "{path}");
        let last = response.frames.last().expect("frames");
        assert!(last.ends_stream(), "{path}: {last:?}");
        // Nothing more on the stream after END_STREAM: the next frame elbe sends (a PING ACK) is the connection's.
        raw.send(&ping(*b"after-it")).await;
        let next = raw
            .until("the PING ACK", |f| f.kind == PING || f.stream == 1)
            .await;
        assert_eq!(next.kind, PING, "{path}: after END_STREAM: {next:?}");
    }
}

/// RFC 9113 §4.3, §6.10: a response head longer than the client's SETTINGS_MAX_FRAME_SIZE comes as HEADERS and
/// CONTINUATION frames, none longer than that, and decodes whole.
#[tokio::test]
async fn a_response_head_longer_than_a_frame_is_split_into_continuations() {
    let (_instance, elbe, mut raw) = raw_setup(&[]).await;
    raw.send(&get(1, "/big-head")).await;
    let response = raw.response(1).await;
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"ok"[..])
    );
    let head = &response.frames[0];
    assert!(
        head.length > DEFAULT_MAX_FRAME as usize,
        "the block was {} bytes",
        head.length
    );
    assert!(
        raw.largest <= DEFAULT_MAX_FRAME as usize,
        "a frame of {} bytes",
        raw.largest
    );

    let mut client = h2_client(TcpStream::connect(elbe.node("zone-a")).await.unwrap()).await;
    let (parts, _) = h2_send(&mut client, get_request("/big-head"), None).await;
    assert_eq!(parts.headers["x-big"].len(), BIG_FIELD);
    assert!(parts.headers["x-big"].as_bytes().iter().all(|b| *b == b'x'));
}

/// RFC 7541 §4.2, RFC 9113 §6.5.2: a client that allows no dynamic table (SETTINGS_HEADER_TABLE_SIZE 0) gets
/// responses encoded without one: the first block starts with a dynamic table size update to 0, and no block
/// refers to a dynamic entry (read raw); every response decodes with its fields (the `h2` client).
#[tokio::test]
async fn a_client_without_a_dynamic_table_gets_responses_encoded_without_one() {
    const HEADER_TABLE_SIZE: u16 = 0x1;
    let (_instance, elbe, mut raw) = raw_setup(&[(HEADER_TABLE_SIZE, 0)]).await;
    for stream in [1, 3, 5, 7, 9] {
        raw.send(&get(stream, "/hop")).await;
        let response = raw.response(stream).await;
        assert_eq!(response.status, 201);
        let block = &response.frames[0].payload;
        let fields = representations(block)
            .unwrap_or_else(|| panic!("a block that does not parse: {block:?}"));
        if stream == 1 {
            assert_eq!(
                fields.first(),
                Some(&Representation::SizeUpdate(0)),
                "{fields:?}"
            );
        }
        for field in &fields {
            let dynamic = match field {
                Representation::Indexed(index) => *index > 61,
                Representation::Literal { name, .. } => *name > 61,
                Representation::SizeUpdate(size) => *size > 0,
            };
            assert!(
                !dynamic,
                "stream {stream}: {field:?} uses a dynamic table of size 0: {fields:?}"
            );
        }
    }

    let tcp = TcpStream::connect(elbe.node("zone-a")).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .header_table_size(0)
        .handshake(tcp)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client;
    for _ in 0..5 {
        let (parts, body) = h2_send(&mut client, get_request("/hop"), None).await;
        assert_eq!(parts.status, 201);
        assert_eq!(parts.headers["x-custom"], "Value-1");
        assert_eq!(body, b"hello world");
    }
}

/// The block walker itself, on RFC 7541 Appendix C.3 (requests whose fields go into, and then come from, the
/// dynamic table) and on size updates: the control showing that the test above sees a dynamic reference.
#[test]
fn the_block_walker_reads_rfc_7541s_examples() {
    use Representation::*;
    let c31 = [
        0x82, 0x86, 0x84, 0x41, 0x0f, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p', b'l',
        b'e', b'.', b'c', b'o', b'm',
    ];
    let indexing = |name| Literal {
        name,
        indexing: true,
    };
    assert_eq!(
        representations(&c31),
        Some(vec![Indexed(2), Indexed(6), Indexed(4), indexing(1)])
    );
    let c32 = [
        0x82, 0x86, 0x84, 0xbe, 0x58, 0x08, b'n', b'o', b'-', b'c', b'a', b'c', b'h', b'e',
    ];
    assert_eq!(
        representations(&c32),
        Some(vec![
            Indexed(2),
            Indexed(6),
            Indexed(4),
            Indexed(62),
            indexing(24)
        ])
    );
    let mut c33 = vec![0x82, 0x87, 0x85, 0xbf, 0x40, 0x0a];
    c33.extend(b"custom-key");
    c33.push(0x0c);
    c33.extend(b"custom-value");
    assert_eq!(
        representations(&c33),
        Some(vec![
            Indexed(2),
            Indexed(7),
            Indexed(5),
            Indexed(63),
            indexing(0)
        ])
    );
    assert_eq!(
        representations(&[0x20, 0x3f, 0xe1, 0x1f, 0x10, 0x01, b'a', 0x81, b'b']),
        Some(vec![
            SizeUpdate(0),
            SizeUpdate(4096),
            Literal {
                name: 0,
                indexing: false
            }
        ])
    );
    assert_eq!(
        representations(&[0x40, 0x05, b'a']),
        None,
        "a string past the block's end"
    );
}

/// RFC 9113 §6.1, §6.2, §6.3: padding on HEADERS and DATA, a PRIORITY field in HEADERS and a PRIORITY frame (on an
/// idle stream, where it is allowed: §5.1) are read and dropped; the instance gets the request and its body as
/// they were without them.
#[tokio::test]
async fn padding_and_priority_are_read_and_dropped() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    let mut bytes = frame(0x2, 0, 9, &[0, 0, 0, 0, 200]); // PRIORITY on idle stream 9
    let mut headers = vec![3]; // pad length
    headers.extend([0, 0, 0, 0, 31]); // PRIORITY: depends on stream 0, weight 32
    headers.extend(block(&request_fields("POST", "/padded")));
    headers.extend([0; 3]);
    bytes.extend(frame(HEADERS, END_HEADERS | PADDED | PRIORITY, 1, &headers));
    let mut data = vec![10];
    data.extend_from_slice(b"padded body");
    data.extend([0; 10]);
    bytes.extend(frame(DATA, END_STREAM | PADDED, 1, &data));
    raw.send(&bytes).await;
    let response = raw.response(1).await;
    assert_eq!(response.status, 200);
    let seen = instance.next().await;
    assert_eq!((seen.method(), seen.path()), ("POST", "/padded"));
    assert_eq!(seen.body, b"padded body");
}

/// RFC 9113 §8.1: a request may end with a trailer section (HEADERS with END_STREAM after DATA); it is accepted
/// and the body reaches the instance.
#[tokio::test]
async fn request_trailers_are_accepted_and_the_body_arrives() {
    let (mut instance, _elbe, mut raw) = raw_setup(&[]).await;
    let mut bytes = frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(&request_fields("POST", "/trailers")),
    );
    bytes.extend(frame(DATA, 0, 1, b"part one, "));
    bytes.extend(frame(DATA, 0, 1, b"part two"));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&[("x-checksum", "42")]),
    ));
    raw.send(&bytes).await;
    let response = raw.response(1).await;
    assert_eq!(response.status, 200);
    let seen = instance.next().await;
    assert_eq!((seen.method(), seen.path()), ("POST", "/trailers"));
    assert_eq!(seen.body, b"part one, part two");
}

/// RFC 9113 §5: streams are independent: 100 concurrent GETs on one connection each get their own response.
#[tokio::test]
async fn a_hundred_concurrent_streams_each_get_their_own_response() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let client = h2_client(TcpStream::connect(elbe.node("zone-a")).await.unwrap()).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/stream/{i}");
            let (parts, body) = h2_send(&mut client, get_request(&path), None).await;
            (path, parts.status, body)
        }));
    }
    for task in tasks {
        let (path, status, body) = tokio::time::timeout(STEP, task)
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            body,
            path.as_bytes(),
            "{path} got another stream's response"
        );
    }
}

/// RFC 7541 §2.3, §6.1, §6.2.1: fields the client's encoder put in the dynamic table and then sends as indexes
/// decode the same every time: the instance sees the same fields on every request, from the `h2` client (which
/// indexes) and from a raw client indexing explicitly.
#[tokio::test]
async fn indexed_fields_decode_the_same_on_every_request() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let mut instance = instance;
    let wanted = |seen: &Seen| {
        ["x-a", "x-b", "user-agent", "cookie"].map(|n| seen.header(n).map(str::to_string))
    };
    let mut client = h2_client(TcpStream::connect(elbe.node("zone-a")).await.unwrap()).await;
    for _ in 0..5 {
        let request = http::Request::get("http://example.test/same")
            .header("x-a", "alpha")
            .header("x-b", "a longer value, to be worth indexing")
            .header("user-agent", "h2-conformance/1")
            .header("cookie", "k=v")
            .body(())
            .unwrap();
        let (parts, _) = h2_send(&mut client, request, None).await;
        assert_eq!(parts.status, 200);
        let seen = instance.next().await;
        assert_eq!(seen.path(), "/same");
        assert_eq!(
            wanted(&seen),
            [
                "alpha",
                "a longer value, to be worth indexing",
                "h2-conformance/1",
                "k=v"
            ]
            .map(|v| Some(v.to_string()))
        );
    }

    let mut raw = Raw::connect(elbe.node("zone-a"), &[]).await;
    let mut first = block(&request_fields("GET", "/indexed"));
    first.extend(h2_wire::literal_with_indexing(b"x-a", b"from-the-table"));
    raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &first))
        .await;
    assert_eq!(raw.response(1).await.status, 200);
    for stream in [3, 5] {
        let mut again = block(&request_fields("GET", "/indexed"));
        again.extend(h2_wire::indexed(62)); // the newest dynamic entry: x-a: from-the-table
        raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &again))
            .await;
        assert_eq!(raw.response(stream).await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(instance.next().await.header("x-a"), Some("from-the-table"));
    }
}

/// The TLS path (ALPN h2, RFC 9113 §3.2): a GET and a POST over HTTPS reach the instance.
#[tokio::test]
async fn over_tls_with_alpn_h2_a_get_and_a_post_reach_the_instance() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new().https(None)).await;
    let mut instance = instance;
    let address = elbe.node_for("zone-a", elbe::config::Protocol::Https);
    let tls = tls_connect(address).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut client = h2_client(tls).await;
    let (parts, body) = h2_send(&mut client, get_request("/tls"), None).await;
    assert_eq!(
        (parts.status.as_u16(), body.as_slice()),
        (200, &b"/tls"[..])
    );
    assert_eq!(
        instance.next().await.header("x-forwarded-proto"),
        Some("https")
    );
    let upload = Bytes::from(pattern(100_000));
    let post = http::Request::post("https://localhost/tls-upload")
        .body(())
        .unwrap();
    let (parts, _) = h2_send(&mut client, post, Some(upload.clone())).await;
    assert_eq!(parts.status, 200);
    let seen = instance.next().await;
    assert_eq!(seen.method(), "POST");
    assert!(
        seen.body == upload,
        "the instance received {} other bytes",
        seen.body.len()
    );
}

/// A real load generator: `h2load -n 2000 -c 4 -m 10` (h2c prior knowledge to an http:// URL) has every request
/// succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_gets_every_request_answered() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let url = elbe.url("zone-a", "/load");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("h2load")
            .args(["-n", "2000", "-c", "4", "-m", "10", &url])
            .output(),
    )
    .await
    .expect("h2load finished within 30 s")
    .expect("h2load (Debian package nghttp2-client) is installed: ./test.sh installs it");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "h2load failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The numbers, for whoever compares servers (`--no-capture`): throughput and the requests' outcome.
    for line in text
        .lines()
        .filter(|l| l.starts_with("finished in") || l.starts_with("requests:"))
    {
        println!("h2load: {line}");
    }
    let requests = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_default();
    assert!(
        requests.contains("2000 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{requests}\n{text}"
    );
    let statuses = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap_or_default();
    assert!(statuses.contains("2000 2xx"), "{statuses}");
}

/// curl with `--http2-prior-knowledge` posts a 200 KB file: the instance receives every byte.
#[tokio::test]
async fn curl_posts_a_200_kb_file_over_h2c() {
    let instance = Instance::start().await;
    let elbe = instance.behind_elbe(ConfigBuilder::new()).await;
    let mut instance = instance;
    let body: Vec<u8> = (0..200_000).map(|i| b'a' + (i % 26) as u8).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .arg(elbe.url("zone-a", "/curl-upload"))
            .output(),
    )
    .await
    .expect("curl finished within 15 s")
    .expect("curl (Debian package curl) is installed");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(out, "200 2");
    let seen = instance.next().await;
    assert_eq!((seen.method(), seen.path()), ("POST", "/curl-upload"));
    assert_eq!(seen.body.len(), body.len());
    assert!(
        seen.body == body,
        "the instance received other bytes than curl sent"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Well-formed clients: the `h2` crate, over TCP or TLS.

/// An `h2` client connection on `io`, its connection driven by a task of its own.
async fn h2_client<IO>(io: IO) -> h2::client::SendRequest<Bytes>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn get_request(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://example.test{path}"))
        .body(())
        .unwrap()
}

/// Sends `request` (with `body`, when given) and reads the whole response, within [`STEP`].
async fn h2_send(
    client: &mut h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    body: Option<Bytes>,
) -> (http::response::Parts, Vec<u8>) {
    tokio::time::timeout(STEP, async {
        let ready = client
            .clone()
            .ready()
            .await
            .expect("the connection takes a stream");
        *client = ready;
        let (response, mut send) = client
            .send_request(request, body.is_none())
            .expect("a stream");
        if let Some(body) = body {
            send.send_data(body, true).expect("h2 takes the body");
        }
        let (parts, mut recv) = response.await.expect("a response").into_parts();
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.expect("the body");
            let _ = recv.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        (parts, out)
    })
    .await
    .expect("the response came in time")
}

/// A TLS connection to `address` trusting only the development CA, offering ALPN h2 only.
async fn tls_connect(address: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the TLS handshake in time")
    .expect("the TLS handshake")
}
