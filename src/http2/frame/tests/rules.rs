//! Each rule of RFC 9113 §4-§6 the reader checks: a frame that breaks it is refused as the connection error or
//! stream error the RFC names, and a frame just inside it is not.

use bytes::{BufMut, BytesMut};

use super::super::*;
use super::{raw, read_all_of};

fn connection_error(violation: Violation) -> Result<Frame, FrameError> {
    Err(FrameError::Connection(violation))
}

fn stream_error(stream: u32, violation: Violation) -> Result<Frame, FrameError> {
    Err(FrameError::Stream {
        stream,
        violation,
        headers: None,
    })
}

/// Reads from the frame's 9-byte header alone, its payload not there.
fn read_header_alone(frame: &[u8], max_frame_size: u32) -> Result<Option<Frame>, FrameError> {
    read_frame(&mut BytesMut::from(&frame[..HEADER_LEN]), max_frame_size)
}

#[test]
fn a_frame_over_our_max_frame_size_is_refused_from_its_header_alone() {
    let too_large = Violation::TooLarge {
        len: DEFAULT_MAX_FRAME_SIZE + 1,
        max: DEFAULT_MAX_FRAME_SIZE,
    };
    for kind in [kind::DATA, kind::HEADERS, kind::CONTINUATION, 0xbb] {
        let frame = raw(kind, 0, 1, &vec![0; DEFAULT_MAX_FRAME_SIZE as usize + 1]);
        let refused = Err(FrameError::Connection(too_large));
        assert_eq!(
            read_header_alone(&frame, DEFAULT_MAX_FRAME_SIZE),
            refused,
            "type {kind}"
        );
    }
    // Exactly the maximum is a frame; a larger maximum takes a larger frame.
    let frame = raw(kind::DATA, 0, 1, &vec![0; DEFAULT_MAX_FRAME_SIZE as usize]);
    assert!(read_all_of(&frame).is_ok());
    let frame = raw(kind::DATA, 0, 1, &vec![0; 20_000]);
    assert_eq!(
        read_header_alone(&frame, 20_000),
        Ok(None),
        "waits for the payload"
    );
    assert!(read_frame(&mut BytesMut::from(&frame[..]), 20_000).is_ok_and(|f| f.is_some()));
}

#[test]
fn stream_frames_on_stream_zero_end_the_connection() {
    for kind in [
        kind::DATA,
        kind::HEADERS,
        kind::PRIORITY,
        kind::RST_STREAM,
        kind::PUSH_PROMISE,
        kind::CONTINUATION,
    ] {
        let frame = raw(kind, 0, 0, &[0; 5]);
        let refused = Err(FrameError::Connection(Violation::StreamZero { kind }));
        assert_eq!(
            read_header_alone(&frame, DEFAULT_MAX_FRAME_SIZE),
            refused,
            "type {kind}"
        );
    }
}

#[test]
fn connection_frames_on_a_stream_end_the_connection() {
    for (kind, payload) in [
        (kind::SETTINGS, &[][..]),
        (kind::PING, &[0; 8][..]),
        (kind::GOAWAY, &[0; 8][..]),
    ] {
        let frame = raw(kind, 0, 1, payload);
        let refused = Err(FrameError::Connection(Violation::NotStreamZero { kind }));
        assert_eq!(
            read_header_alone(&frame, DEFAULT_MAX_FRAME_SIZE),
            refused,
            "type {kind}"
        );
        assert!(
            read_all_of(&raw(kind, 0, 0, payload)).is_ok(),
            "type {kind} on stream 0"
        );
    }
    // WINDOW_UPDATE belongs on both; unknown types anywhere.
    assert!(read_all_of(&raw(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1])).is_ok());
    assert!(read_all_of(&raw(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 0, 1])).is_ok());
}

#[test]
fn fixed_size_frames_of_another_length_end_the_connection() {
    let cases: [(u8, u32, &[usize]); 4] = [
        (kind::RST_STREAM, 1, &[0, 3, 5, 8]),
        (kind::PING, 0, &[0, 7, 9, 16]),
        (kind::WINDOW_UPDATE, 1, &[0, 3, 5]),
        (kind::GOAWAY, 0, &[0, 4, 7]),
    ];
    for (kind, stream, lengths) in cases {
        for &len in lengths {
            let frame = raw(kind, 0, stream, &vec![1; len]);
            let len = len as u32;
            let refused = Err(FrameError::Connection(Violation::BadLength { kind, len }));
            assert_eq!(
                read_header_alone(&frame, DEFAULT_MAX_FRAME_SIZE),
                refused,
                "type {kind}, {len} bytes"
            );
        }
    }
    // GOAWAY may be longer than 8 bytes: the rest is debug data.
    assert!(read_all_of(&raw(kind::GOAWAY, 0, 0, &[0; 9])).is_ok());
}

