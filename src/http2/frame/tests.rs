//! Frames written by elbe's writers read back the same; frames built by hand byte by byte (as a peer sends them)
//! read as RFC 9113 §6 says; a frame sequence read in two pieces, split anywhere, reads the same as in one.
//! The rules a frame can break are in `rules`, real clients' first bytes in `clients`.

mod clients;
mod rules;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;

/// A frame as a peer would put it on the wire, built by hand (not with elbe's writers).
pub(super) fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_uint(payload.len() as u64, 3);
    buf.put_u8(kind);
    buf.put_u8(flags);
    buf.put_u32(stream);
    buf.put_slice(payload);
    buf
}

/// Reads one frame from `bytes` with the default SETTINGS_MAX_FRAME_SIZE, and checks it used all of them.
pub(super) fn read_all_of(bytes: &[u8]) -> Result<Frame, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let frame = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE)?;
    let frame = frame.unwrap_or_else(|| panic!("{} bytes did not make a whole frame", bytes.len()));
    assert!(buf.is_empty(), "{} bytes left after {frame:?}", buf.len());
    Ok(frame)
}

/// Every frame in `buf`, until it holds no whole frame.
fn read_frames(buf: &mut BytesMut, max_frame_size: u32) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = read_frame(buf, max_frame_size).expect("valid frames") {
        frames.push(frame);
    }
    frames
}

fn data(stream: u32, end_stream: bool, data: &'static [u8], padding: u32) -> Frame {
    Frame::Data(Data {
        stream,
        end_stream,
        data: Bytes::from_static(data),
        padding,
    })
}

fn headers(stream: u32, end_stream: bool, end_headers: bool, fragment: &[u8]) -> Frame {
    Frame::Headers(Headers {
        stream,
        end_stream,
        end_headers,
        fragment: Bytes::copy_from_slice(fragment),
    })
}

fn continuation(stream: u32, end_headers: bool, fragment: &[u8]) -> Frame {
    Frame::Continuation(Continuation {
        stream,
        end_headers,
        fragment: Bytes::copy_from_slice(fragment),
    })
}

#[test]
fn data_round_trips() {
    let mut buf = BytesMut::new();
    write_data(&mut buf, 3, b"hello", true);
    write_data(&mut buf, 5, b"", false);
    assert_eq!(
        &buf[..9],
        [0, 0, 5, kind::DATA, flag::END_STREAM, 0, 0, 0, 3]
    );
    let frames = read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(frames, [data(3, true, b"hello", 0), data(5, false, b"", 0)]);
    assert!(buf.is_empty());
}

#[test]
fn a_data_header_and_its_payload_apart_are_a_data_frame() {
    let mut whole = Vec::new();
    write_data(&mut whole, 7, b"body chunk", false);
    let mut apart = Vec::new();
    write_data_header(&mut apart, 7, 10, false);
    assert_eq!(apart.len(), HEADER_LEN);
    apart.extend_from_slice(b"body chunk");
    assert_eq!(apart, whole);
}

#[test]
fn a_padded_data_frame_gives_its_data_and_counts_the_padding() {
    let frame = read_all_of(&raw(
        kind::DATA,
        flag::PADDED | flag::END_STREAM,
        1,
        b"\x03abc\0\0\0",
    ))
    .unwrap();
    assert_eq!(frame, data(1, true, b"abc", 4));
    let Frame::Data(data_frame) = frame else {
        unreachable!()
    };
    assert_eq!(
        data_frame.flow_controlled_len(),
        7,
        "the whole payload counts for flow control"
    );
    // No padding at all, only its length octet; and padding that leaves no data.
    let frame = read_all_of(&raw(kind::DATA, flag::PADDED, 1, b"\0abc")).unwrap();
    assert_eq!(frame, data(1, false, b"abc", 1));
    let frame = read_all_of(&raw(kind::DATA, flag::PADDED, 1, b"\x02\0\0")).unwrap();
    assert_eq!(frame, data(1, false, b"", 3));
}

#[test]
fn data_is_split_off_the_read_buffer_not_copied() {
    let mut buf = raw(kind::DATA, 0, 1, b"payload");
    let start = buf.as_ptr() as usize;
    let Some(Frame::Data(frame)) = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap() else {
        panic!("not a DATA frame");
    };
    assert_eq!(
        frame.data.as_ptr() as usize,
        start + HEADER_LEN,
        "the payload was copied"
    );
}

