//! Not part of elbe's API: what the fuzz targets in `fuzz/` call. The parsers of untrusted bytes are private to the
//! crate; these wrappers call them unchanged and hand back plain data (`http` types, `bytes`, numbers), so the
//! targets fuzz the real code and check its invariants from outside (`fuzz/README.md` lists them).
//!
//! The parsers: the HTTP/1 server's request head ([`parse_request`]), the body decoder for `Content-Length` and
//! chunked bodies ([`BodyDecoder`]), the HTTP/1 client's response head ([`read_response_head`]), the Check layer
//! ([`check_request`]), the DNS responder's packet path ([`DnsResponder`]), the PROXY protocol header a trusted upstream sends
//! ([`parse_proxy_header`]), the ELB API's Query decoder ([`api_query`], [`api_lists`]), HTTP/2 frames
//! ([`read_h2_frame`], with the writers in [`write_h2_frame`]), and the HTTP/2 server connection that reads
//! them ([`h2_connection()`]). The configuration parser is public already ([`crate::config::parse`]).

use std::io;
use std::net::IpAddr;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use http_body::Body;

use crate::config::ConfigError;
use crate::data_plane::back_end::http1::read_head;
use crate::data_plane::body::RequestBody;
use crate::data_plane::front_end::http1::request::{self, HeadLimits};
use crate::data_plane::headers::{self, Rejection};
use crate::dns::{self, SharedZone, Zone};
use crate::http1::framing::{self, Chunk, Download};

mod h2_connection;
mod h2_frame;

pub use h2_connection::h2_connection;

pub use h2_frame::{
    check_h2_preface, h2_settings_after, read_h2_frame, write_h2_frame, H2Error, H2Frame,
    H2_PREFACE_LEN,
};

/// A request head as elbe's HTTP/1 server parsed it.
#[derive(Debug, PartialEq)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The connection closes after this request's response.
    pub close: bool,
    pub head_only: bool,
    pub body: RequestBodyKind,
}

/// How the server frames the request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBodyKind {
    /// No body: none was announced, `Content-Length: 0`, or the framing is ambiguous (the stack refuses those).
    Empty,
    Length(u64),
    Chunked,
}

/// Parses a request head out of `buf` as the HTTP/1 server does (taking its bytes): `Ok(None)` while incomplete,
/// `Err` with the status of ELB's refusal.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head_bytes: usize,
    max_headers: usize,
    max_uri_bytes: usize,
) -> Result<Option<RequestHead>, StatusCode> {
    let limits = HeadLimits {
        max_head_bytes,
        max_headers,
        max_uri_bytes,
    };
    let Some(head) = request::parse(buf, limits).map_err(|refusal| refusal.status())? else {
        return Ok(None);
    };
    let (parts, body) = head.request.into_parts();
    let body = match (&body, body.size_hint().exact()) {
        (RequestBody::Empty, _) => RequestBodyKind::Empty,
        (_, Some(length)) => RequestBodyKind::Length(length),
        (_, None) => RequestBodyKind::Chunked,
    };
    Ok(Some(RequestHead {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        close: head.current.close,
        head_only: head.current.head_only,
        body,
    }))
}

/// One frame out of the body decoder.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyFrame {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// The body decoder both HTTP/1 roles use (`framing::decode`), for a body of known length or a chunked one.
#[derive(Debug)]
pub struct BodyDecoder {
    download: Download,
}

impl BodyDecoder {
    /// A body of `length` bytes (`Content-Length`).
    pub fn length(length: u64) -> Self {
        BodyDecoder {
            download: Download::Length(length),
        }
    }

    /// A chunked body, from its first chunk-size line.
    pub fn chunked() -> Self {
        BodyDecoder {
            download: Download::Chunked(Chunk::Size),
        }
    }

    /// The next frame out of `buf` (taking its bytes); `Ok(None)`: more bytes are needed, or the body ended.
    pub fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<BodyFrame>> {
        let frame = framing::decode(&mut self.download, buf)?;
        Ok(frame.map(|frame| match frame.into_data() {
            Ok(data) => BodyFrame::Data(data),
            Err(frame) => BodyFrame::Trailers(frame.into_trailers().unwrap_or_default()),
        }))
    }

    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.download, Download::Done)
    }
}