#[test]
fn settings_of_a_length_not_a_multiple_of_six_end_the_connection() {
    for len in [1, 5, 7, 13] {
        let frame = raw(kind::SETTINGS, 0, 0, &vec![0; len]);
        let len = len as u32;
        let refused = Err(FrameError::Connection(Violation::BadLength {
            kind: kind::SETTINGS,
            len,
        }));
        assert_eq!(
            read_header_alone(&frame, DEFAULT_MAX_FRAME_SIZE),
            refused,
            "{len} bytes"
        );
    }
}

#[test]
fn a_settings_acknowledgement_with_a_payload_ends_the_connection() {
    let frame = raw(kind::SETTINGS, flag::ACK, 0, b"\0\x03\0\0\0\x01");
    let refused = Err(FrameError::Connection(Violation::AckWithPayload));
    assert_eq!(read_header_alone(&frame, DEFAULT_MAX_FRAME_SIZE), refused);
    assert_eq!(
        FrameError::Connection(Violation::AckWithPayload).code(),
        ErrorCode::FrameSizeError
    );
}

#[test]
fn a_priority_frame_of_another_length_resets_its_stream_only() {
    for len in [0, 4, 6] {
        let mut buf = raw(kind::PRIORITY, 0, 3, &vec![0; len]);
        buf.extend_from_slice(&raw(kind::PING, 0, 0, b"nextnext"));
        let len = len as u32;
        let refused = stream_error(
            3,
            Violation::BadLength {
                kind: kind::PRIORITY,
                len,
            },
        );
        assert_eq!(
            read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).map(Option::unwrap),
            refused
        );
        assert_eq!(refused.unwrap_err().code(), ErrorCode::FrameSizeError);
        let next = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE);
        assert!(
            matches!(next, Ok(Some(Frame::Ping { .. }))),
            "{len} bytes: then {next:?}"
        );
    }
}

#[test]
fn padding_as_long_as_the_payload_ends_the_connection() {
    // DATA: 3 bytes of payload after the length octet, so at most 3 of padding.
    assert!(read_all_of(&raw(kind::DATA, flag::PADDED, 1, b"\x03\0\0\0")).is_ok());
    let frame = raw(kind::DATA, flag::PADDED, 1, b"\x04\0\0\0");
    assert_eq!(
        read_all_of(&frame),
        connection_error(Violation::PaddingTooLong)
    );
    let frame = raw(kind::DATA, flag::PADDED, 1, b"\xff");
    assert_eq!(
        read_all_of(&frame),
        connection_error(Violation::PaddingTooLong)
    );
    // HEADERS: the padding must also leave the 5 bytes of priority fields.
    let flags = flag::PADDED | flag::PRIORITY;
    assert!(read_all_of(&raw(kind::HEADERS, flags, 1, b"\x01\0\0\0\0\x10\0")).is_ok());
    let frame = raw(kind::HEADERS, flags, 1, b"\x02\0\0\0\0\x10\0");
    assert_eq!(
        read_all_of(&frame),
        connection_error(Violation::PaddingTooLong)
    );
    let frame = raw(kind::HEADERS, flag::PADDED, 1, b"\x03\x82\0");
    assert_eq!(
        read_all_of(&frame),
        connection_error(Violation::PaddingTooLong)
    );
    assert_eq!(Violation::PaddingTooLong.code(), ErrorCode::ProtocolError);
}