#[test]
fn a_header_block_that_fits_is_one_headers_frame() {
    let mut buf = BytesMut::new();
    write_headers(&mut buf, 1, b"\x82\x86\x84", true, DEFAULT_MAX_FRAME_SIZE);
    write_headers(&mut buf, 3, b"\x88", false, DEFAULT_MAX_FRAME_SIZE);
    write_headers(&mut buf, 5, b"", false, DEFAULT_MAX_FRAME_SIZE);
    let frames = read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(
        frames,
        [
            headers(1, true, true, b"\x82\x86\x84"),
            headers(3, false, true, b"\x88"),
            headers(5, false, true, b""),
        ]
    );
}

#[test]
fn a_header_block_over_the_frame_size_goes_on_in_continuation_frames() {
    let block: Vec<u8> = (0..40).collect();
    let mut buf = BytesMut::new();
    write_headers(&mut buf, 9, &block, true, 16);
    assert_eq!(
        read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE),
        [
            headers(9, true, false, &block[..16]),
            continuation(9, false, &block[16..32]),
            continuation(9, true, &block[32..]),
        ]
    );
    // An exact multiple of the frame size ends with a full CONTINUATION, not an empty one.
    write_headers(&mut buf, 11, &block[..32], false, 16);
    assert_eq!(
        read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE),
        [
            headers(11, false, false, &block[..16]),
            continuation(11, true, &block[16..32]),
        ]
    );
}

#[test]
fn a_large_header_block_is_split_at_the_peers_max_frame_size() {
    let block = vec![0x41; 40_000];
    let mut buf = BytesMut::new();
    write_headers(&mut buf, 1, &block, false, DEFAULT_MAX_FRAME_SIZE);
    let frames = read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE);
    let lengths: Vec<usize> = frames
        .iter()
        .map(|frame| match frame {
            Frame::Headers(h) => h.fragment.len(),
            Frame::Continuation(c) => c.fragment.len(),
            other => panic!("{other:?} in a header block"),
        })
        .collect();
    assert_eq!(lengths, [16_384, 16_384, 7_232]);
}

#[test]
fn headers_with_padding_and_priority_give_the_fragment_alone() {
    // Pad length 2, dependency on stream 3 (exclusive bit set), weight 255, fragment, 2 bytes of padding.
    let payload = b"\x02\x80\0\0\x03\xff\x82\x84\0\0";
    let flags = flag::PADDED | flag::PRIORITY | flag::END_HEADERS;
    let frame = read_all_of(&raw(kind::HEADERS, flags, 5, payload)).unwrap();
    assert_eq!(frame, headers(5, false, true, b"\x82\x84"));
    let frame = read_all_of(&raw(
        kind::HEADERS,
        flag::PRIORITY,
        5,
        b"\0\0\0\x03\x10\x88",
    ))
    .unwrap();
    assert_eq!(frame, headers(5, false, false, b"\x88"));
}

#[test]
fn continuation_frames_read() {
    let frame = read_all_of(&raw(kind::CONTINUATION, flag::END_HEADERS, 7, b"\x88\x89")).unwrap();
    assert_eq!(frame, continuation(7, true, b"\x88\x89"));
}

#[test]
fn rst_stream_round_trips_with_known_and_unknown_codes() {
    for code in [ErrorCode::Cancel, ErrorCode::Unknown(0xdead)] {
        let mut buf = Vec::new();
        write_rst_stream(&mut buf, 13, code);
        assert_eq!(
            read_all_of(&buf).unwrap(),
            Frame::RstStream { stream: 13, code }
        );
    }
}

#[test]
fn every_error_code_keeps_its_wire_value() {
    for value in 0..=0xd {
        let code = ErrorCode::from(value);
        assert!(
            !matches!(code, ErrorCode::Unknown(_)),
            "{value:#x} is defined by §7"
        );
        assert_eq!(code.wire(), value);
    }
    assert_eq!(ErrorCode::from(0x1).wire(), 0x1);
    assert_eq!(ErrorCode::from(0xd), ErrorCode::Http11Required);
    for value in [0xe, 0xffff_ffff] {
        assert_eq!(ErrorCode::from(value), ErrorCode::Unknown(value));
        assert_eq!(ErrorCode::from(value).wire(), value);
    }
}