/// `data` as elbe writes a chunked body: one chunk per non-empty piece, then the last chunk with `trailers`.
pub fn encode_chunked(data: &[Bytes], trailers: Option<&HeaderMap>) -> BytesMut {
    let mut out = BytesMut::new();
    for piece in data.iter().filter(|piece| !piece.is_empty()) {
        out.extend_from_slice(&framing::chunk_size_line(piece.len()));
        out.extend_from_slice(piece);
        out.extend_from_slice(framing::CHUNK_END);
    }
    match trailers {
        Some(trailers) => out.extend_from_slice(&framing::last_chunk_with(trailers)),
        None => out.extend_from_slice(framing::LAST_CHUNK),
    }
    out
}

/// How a response's body is delimited, as the HTTP/1 client decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseFraming {
    /// This many bytes (0 for a response that has no body: HEAD, 204, 304, `Content-Length: 0`).
    Length(u64),
    Chunked,
    UntilClose,
    /// Anything else: a decoder state no fresh response head should start in.
    Other(String),
}

/// A response head as elbe's HTTP/1 client scanned it.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The header map (built when `raw` was false).
    pub headers: HeaderMap,
    /// The reason phrase and kept header lines as received, each ending in CRLF (when `raw` was true).
    pub raw: Option<RawLines>,
    pub framing: ResponseFraming,
    pub keep_alive: bool,
}

/// The kept lines of a response head, passed on to an HTTP/1 client as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLines {
    pub reason: Bytes,
    pub lines: Bytes,
    pub has_length: bool,
}

/// Reads a response head out of `buf` as the HTTP/1 client does (taking its bytes, skipping 1xx responses):
/// `Ok(None)` while incomplete, `Err` with the reason the instance's response is a 502.
pub fn read_response_head(
    buf: &mut BytesMut,
    head_only: bool,
    raw: bool,
    upgrade: bool,
) -> Result<Option<ResponseHead>, String> {
    let Some(head) = read_head(buf, head_only, raw, upgrade).map_err(|error| error.to_string())?
    else {
        return Ok(None);
    };
    let framing = match head.download {
        Download::Length(length) => ResponseFraming::Length(length),
        Download::Chunked(Chunk::Size) => ResponseFraming::Chunked,
        Download::UntilClose => ResponseFraming::UntilClose,
        other => ResponseFraming::Other(format!("{other:?}")),
    };
    let (parts, ()) = head.response.into_parts();
    Ok(Some(ResponseHead {
        status: parts.status,
        headers: parts.headers,
        raw: head.raw.map(|raw| RawLines {
            reason: raw.reason,
            lines: raw.lines,
            has_length: raw.has_length,
        }),
        framing,
        keep_alive: head.keep_alive,
    }))
}

/// The Check layer's verdict on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckVerdict {
    Pass,
    /// 400, with the reason.
    BadRequest(&'static str),
    /// 405.
    MethodNotAllowed,
    /// 414.
    UriTooLong,
    /// 417.
    ExpectationFailed,
}

/// The Check layer's checks of one request head (`headers::check_request`).
pub fn check_request(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    max_uri_bytes: usize,
) -> CheckVerdict {
    match headers::check_request(method, uri, version, headers, max_uri_bytes) {
        Ok(()) => CheckVerdict::Pass,
        Err(Rejection::BadRequest(reason)) => CheckVerdict::BadRequest(reason),
        Err(Rejection::MethodNotAllowed) => CheckVerdict::MethodNotAllowed,
        Err(Rejection::UriTooLong) => CheckVerdict::UriTooLong,
        Err(Rejection::ExpectationFailed) => CheckVerdict::ExpectationFailed,
    }
}

/// The DNS responder's packet path for the zone of one configuration: bytes in, bytes out, as its sockets do.
pub struct DnsResponder {
    zone: SharedZone,
}

impl DnsResponder {
    /// The zone of the load balancers in configuration `text` (as `elbe run` would publish it at start).
    pub fn from_config(text: &str) -> Result<Self, ConfigError> {
        let config = crate::config::parse(text, Path::new("fuzz.toml"))?;
        Ok(DnsResponder {
            zone: SharedZone::new(Zone::of(&config)),
        })
    }

    /// The domain the responder is authoritative for (lower case, no trailing dot).
    pub fn domain(&self) -> String {
        self.zone.load().domain.clone()
    }

    /// The addresses a load balancer name (lower case, no trailing dot) has, if it is one.
    pub fn nodes(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.zone.load().names.get(name).cloned()
    }

    /// Every load balancer name in the zone.
    pub fn names(&self) -> Vec<String> {
        self.zone.load().names.keys().cloned().collect()
    }

    /// The reply to one packet, or `None` when the responder sends nothing (not a query, or not parseable).
    pub fn respond(&self, packet: &[u8]) -> Option<Vec<u8>> {
        dns::respond(&self.zone, packet)
    }
}

