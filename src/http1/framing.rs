//! How an HTTP/1.1 body is delimited on the wire (RFC 9112 §6, §7): the decoder that takes a body's frames out of
//! what has been read, and the chunked encoding elbe writes. The client connection uses it for requests and
//! responses, the instance connection for responses and requests.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;

use super::fields::put_field;

/// Most header lines a trailer section may have.
const MAX_HEADERS: usize = 100;
/// Largest trailer section accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// How the rest of a body is delimited.
#[derive(Debug)]
pub(crate) enum Download {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
    Done,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Takes the next frame of a body out of `buf`. `Ok(None)`: more bytes are needed, or the body ended
/// (then `download` is `Done`).
pub(crate) fn decode(
    download: &mut Download,
    buf: &mut BytesMut,
) -> io::Result<Option<Frame<Bytes>>> {
    loop {
        match download {
            Download::Done => return Ok(None),
            Download::Length(0) => {
                *download = Download::Done;
                return Ok(None);
            }
            Download::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                return Ok(Some(Frame::data(buf.split_to(take as usize).freeze())));
            }
            Download::UntilClose => {
                if buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Frame::data(buf.split().freeze())));
            }
            Download::Chunked(chunk) => match decode_chunked(chunk, buf)? {
                ChunkStep::Frame(frame) => return Ok(Some(frame)),
                ChunkStep::Continue => {}
                ChunkStep::NeedMore => return Ok(None),
                ChunkStep::End(trailers) => {
                    *download = Download::Done;
                    return Ok(trailers.map(Frame::trailers));
                }
            },
        }
    }
}

enum ChunkStep {
    Frame(Frame<Bytes>),
    Continue,
    NeedMore,
    End(Option<HeaderMap>),
}

fn malformed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// One step of chunked decoding (RFC 9112 §7.1): a size line, data, the CRLF after data, or the trailer section.
fn decode_chunked(chunk: &mut Chunk, buf: &mut BytesMut) -> io::Result<ChunkStep> {
    match *chunk {
        Chunk::Size => {
            // The line's end is looked for within the limit only: a longer line is refused whether its LF has
            // arrived yet or not, so the verdict does not depend on how the bytes were read.
            let within = &buf[..buf.len().min(MAX_CHUNK_LINE + 1)];
            let Some(end) = within.iter().position(|&b| b == b'\n') else {
                if buf.len() > MAX_CHUNK_LINE {
                    return Err(malformed("chunk size line too long"));
                }
                return Ok(ChunkStep::NeedMore);
            };
            // RFC 9112 §7.1: the line ends in CRLF. A bare LF is where parsers disagree on where the chunk starts.
            let line = match buf[..end].strip_suffix(b"\r") {
                Some(line) if !line.contains(&b'\r') => line,
                _ => return Err(malformed("chunk size line not ended by CRLF")),
            };
            let size = chunk_size(line)?;
            buf.advance(end + 1);
            *chunk = if size == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(size)
            };
            Ok(ChunkStep::Continue)
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(ChunkStep::NeedMore);
            }
            let take = left.min(buf.len() as u64);
            *chunk = if take == left {
                Chunk::DataEnd
            } else {
                Chunk::Data(left - take)
            };
            Ok(ChunkStep::Frame(Frame::data(
                buf.split_to(take as usize).freeze(),
            )))
        }
        Chunk::DataEnd => match buf.first() {
            None => Ok(ChunkStep::NeedMore),
            Some(b'\n') => Err(malformed("chunk data not ended by CRLF")),
            Some(b'\r') if buf.len() < 2 => Ok(ChunkStep::NeedMore),
            Some(b'\r') if buf[1] == b'\n' => {
                buf.advance(2);
                *chunk = Chunk::Size;
                Ok(ChunkStep::Continue)
            }
            Some(b'\r') => Err(malformed("chunk data not ended by CRLF")),
            Some(_) => Err(malformed("chunk data longer than its size")),
        },
        Chunk::Trailers => trailers(buf),
    }
}

