//! Taking frames off the connection's read buffer (RFC 9113 §4.1, §6): the 9-byte header first, checked alone
//! (length, and the rules that make a frame a connection error whatever its payload), then the payload once all of
//! it is there.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{connection, stream};
use super::{
    flag, kind, Continuation, Data, ErrorCode, Frame, FrameError, Headers, SettingsUpdate,
    Violation, HEADER_LEN, PREFACE,
};

/// Whether `buf` starts with the client's preface (§3.4): `Ok(true)` once all of it is there (the caller takes its
/// [`PREFACE`]`.len()` bytes), `Ok(false)` while what came so far matches it, a PROTOCOL_ERROR as soon as it
/// does not.
pub(crate) fn check_preface(buf: &[u8]) -> Result<bool, FrameError> {
    let seen = buf.len().min(PREFACE.len());
    if buf[..seen] != PREFACE[..seen] {
        return Err(connection(Violation::Preface));
    }
    Ok(seen == PREFACE.len())
}

/// Takes the next frame off the front of `buf`. `Ok(None)`: the frame is not all there yet (nothing is taken).
/// `max_frame_size` is the SETTINGS_MAX_FRAME_SIZE elbe announced; a longer frame is refused as soon as its header
/// is in. After a stream error the frame's bytes are gone from `buf` and the next frame can be read; after a
/// connection error `buf` is of no further use.
pub(crate) fn read_frame(
    buf: &mut BytesMut,
    max_frame_size: u32,
) -> Result<Option<Frame>, FrameError> {
    let Some(bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let head = Head::parse(bytes);
    head.check(max_frame_size)?;
    let len = head.len as usize;
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let frame = match head.kind {
        kind::DATA => read_data(&head, buf.split_to(len).freeze()),
        kind::HEADERS => read_headers(&head, buf.split_to(len).freeze()),
        kind::CONTINUATION => Ok(Frame::Continuation(Continuation {
            stream: head.stream,
            end_headers: head.has(flag::END_HEADERS),
            fragment: buf.split_to(len).freeze(),
        })),
        kind::GOAWAY => Ok(read_goaway(buf.split_to(len).freeze())),
        _ => {
            let frame = read_control(&head, &buf[..len]);
            buf.advance(len);
            frame
        }
    };
    frame.map(Some)
}

/// A frame's 9-byte header (§4.1).
struct Head {
    len: u32,
    kind: u8,
    flags: u8,
    /// The reserved bit masked off (§4.1: "MUST be ignored when receiving").
    stream: u32,
}

impl Head {
    fn parse(bytes: &[u8; HEADER_LEN]) -> Head {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        Head {
            len: u32::from_be_bytes([0, l0, l1, l2]),
            kind,
            flags,
            stream: stream_id([s0, s1, s2, s3]),
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The rules the header alone decides, all connection errors: the length against ours (§4.2), the stream
    /// each type belongs on (§6), the lengths of fixed-size types whose errors end the connection.
    fn check(&self, max_frame_size: u32) -> Result<(), FrameError> {
        let (kind, len) = (self.kind, self.len);
        if len > max_frame_size {
            return Err(connection(Violation::TooLarge {
                len,
                max: max_frame_size,
            }));
        }
        let on_zero = self.stream == 0;
        let violation = match kind {
            kind::DATA
            | kind::HEADERS
            | kind::PRIORITY
            | kind::RST_STREAM
            | kind::PUSH_PROMISE
            | kind::CONTINUATION
                if on_zero =>
            {
                Violation::StreamZero { kind }
            }
            kind::SETTINGS | kind::PING | kind::GOAWAY if !on_zero => {
                Violation::NotStreamZero { kind }
            }
            kind::SETTINGS if self.has(flag::ACK) && len != 0 => Violation::AckWithPayload,
            kind::SETTINGS if len % 6 != 0 => Violation::BadLength { kind, len },
            kind::RST_STREAM | kind::WINDOW_UPDATE if len != 4 => {
                Violation::BadLength { kind, len }
            }
            kind::PING if len != 8 => Violation::BadLength { kind, len },
            kind::GOAWAY if len < 8 => Violation::BadLength { kind, len },
            _ => return Ok(()),
        };
        Err(connection(violation))
    }
}

/// A 31-bit stream id, the reserved bit ignored.
fn stream_id(bytes: [u8; 4]) -> u32 {
    u32::from_be_bytes(bytes) & 0x7fff_ffff
}

/// DATA (§6.1).
fn read_data(head: &Head, mut payload: Bytes) -> Result<Frame, FrameError> {
    let padding = strip_padding(head, &mut payload, 0)?;
    Ok(Frame::Data(Data {
        stream: head.stream,
        end_stream: head.has(flag::END_STREAM),
        data: payload,
        padding,
    }))
}

/// HEADERS (§6.2): padding removed, the priority fields checked (§5.3.1) and skipped.
fn read_headers(head: &Head, mut payload: Bytes) -> Result<Frame, FrameError> {
    let priority = head.has(flag::PRIORITY);
    strip_padding(head, &mut payload, if priority { 5 } else { 0 })?;
    let depends_on = if priority {
        let depends_on = dependency(&payload);
        payload.advance(5);
        depends_on
    } else {
        None
    };
    let headers = Headers {
        stream: head.stream,
        end_stream: head.has(flag::END_STREAM),
        end_headers: head.has(flag::END_HEADERS),
        fragment: payload,
    };
    if depends_on == Some(head.stream) {
        return Err(FrameError::Stream {
            stream: head.stream,
            violation: Violation::SelfDependency,
            headers: Some(headers),
        });
    }
    Ok(Frame::Headers(headers))
}

/// The stream a priority field (stream dependency and weight, 5 bytes) names.
fn dependency(fields: &[u8]) -> Option<u32> {
    let &[d0, d1, d2, d3, ..] = fields else {
        return None;
    };
    Some(stream_id([d0, d1, d2, d3]))
}

/// Takes a padded frame's Pad Length octet and padding off `payload` (§6.1), which must also hold `fields` bytes
/// of fixed fields after the octet; returns the bytes removed, which count for flow control.
fn strip_padding(head: &Head, payload: &mut Bytes, fields: usize) -> Result<u32, FrameError> {
    let octet = usize::from(head.has(flag::PADDED));
    if payload.len() < octet + fields {
        return Err(connection(Violation::MissingFields { kind: head.kind }));
    }
    if octet == 0 {
        return Ok(0);
    }
    let pad = usize::from(payload[0]);
    if pad > payload.len() - 1 - fields {
        return Err(connection(Violation::PaddingTooLong));
    }
    payload.advance(1);
    payload.truncate(payload.len() - pad);
    Ok(pad as u32 + 1)
}

/// GOAWAY (§6.8); its length was checked with the header.
fn read_goaway(mut payload: Bytes) -> Frame {
    let last_stream = stream_id(take4(&payload));
    let code = ErrorCode::from(u32::from_be_bytes(take4(&payload[4..])));
    payload.advance(8);
    Frame::GoAway {
        last_stream,
        code,
        debug: payload,
    }
}

/// The first four bytes, as the header's length check guarantees them (zeros otherwise).
fn take4(bytes: &[u8]) -> [u8; 4] {
    bytes.first_chunk::<4>().copied().unwrap_or_default()
}

/// The frames parsed in place: PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, WINDOW_UPDATE, unknown types.
fn read_control(head: &Head, payload: &[u8]) -> Result<Frame, FrameError> {
    let stream = head.stream;
    match head.kind {
        kind::PRIORITY => read_priority(stream, payload),
        kind::RST_STREAM => Ok(Frame::RstStream {
            stream,
            code: ErrorCode::from(u32::from_be_bytes(take4(payload))),
        }),
        kind::SETTINGS if head.has(flag::ACK) => Ok(Frame::SettingsAck),
        kind::SETTINGS => read_settings(payload),
        kind::PUSH_PROMISE => Ok(Frame::PushPromise { stream }),
        kind::PING => Ok(Frame::Ping {
            ack: head.has(flag::ACK),
            payload: payload.first_chunk::<8>().copied().unwrap_or_default(),
        }),
        kind::WINDOW_UPDATE => read_window_update(stream, payload),
        kind => Ok(Frame::Unknown { kind, stream }),
    }
}

/// PRIORITY (§6.3): a wrong length or a self-dependency resets the stream only.
fn read_priority(on: u32, payload: &[u8]) -> Result<Frame, FrameError> {
    if payload.len() != 5 {
        let len = payload.len() as u32;
        return Err(stream(
            on,
            Violation::BadLength {
                kind: kind::PRIORITY,
                len,
            },
        ));
    }
    if dependency(payload) == Some(on) {
        return Err(stream(on, Violation::SelfDependency));
    }
    Ok(Frame::Priority { stream: on })
}

/// SETTINGS (§6.5): the length was checked with the header, each parameter is checked here.
fn read_settings(payload: &[u8]) -> Result<Frame, FrameError> {
    let mut update = SettingsUpdate::default();
    let (parameters, _) = payload.as_chunks::<6>();
    for &[i0, i1, v0, v1, v2, v3] in parameters {
        update.record(
            u16::from_be_bytes([i0, i1]),
            u32::from_be_bytes([v0, v1, v2, v3]),
        )?;
    }
    Ok(Frame::Settings(update))
}

/// WINDOW_UPDATE (§6.9): an increment of 0 is a connection error on stream 0, a stream error on a stream.
fn read_window_update(on: u32, payload: &[u8]) -> Result<Frame, FrameError> {
    let increment = stream_id(take4(payload));
    match (increment, on) {
        (0, 0) => Err(connection(Violation::ZeroIncrement)),
        (0, _) => Err(stream(on, Violation::ZeroIncrement)),
        _ => Ok(Frame::WindowUpdate {
            stream: on,
            increment,
        }),
    }
}