#[test]
fn a_frame_too_short_for_its_pad_length_or_priority_ends_the_connection() {
    let missing = |kind| connection_error(Violation::MissingFields { kind });
    assert_eq!(
        read_all_of(&raw(kind::DATA, flag::PADDED, 1, b"")),
        missing(kind::DATA)
    );
    assert_eq!(
        read_all_of(&raw(kind::HEADERS, flag::PADDED, 1, b"")),
        missing(kind::HEADERS)
    );
    let frame = raw(kind::HEADERS, flag::PRIORITY, 1, b"\0\0\0\x03");
    assert_eq!(read_all_of(&frame), missing(kind::HEADERS));
    let frame = raw(
        kind::HEADERS,
        flag::PRIORITY | flag::PADDED,
        1,
        b"\0\0\0\0\x03",
    );
    assert_eq!(read_all_of(&frame), missing(kind::HEADERS));
}

#[test]
fn a_stream_depending_on_itself_is_reset_and_its_header_block_kept() {
    let mut buf = raw(
        kind::HEADERS,
        flag::PRIORITY | flag::END_HEADERS,
        5,
        b"\x80\0\0\x05\x10\x82\x84",
    );
    buf.extend_from_slice(&raw(kind::PRIORITY, 0, 7, b"\0\0\0\x07\x10"));
    buf.extend_from_slice(&raw(kind::PRIORITY, 0, 7, b"\0\0\0\x05\x10"));
    let refused = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE);
    let Err(FrameError::Stream {
        stream: 5,
        violation: Violation::SelfDependency,
        headers: Some(h),
    }) = refused
    else {
        panic!("HEADERS depending on its own stream gave {refused:?}");
    };
    assert_eq!(
        (h.stream, h.end_headers, &h.fragment[..]),
        (5, true, &b"\x82\x84"[..])
    );
    let refused = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).map(Option::unwrap);
    assert_eq!(refused, stream_error(7, Violation::SelfDependency));
    assert_eq!(refused.unwrap_err().code(), ErrorCode::ProtocolError);
    let fine = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(
        fine,
        Ok(Some(Frame::Priority { stream: 7 })),
        "depending on another stream"
    );
}

#[test]
fn a_zero_window_increment_ends_the_connection_on_stream_zero_and_the_stream_elsewhere() {
    let frame = raw(kind::WINDOW_UPDATE, 0, 0, b"\0\0\0\0");
    assert_eq!(
        read_all_of(&frame),
        connection_error(Violation::ZeroIncrement)
    );
    let mut buf = raw(kind::WINDOW_UPDATE, 0, 3, b"\x80\0\0\0");
    buf.extend_from_slice(&raw(kind::WINDOW_UPDATE, 0, 3, b"\0\0\0\x01"));
    let refused = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).map(Option::unwrap);
    assert_eq!(
        refused,
        stream_error(3, Violation::ZeroIncrement),
        "the reserved bit is no increment"
    );
    let next = read_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(
        next,
        Ok(Some(Frame::WindowUpdate {
            stream: 3,
            increment: 1
        }))
    );
}

/// A SETTINGS frame of one parameter.
fn setting(id: u16, value: u32) -> Result<Frame, FrameError> {
    let mut payload = BytesMut::new();
    payload.put_u16(id);
    payload.put_u32(value);
    read_all_of(&raw(kind::SETTINGS, 0, 0, &payload))
}

fn only(update: SettingsUpdate) -> Result<Frame, FrameError> {
    Ok(Frame::Settings(update))
}

