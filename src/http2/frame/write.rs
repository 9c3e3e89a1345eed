//! The frames elbe sends (RFC 9113 §6), each appended to a buffer (`BytesMut`, `Vec<u8>`: any [`BufMut`]). The
//! caller keeps a frame within the peer's SETTINGS_MAX_FRAME_SIZE and the flow-control windows; the writers split
//! only a header block, which must go out whole (§4.3).

use bytes::BufMut;

use super::{
    flag, kind, ErrorCode, SettingsUpdate, DEFAULT_MAX_FRAME_SIZE, HEADER_LEN, MAX_FRAME_SIZE_LIMIT,
};

/// A frame's 9-byte header (§4.1).
fn head(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_FRAME_SIZE_LIMIT as usize, "a {len}-byte frame");
    let [_, l0, l1, l2] = (len as u32).to_be_bytes();
    let [s0, s1, s2, s3] = (stream & 0x7fff_ffff).to_be_bytes();
    [l0, l1, l2, kind, flags, s0, s1, s2, s3]
}

/// SETTINGS with the parameters `update` gives (§6.5), in id order.
pub(crate) fn write_settings(buf: &mut impl BufMut, update: &SettingsUpdate) {
    buf.put_slice(&head(update.pairs().count() * 6, kind::SETTINGS, 0, 0));
    for (id, value) in update.pairs() {
        buf.put_u16(id);
        buf.put_u32(value);
    }
}

/// The acknowledgement of the peer's SETTINGS (§6.5.3).
pub(crate) fn write_settings_ack(buf: &mut impl BufMut) {
    buf.put_slice(&head(0, kind::SETTINGS, flag::ACK, 0));
}

/// The answer to the peer's PING, with its payload (§6.7).
pub(crate) fn write_ping_ack(buf: &mut impl BufMut, payload: [u8; 8]) {
    buf.put_slice(&head(8, kind::PING, flag::ACK, 0));
    buf.put_slice(&payload);
}

/// GOAWAY (§6.8). `debug` is cut to what fits the smallest frame size a peer may have (16,384 bytes), so the
/// frame never needs the peer's settings.
pub(crate) fn write_goaway(buf: &mut impl BufMut, last_stream: u32, code: ErrorCode, debug: &[u8]) {
    let debug = &debug[..debug.len().min(DEFAULT_MAX_FRAME_SIZE as usize - 8)];
    buf.put_slice(&head(8 + debug.len(), kind::GOAWAY, 0, 0));
    buf.put_u32(last_stream & 0x7fff_ffff);
    buf.put_u32(code.wire());
    buf.put_slice(debug);
}

/// RST_STREAM (§6.4).
pub(crate) fn write_rst_stream(buf: &mut impl BufMut, stream: u32, code: ErrorCode) {
    buf.put_slice(&head(4, kind::RST_STREAM, 0, stream));
    buf.put_u32(code.wire());
}

/// WINDOW_UPDATE (§6.9): `increment` from 1 to 2^31-1; stream 0 is the connection's window.
pub(crate) fn write_window_update(buf: &mut impl BufMut, stream: u32, increment: u32) {
    debug_assert!(
        (1..=super::MAX_WINDOW_SIZE).contains(&increment),
        "increment {increment}"
    );
    buf.put_slice(&head(4, kind::WINDOW_UPDATE, 0, stream));
    buf.put_u32(increment & 0x7fff_ffff);
}

/// A whole header block, already HPACK-encoded: one HEADERS frame, followed by CONTINUATION frames when `block`
/// is longer than `max_frame_size` (the peer's SETTINGS_MAX_FRAME_SIZE), END_HEADERS on the last (§4.3, §6.10).
/// `end_stream` goes on the HEADERS frame (§8.1).
pub(crate) fn write_headers(
    buf: &mut impl BufMut,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let max = (max_frame_size as usize).max(1);
    let (first, mut rest) = block.split_at(block.len().min(max));
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if rest.is_empty() {
        flags |= flag::END_HEADERS;
    }
    buf.put_slice(&head(first.len(), kind::HEADERS, flags, stream));
    buf.put_slice(first);
    while !rest.is_empty() {
        let (fragment, after) = rest.split_at(rest.len().min(max));
        rest = after;
        let flags = if rest.is_empty() {
            flag::END_HEADERS
        } else {
            0
        };
        buf.put_slice(&head(fragment.len(), kind::CONTINUATION, flags, stream));
        buf.put_slice(fragment);
    }
}

/// The 9-byte header of a DATA frame of `len` bytes (§6.1), without its payload: the body chunk that follows can
/// be written from its own buffer (`writev`).
pub(crate) fn write_data_header(buf: &mut impl BufMut, stream: u32, len: usize, end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    buf.put_slice(&head(len, kind::DATA, flags, stream));
}

/// A DATA frame with its payload, copied.
pub(crate) fn write_data(buf: &mut impl BufMut, stream: u32, data: &[u8], end_stream: bool) {
    write_data_header(buf, stream, data.len(), end_stream);
    buf.put_slice(data);
}