#[test]
fn settings_round_trip() {
    let update = SettingsUpdate {
        header_table_size: Some(0),
        enable_push: Some(false),
        max_concurrent_streams: Some(128),
        initial_window_size: Some(MAX_WINDOW_SIZE),
        max_frame_size: Some(MAX_FRAME_SIZE_LIMIT),
        max_header_list_size: Some(65_536),
        enable_connect_protocol: Some(true),
    };
    let mut buf = Vec::new();
    write_settings(&mut buf, &update);
    assert_eq!(buf.len(), HEADER_LEN + 7 * 6);
    assert_eq!(read_all_of(&buf).unwrap(), Frame::Settings(update));
    let mut buf = Vec::new();
    write_settings(&mut buf, &SettingsUpdate::default());
    assert_eq!(buf, [0, 0, 0, kind::SETTINGS, 0, 0, 0, 0, 0]);
    assert_eq!(
        read_all_of(&buf).unwrap(),
        Frame::Settings(SettingsUpdate::default())
    );
}

#[test]
fn settings_ack_round_trips() {
    let mut buf = Vec::new();
    write_settings_ack(&mut buf);
    assert_eq!(buf, [0, 0, 0, kind::SETTINGS, flag::ACK, 0, 0, 0, 0]);
    assert_eq!(read_all_of(&buf).unwrap(), Frame::SettingsAck);
}

#[test]
fn a_settings_frame_keeps_the_last_value_of_an_id_and_ignores_unknown_ids() {
    // INITIAL_WINDOW_SIZE twice, then an id RFC 9113 does not define (0x99) with a value no rule allows.
    let payload = b"\0\x04\0\0\x10\0\0\x99\xff\xff\xff\xff\0\x04\0\0\x20\0";
    let frame = read_all_of(&raw(kind::SETTINGS, 0, 0, payload)).unwrap();
    let expected = SettingsUpdate {
        initial_window_size: Some(0x2000),
        ..SettingsUpdate::default()
    };
    assert_eq!(frame, Frame::Settings(expected));
}

#[test]
fn a_ping_is_answered_with_its_payload() {
    let frame = read_all_of(&raw(kind::PING, 0, 0, b"12345678")).unwrap();
    assert_eq!(
        frame,
        Frame::Ping {
            ack: false,
            payload: *b"12345678"
        }
    );
    let mut buf = Vec::new();
    write_ping_ack(&mut buf, *b"12345678");
    assert_eq!(
        read_all_of(&buf).unwrap(),
        Frame::Ping {
            ack: true,
            payload: *b"12345678"
        }
    );
}

#[test]
fn goaway_round_trips_and_its_debug_data_fits_any_peer() {
    let mut buf = Vec::new();
    write_goaway(&mut buf, 41, ErrorCode::EnhanceYourCalm, b"too many resets");
    let expected = Frame::GoAway {
        last_stream: 41,
        code: ErrorCode::EnhanceYourCalm,
        debug: Bytes::from_static(b"too many resets"),
    };
    assert_eq!(read_all_of(&buf).unwrap(), expected);
    let mut buf = Vec::new();
    write_goaway(&mut buf, 1, ErrorCode::NoError, &[b'x'; 20_000]);
    assert_eq!(buf.len(), HEADER_LEN + DEFAULT_MAX_FRAME_SIZE as usize);
    let Frame::GoAway { debug, .. } = read_all_of(&buf).unwrap() else {
        panic!("not a GOAWAY")
    };
    assert_eq!(debug.len(), DEFAULT_MAX_FRAME_SIZE as usize - 8);
}

#[test]
fn window_update_round_trips_on_the_connection_and_on_a_stream() {
    for (stream, increment) in [(0, 1), (5, MAX_WINDOW_SIZE)] {
        let mut buf = Vec::new();
        write_window_update(&mut buf, stream, increment);
        assert_eq!(
            read_all_of(&buf).unwrap(),
            Frame::WindowUpdate { stream, increment }
        );
    }
}

#[test]
fn priority_frames_are_read_and_their_fields_dropped() {
    let frame = read_all_of(&raw(kind::PRIORITY, 0, 3, b"\x80\0\0\x01\x0f")).unwrap();
    assert_eq!(frame, Frame::Priority { stream: 3 });
}