/// A PROXY protocol v1/v2 header read from the start of `bytes` (`data_plane::tcp::proxy_protocol::parse`):
/// `Ok(None)` while more bytes are needed, `Ok(Some((length, source)))` for a whole header of `length` bytes
/// naming `source` (if it names one), `Err` with the refusal's words.
pub fn parse_proxy_header(
    bytes: &[u8],
) -> Result<Option<(usize, Option<std::net::SocketAddr>)>, String> {
    use crate::data_plane::tcp::proxy_protocol::{parse, Parsed};
    match parse(bytes) {
        Ok(Parsed::Incomplete) => Ok(None),
        Ok(Parsed::Header { length, source }) => Ok(Some((length, source))),
        Err(error) => Err(error.to_string()),
    }
}

/// The PROXY v1 line elbe writes to instances for a client and a node (ELB-SPEC §7).
pub fn proxy_v1_line(client: std::net::SocketAddr, node: std::net::SocketAddr) -> String {
    crate::data_plane::tcp::proxy_protocol::v1_line(client, node)
}

/// The ELB API's decoder of a form-encoded call (`control_plane::api`: parameters, `Action`, `Version`, the
/// action's typed request, unknown parameters refused): the call's `Debug` text, or the refusal's ELB code and
/// HTTP status.
pub fn api_query(form: &[u8]) -> Result<String, (&'static str, u16)> {
    crate::control_plane::api::decode_form(form)
}

/// The ELB API's list and map readers over a form: the members of `list` (`list.member.N…`, each member's
/// fields below it, `""` for a plain value) and the entries of `map` (`map.entry.N.key/value`), or the refusal's
/// ELB code.
#[allow(clippy::type_complexity)]
pub fn api_lists(
    form: &[u8],
    list: &str,
    map: &str,
) -> Result<(Vec<Vec<(String, String)>>, Vec<(String, String)>), &'static str> {
    crate::control_plane::api::decode_lists(form, list, map)
}

/// HPACK (`http2::hpack`): `data` as one connection's header blocks, each led by one byte: `0xff` and two more
/// bytes (big-endian) change our SETTINGS_HEADER_TABLE_SIZE for the blocks after it; any other value is the length
/// of the block that follows (cut short at the end of `data`). Blocks are decoded in order with a 1,024-byte
/// header-list limit until one is refused as a connection error (a block over the limit is not one: decoding goes
/// on). Each block decoded whole (and with lowercase names, as HTTP/2 requires) is encoded again and decoded by a
/// second encoder and decoder, kept across blocks and told the same table sizes: `Err` says which block came back
/// different. `Ok` is the number of blocks decoded.
pub fn hpack_blocks(data: &[u8]) -> Result<usize, String> {
    use crate::http2::hpack::{Decoder, Encoder, DEFAULT_TABLE_SIZE};

    let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
    let mut encoder = Encoder::default();
    let mut again = Decoder::new(DEFAULT_TABLE_SIZE, usize::MAX);
    let mut rest = data;
    let mut decoded = 0;
    while let Some((&lead, after)) = rest.split_first() {
        if lead == 0xff {
            let size = after
                .get(..2)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            decoder.set_max_table_size(size);
            encoder.set_peer_max_table_size(size);
            again.set_max_table_size(size);
            rest = after.get(2..).unwrap_or_default();
            continue;
        }
        let (block, after) = after.split_at(usize::from(lead).min(after.len()));
        rest = after;
        let mut fields = Vec::new();
        match decoder.decode(&bytes::Bytes::copy_from_slice(block), |f| {
            fields.push((f.name, f.value))
        }) {
            Ok(()) => decoded += 1,
            Err(error) if error.is_header_list_too_large() => {
                decoded += 1;
                continue;
            }
            Err(_) => return Ok(decoded),
        }
        if fields
            .iter()
            .any(|(name, _)| name.iter().any(u8::is_ascii_uppercase))
        {
            continue;
        }
        let mut encoded = bytes::BytesMut::new();
        encoder.encode(
            fields.iter().map(|(name, value)| (&name[..], &value[..])),
            &mut encoded,
        );
        let mut back = Vec::new();
        again
            .decode(&encoded.freeze(), |f| back.push((f.name, f.value)))
            .map_err(|error| {
                format!("block {decoded}: its fields encoded again do not decode: {error}")
            })?;
        if back != fields {
            return Err(format!(
                "block {decoded}: {fields:?} encoded again decoded as {back:?}"
            ));
        }
    }
    Ok(decoded)
}