/// The size on a chunk-size line without its CRLF (hex digits, then optional extensions).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // Optional whitespace, then extensions or the end of the line (RFC 9112 §7.1.1).
    let rest = line[digits..].trim_ascii_start();
    let rest_ok = matches!(rest.first(), None | Some(b';'));
    if digits == 0 || digits > 15 || !rest_ok {
        return Err(malformed("invalid chunk size"));
    }
    let digits =
        std::str::from_utf8(&line[..digits]).map_err(|_| malformed("invalid chunk size"))?;
    u64::from_str_radix(digits, 16).map_err(|_| malformed("invalid chunk size"))
}

/// The trailer section after the last chunk: empty (just CRLF) or header lines handed on as trailers.
fn trailers(buf: &mut BytesMut) -> io::Result<ChunkStep> {
    match buf.first() {
        None => return Ok(ChunkStep::NeedMore),
        Some(b'\n') => return Err(malformed("trailer section not ended by CRLF")),
        Some(b'\r') if buf.len() < 2 => return Ok(ChunkStep::NeedMore),
        Some(b'\r') if buf[1] == b'\n' => {
            buf.advance(2);
            return Ok(ChunkStep::End(None));
        }
        _ => {}
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    // Parsed within the limit only, as the chunk-size line is: a section over it is refused however it arrived.
    let within = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    let (length, fields) = match httparse::parse_headers(within, &mut slots) {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(malformed("trailer section too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(ChunkStep::NeedMore),
        Err(_) => return Err(malformed("malformed trailer section")),
    };
    if has_bare_lf(&buf[..length]) {
        return Err(malformed("trailer section not ended by CRLF"));
    }
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        if !allowed_in_trailers(field.name.as_bytes()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) {
            map.append(name, value);
        }
    }
    buf.advance(length);
    Ok(ChunkStep::End(Some(map)))
}

/// Whether a line of `bytes` ends in a bare LF (no CR before it).
fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// Fields that never travel in a trailer section (RFC 9110 §6.5.1): they frame the message, route it, control the
/// connection or authenticate, and a recipient that merged them into the header section would act on what elbe
/// never checked. They are dropped; the rest of the trailers go on.
const NOT_IN_TRAILERS: [&str; 22] = [
    "content-length",
    "transfer-encoding",
    "trailer",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "expect",
    "max-forwards",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "content-type",
    "content-encoding",
    "content-range",
    "range",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
];

/// Whether a field may be passed on in a trailer section (names compared without regard to case, and with `_`
/// read as `-`, as some servers normalise names).
fn allowed_in_trailers(name: &[u8]) -> bool {
    !NOT_IN_TRAILERS.iter().any(|denied| {
        denied.len() == name.len()
            && denied
                .bytes()
                .zip(name)
                .all(|(d, &n)| d == n.to_ascii_lowercase() || (d == b'-' && n == b'_'))
    })
}

/// The chunk-size line of a chunk of `len` bytes (`len` must not be 0: that is the last chunk).
pub(crate) fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The CRLF that ends a chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and the end of a chunked body, without trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The last chunk with a trailer section.
pub(crate) fn last_chunk_with(trailers: &HeaderMap) -> Bytes {
    let mut last = BytesMut::from(&b"0\r\n"[..]);
    for (name, value) in trailers {
        put_field(&mut last, name.as_str().as_bytes(), value.as_bytes());
    }
    last.put_slice(b"\r\n");
    last.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_strict_hex() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"A;name=value").unwrap(), 10);
        for bad in [
            &b""[..],
            b"x",
            b"-1",
            b"1 2x",
            b"0x10",
            b"10000000000000000",
        ] {
            assert!(
                chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Decodes `reads` one after the other into one buffer until the body ends, is refused, or needs more:
    /// the data, and the refusal if any.
    fn decode_reads(reads: &[&[u8]]) -> (Vec<u8>, Option<String>) {
        let mut body = Download::Chunked(Chunk::Size);
        let mut buf = BytesMut::new();
        let mut reads = reads.iter();
        let mut data = Vec::new();
        loop {
            match decode(&mut body, &mut buf) {
                Ok(Some(frame)) => data.extend_from_slice(&frame.into_data().unwrap_or_default()),
                Ok(None) if matches!(body, Download::Done) => return (data, None),
                Ok(None) => match reads.next() {
                    Some(read) => buf.extend_from_slice(read),
                    None => return (data, Some("needs more".into())),
                },
                Err(error) => return (data, Some(error.to_string())),
            }
        }
    }

    /// The `body_decoder` fuzz target's invariant (the same verdict for one read or two), on an input longer
    /// than its runs make: a chunk-size line over 4 KiB was refused when its first read held more than 4 KiB
    /// without the LF, and accepted when the LF came in the same read.
    #[test]
    fn a_chunk_size_line_over_the_limit_is_refused_however_it_arrives() {
        let mut body = b"1;ext=".to_vec();
        body.resize(MAX_CHUNK_LINE + 10, b'x');
        let split = body.len() - 2;
        body.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        let refused = Some("chunk size line too long".to_string());
        assert_eq!(decode_reads(&[&body]), (Vec::new(), refused.clone()));
        assert_eq!(
            decode_reads(&[&body[..split], &body[split..]]),
            (Vec::new(), refused)
        );
        // At the limit it is a chunk.
        let mut body = b"1;ext=".to_vec();
        body.resize(MAX_CHUNK_LINE - 1, b'x');
        body.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert_eq!(decode_reads(&[&body]), (b"a".to_vec(), None));
    }

    /// The same for a trailer section over 64 KiB.
    #[test]
    fn a_trailer_section_over_the_limit_is_refused_however_it_arrives() {
        let mut body = b"1\r\na\r\n0\r\nX-Big: ".to_vec();
        body.resize(MAX_HEAD_BYTES + 100, b'x');
        let split = body.len();
        body.extend_from_slice(b"\r\n\r\n");
        for reads in [&[&body[..]][..], &[&body[..split], &body[split..]]] {
            let (data, refused) = decode_reads(reads);
            assert_eq!(data, b"a");
            assert_eq!(refused.as_deref(), Some("trailer section too large"));
        }
    }

    #[test]
    fn a_length_body_stops_at_its_length_and_leaves_what_follows() {
        let mut buf = BytesMut::from(&b"abcGET / HTTP/1.1\r\n"[..]);
        let mut body = Download::Length(3);
        let frame = decode(&mut body, &mut buf).unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert!(decode(&mut body, &mut buf).unwrap().is_none());
        assert!(matches!(body, Download::Done));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    /// Decodes `input` whole as a chunked body: the data, the trailers, or the error.
    fn chunked(input: &[u8]) -> io::Result<(Vec<u8>, Option<HeaderMap>)> {
        let mut buf = BytesMut::from(input);
        let mut body = Download::Chunked(Chunk::Size);
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match decode(&mut body, &mut buf)? {
                Some(frame) => match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                None if matches!(body, Download::Done) => return Ok((data, trailers)),
                None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete")),
            }
        }
    }

    #[test]
    fn chunked_framing_needs_crlf_everywhere() {
        assert_eq!(chunked(b"3\r\nabc\r\n0\r\n\r\n").unwrap().0, b"abc");
        for bare in [
            &b"3\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabc\r\n0\n\r\n",
            b"3\r\nabc\r\n0\r\n\n",
            b"3\r\nabc\r\n0\r\nX-Late: 1\n\r\n",
            b"3;a\rb\r\nabc\r\n0\r\n\r\n",
            b"3\r\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\rx0\r\n\r\n",
        ] {
            let error = chunked(bare).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(bare)
            );
        }
    }

    #[test]
    fn framing_and_routing_fields_never_pass_in_trailers() {
        let (data, trailers) = chunked(
            b"1\r\nx\r\n0\r\nContent-Length: 5\r\nHost: evil\r\nTransfer_Encoding: chunked\r\n\
              X-Checksum: abc\r\nCookie: a=b\r\n\r\n",
        )
        .unwrap();
        assert_eq!(data, b"x");
        let trailers = trailers.unwrap();
        assert_eq!(trailers.len(), 1, "{trailers:?}");
        assert_eq!(trailers["x-checksum"], "abc");
    }
}