#[test]
fn push_promise_is_its_own_frame_for_the_connection_to_refuse() {
    let frame = read_all_of(&raw(
        kind::PUSH_PROMISE,
        flag::END_HEADERS,
        1,
        b"\0\0\0\x02\x82",
    ))
    .unwrap();
    assert_eq!(frame, Frame::PushPromise { stream: 1 });
}

#[test]
fn unknown_frame_types_are_passed_over() {
    let mut buf = raw(0xfa, 0xff, 0, b"extension payload");
    buf.extend_from_slice(&raw(kind::PING, 0, 0, b"abcdefgh"));
    assert_eq!(
        read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE),
        [
            Frame::Unknown {
                kind: 0xfa,
                stream: 0
            },
            Frame::Ping {
                ack: false,
                payload: *b"abcdefgh"
            },
        ]
    );
}

#[test]
fn the_reserved_bit_is_ignored() {
    let frame = read_all_of(&raw(kind::WINDOW_UPDATE, 0, 0x8000_0003, b"\x80\0\0\x10")).unwrap();
    assert_eq!(
        frame,
        Frame::WindowUpdate {
            stream: 3,
            increment: 16
        }
    );
    let frame = read_all_of(&raw(kind::GOAWAY, 0, 0, b"\x80\0\0\x07\0\0\0\0")).unwrap();
    assert_eq!(
        frame,
        Frame::GoAway {
            last_stream: 7,
            code: ErrorCode::NoError,
            debug: Bytes::new()
        }
    );
}

/// A client's opening: SETTINGS, WINDOW_UPDATE, a padded HEADERS with priority, a CONTINUATION, DATA, PING,
/// an unknown frame, RST_STREAM.
fn opening() -> BytesMut {
    let mut buf = BytesMut::new();
    write_settings(
        &mut buf,
        &SettingsUpdate {
            enable_push: Some(false),
            ..SettingsUpdate::default()
        },
    );
    write_window_update(&mut buf, 0, 1 << 20);
    let flags = flag::PADDED | flag::PRIORITY;
    buf.extend_from_slice(&raw(kind::HEADERS, flags, 1, b"\x01\0\0\0\0\x10\x82\x84\0"));
    buf.extend_from_slice(&raw(kind::CONTINUATION, flag::END_HEADERS, 1, b"\x86"));
    write_data(&mut buf, 1, b"upload", true);
    buf.extend_from_slice(&raw(kind::PING, 0, 0, b"pingpong"));
    buf.extend_from_slice(&raw(0x20, 0, 1, b"?"));
    write_rst_stream(&mut buf, 1, ErrorCode::Cancel);
    buf
}

#[test]
fn a_frame_sequence_reads_the_same_split_at_any_byte() {
    let bytes = opening();
    let whole = read_frames(&mut bytes.clone(), DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(whole.len(), 8);
    let mut ends = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        at +=
            HEADER_LEN + u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        ends.push(at);
    }
    for split in 0..=bytes.len() {
        let mut buf = BytesMut::from(&bytes[..split]);
        let mut frames = read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE);
        let before = frames.len();
        buf.extend_from_slice(&bytes[split..]);
        frames.extend(read_frames(&mut buf, DEFAULT_MAX_FRAME_SIZE));
        assert_eq!(frames, whole, "split at byte {split}");
        assert!(buf.is_empty(), "split at byte {split}: bytes left over");
        // The first piece gave exactly the frames that ended in it.
        let complete = ends.iter().filter(|&&end| end <= split).count();
        assert_eq!(before, complete, "split at byte {split}");
    }
}

#[test]
fn the_preface_is_recognised_byte_by_byte() {
    for end in 0..PREFACE.len() {
        assert_eq!(check_preface(&PREFACE[..end]), Ok(false), "{end} bytes");
    }
    assert_eq!(check_preface(PREFACE), Ok(true));
    let mut more = PREFACE.to_vec();
    more.extend_from_slice(&[0, 0, 0, 4]);
    assert_eq!(
        check_preface(&more),
        Ok(true),
        "the bytes after it are frames"
    );
    let refused = Err(FrameError::Connection(Violation::Preface));
    assert_eq!(
        check_preface(b"GET / HTTP/1.1\r\n"),
        refused,
        "HTTP/1 on an HTTP/2 connection"
    );
    assert_eq!(check_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\n"), refused);
    assert_eq!(
        check_preface(b"G"),
        refused,
        "refused at the first byte that differs"
    );
}
