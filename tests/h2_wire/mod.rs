//! Raw HTTP/2 frames (RFC 9113 §4: a 9-byte header, then the payload) for clients that misbehave on purpose:
//! written byte by byte, so a test sends exactly the flood it means. HPACK fields are literal, without Huffman
//! coding (RFC 7541 §6.2), a few bytes each.
#![allow(unreachable_pub, dead_code)]

use tokio::io::{AsyncRead, AsyncReadExt};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: header (length, type, flags, stream) and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    assert!(length < 1 << 24, "a frame's length has 24 bits");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame with these (identifier, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// The client connection preface (RFC 9113 §3.4): the magic string and a SETTINGS frame.
pub fn preface(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&settings(pairs));
    out
}

pub fn ping(payload: [u8; 8]) -> Vec<u8> {
    frame(PING, 0, 0, &payload)
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// A string literal without Huffman coding (RFC 7541 §5.2); lengths of up to 126 bytes fit the 7-bit prefix, longer
/// ones continue in 7-bit groups (§5.1).
pub fn string(value: &[u8]) -> Vec<u8> {
    let mut out = integer(value.len(), 7, 0x00);
    out.extend_from_slice(value);
    out
}

/// An HPACK integer with an `prefix`-bit prefix, the first byte's high bits set to `high` (RFC 7541 §5.1).
pub fn integer(value: usize, prefix: u32, high: u8) -> Vec<u8> {
    let max = (1usize << prefix) - 1;
    if value < max {
        return vec![high | value as u8];
    }
    let mut out = vec![high | max as u8];
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
    out
}

/// A field whose name is static-table entry `name_index`, not added to the dynamic table (RFC 7541 §6.2.2).
pub fn literal_indexed_name(name_index: usize, value: &[u8]) -> Vec<u8> {
    let mut out = integer(name_index, 4, 0x00);
    out.extend_from_slice(&string(value));
    out
}

/// A field with a new name, added to the dynamic table (RFC 7541 §6.2.1).
pub fn literal_with_indexing(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40];
    out.extend_from_slice(&string(name));
    out.extend_from_slice(&string(value));
    out
}

/// A field that is entry `index` of the tables (RFC 7541 §6.1); 62 is the newest dynamic entry.
pub fn indexed(index: usize) -> Vec<u8> {
    integer(index, 7, 0x80)
}

/// The header block of `GET path` for host example.test over http.
pub fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http (static table 2 and 6)
    block.extend_from_slice(&literal_indexed_name(4, path.as_bytes())); // :path
    block.extend_from_slice(&literal_indexed_name(1, b"example.test")); // :authority
    block
}

/// A complete GET on `stream` (HEADERS with END_HEADERS and END_STREAM).
pub fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block(path))
}

/// A frame read from the server.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's or RST_STREAM's error code.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// The next frame, or `None` when the server closed (or reset) the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<Frame> {
    let mut header = [0u8; 9];
    reader.read_exact(&mut header).await.ok()?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: header[3],
        flags: header[4],
        stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
        payload,
    })
}