#[test]
fn settings_values_out_of_range_end_the_connection() {
    let none = SettingsUpdate::default();
    let out_of_range = |id, value| connection_error(Violation::SettingValue { id, value });
    // ENABLE_PUSH (2) and ENABLE_CONNECT_PROTOCOL (8): 0 or 1.
    assert_eq!(
        setting(2, 1),
        only(SettingsUpdate {
            enable_push: Some(true),
            ..none
        })
    );
    assert_eq!(
        setting(2, 0),
        only(SettingsUpdate {
            enable_push: Some(false),
            ..none
        })
    );
    assert_eq!(setting(2, 2), out_of_range(2, 2));
    let connect = SettingsUpdate {
        enable_connect_protocol: Some(true),
        ..none
    };
    assert_eq!(setting(8, 1), only(connect));
    assert_eq!(setting(8, 7), out_of_range(8, 7));
    // INITIAL_WINDOW_SIZE (4): at most 2^31-1, else FLOW_CONTROL_ERROR.
    let window = SettingsUpdate {
        initial_window_size: Some(MAX_WINDOW_SIZE),
        ..none
    };
    assert_eq!(setting(4, MAX_WINDOW_SIZE), only(window));
    let refused = setting(4, MAX_WINDOW_SIZE + 1);
    assert_eq!(
        refused,
        connection_error(Violation::WindowTooLarge(MAX_WINDOW_SIZE + 1))
    );
    assert_eq!(refused.unwrap_err().code(), ErrorCode::FlowControlError);
    // MAX_FRAME_SIZE (5): 16,384 to 16,777,215.
    for fine in [DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT] {
        assert_eq!(
            setting(5, fine),
            only(SettingsUpdate {
                max_frame_size: Some(fine),
                ..none
            })
        );
    }
    for wrong in [
        0,
        DEFAULT_MAX_FRAME_SIZE - 1,
        MAX_FRAME_SIZE_LIMIT + 1,
        u32::MAX,
    ] {
        assert_eq!(setting(5, wrong), out_of_range(5, wrong));
    }
    assert_eq!(
        out_of_range(5, 0).unwrap_err().code(),
        ErrorCode::ProtocolError
    );
    // The others take any value; unknown ids are ignored, whatever their value.
    let free = SettingsUpdate {
        header_table_size: Some(u32::MAX),
        ..none
    };
    assert_eq!(setting(1, u32::MAX), only(free));
    assert_eq!(setting(0, u32::MAX), only(none));
    assert_eq!(setting(7, 2), only(none));
}

#[test]
fn settings_start_at_the_rfc_defaults() {
    let defaults = Settings::default();
    assert_eq!(defaults.header_table_size, 4_096);
    assert!(defaults.enable_push);
    assert_eq!(defaults.max_concurrent_streams, None);
    assert_eq!(defaults.initial_window_size, 65_535);
    assert_eq!(defaults.max_frame_size, 16_384);
    assert_eq!(defaults.max_header_list_size, None);
    assert!(!defaults.enable_connect_protocol);
    let mut buf = Vec::new();
    defaults.write(&mut buf);
    assert_eq!(
        buf,
        [0, 0, 0, kind::SETTINGS, 0, 0, 0, 0, 0],
        "nothing to announce"
    );
}

#[test]
fn our_settings_written_and_applied_to_the_defaults_are_ours() {
    let ours = Settings {
        enable_push: false,
        max_concurrent_streams: Some(128),
        initial_window_size: 1 << 20,
        max_header_list_size: Some(65_536),
        enable_connect_protocol: true,
        ..Settings::default()
    };
    let mut buf = Vec::new();
    ours.write(&mut buf);
    assert_eq!(
        buf.len(),
        HEADER_LEN + 5 * 6,
        "only what differs from the defaults"
    );
    let Ok(Frame::Settings(update)) = read_all_of(&buf) else {
        panic!("not SETTINGS")
    };
    let mut theirs = Settings::default();
    theirs.apply(&update).unwrap();
    assert_eq!(theirs, ours);
}

#[test]
fn applying_settings_changes_only_what_they_name() {
    let mut settings = Settings::default();
    let update = SettingsUpdate {
        initial_window_size: Some(0),
        max_frame_size: Some(32_768),
        ..SettingsUpdate::default()
    };
    settings.apply(&update).unwrap();
    let expected = Settings {
        initial_window_size: 0,
        max_frame_size: 32_768,
        ..Settings::default()
    };
    assert_eq!(settings, expected);
    settings
        .apply(&SettingsUpdate {
            header_table_size: Some(0),
            ..SettingsUpdate::default()
        })
        .unwrap();
    assert_eq!(
        settings,
        Settings {
            header_table_size: 0,
            ..expected
        }
    );
}

#[test]
fn extended_connect_once_offered_cannot_be_withdrawn() {
    let mut settings = Settings::default();
    let off = SettingsUpdate {
        enable_connect_protocol: Some(false),
        initial_window_size: Some(1),
        ..SettingsUpdate::default()
    };
    settings.apply(&off).unwrap();
    let on = SettingsUpdate {
        enable_connect_protocol: Some(true),
        ..SettingsUpdate::default()
    };
    settings.apply(&on).unwrap();
    let before = settings;
    let refused = settings.apply(&off);
    assert_eq!(
        refused,
        Err(FrameError::Connection(Violation::ConnectProtocolWithdrawn))
    );
    assert_eq!(settings, before, "nothing of the refused frame was applied");
    settings.apply(&on).unwrap();
}
