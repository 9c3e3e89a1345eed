//! HTTP/2 frames as elbe's server reads them (`http2::frame::read_frame`, SETTINGS_MAX_FRAME_SIZE 16,384), and as
//! it writes them back (`http2::frame::write_*`).
//!
//! Input: byte 0 sets the frame size the writers split header blocks at (1 to 256, so the splitting is exercised),
//! byte 1 where the bytes split into two reads (a fraction of them); the rest is what the client sent, with or
//! without the connection preface.
//!
//! Invariants:
//! - the preface is recognised only when all of it is there, and every prefix of it is "not yet";
//! - a frame takes exactly its 9 bytes of header and its declared length, never more than 16,384 of payload;
//!   `None` means that much is not there yet;
//! - the frames, the errors (connection or stream, code) and the bytes left are the same however the bytes arrive
//!   (two reads split anywhere); every prefix of a frame that reads is "not yet"; a connection error ends the
//!   reading, a stream error does not, and never names stream 0;
//! - each frame elbe writes reads back as itself: DATA without its padding, a PING as its acknowledgement, a
//!   header block as HEADERS and CONTINUATION frames none longer than the split size, END_HEADERS on the last
//!   only, the fragments together the block;
//! - the SETTINGS elbe announces after applying a client's, read and applied again, announce the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use elbe::fuzz_support::{
    check_h2_preface, h2_settings_after, read_h2_frame, write_h2_frame, H2Error, H2Frame,
};
use libfuzzer_sys::fuzz_target;

const MAX_FRAME_SIZE: u32 = 16_384;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One step of reading: a frame, or a refusal.
type Step = Result<H2Frame, H2Error>;

/// Reads frames off `buf` until it holds no whole one or a connection error; appends each step and the bytes it
/// took to `steps`. Returns whether the connection ended.
fn read_steps(buf: &mut BytesMut, steps: &mut Vec<(Step, usize)>) -> bool {
    loop {
        let before = buf.len();
        let declared =
            (before >= 9).then(|| 9 + u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize);
        match read_h2_frame(buf, MAX_FRAME_SIZE) {
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame took bytes");
                assert!(
                    declared.is_none_or(|whole| whole > before),
                    "a whole frame was not read"
                );
                return false;
            }
            Ok(Some(frame)) => {
                let used = before - buf.len();
                assert_eq!(Some(used), declared, "{frame:?} took {used} bytes");
                assert!(used <= 9 + MAX_FRAME_SIZE as usize);
                steps.push((Ok(frame), used));
            }
            Err(error) if error.stream.is_some() => {
                assert_ne!(
                    error.stream,
                    Some(0),
                    "a stream error on stream 0: {error:?}"
                );
                let used = before - buf.len();
                assert_eq!(
                    Some(used),
                    declared,
                    "a stream error left part of its frame"
                );
                steps.push((Err(error), used));
            }
            Err(error) => {
                steps.push((Err(error), 0));
                return true;
            }
        }
    }
}

/// Reads `bytes` fed as two reads, split at `split`: the steps, and the bytes left unread unless a connection
/// error ended the reading (the connection is over then: what is left does not matter).
fn read_in_two(bytes: &[u8], split: usize) -> (Vec<(Step, usize)>, Option<Vec<u8>>) {
    let mut steps = Vec::new();
    let mut buf = BytesMut::from(&bytes[..split]);
    if read_steps(&mut buf, &mut steps) {
        return (steps, None);
    }
    buf.extend_from_slice(&bytes[split..]);
    if read_steps(&mut buf, &mut steps) {
        return (steps, None);
    }
    (steps, Some(buf.to_vec()))
}

/// Every shorter piece of a frame's bytes is "not yet" (all of them for small frames, the header's and the last
/// one for the rest).
fn check_prefixes(frame: &[u8]) {
    let ends: Vec<usize> = if frame.len() <= 512 {
        (0..frame.len()).collect()
    } else {
        (0..=9).chain([frame.len() / 2, frame.len() - 1]).collect()
    };
    for end in ends {
        let mut buf = BytesMut::from(&frame[..end]);
        let verdict = read_h2_frame(&mut buf, MAX_FRAME_SIZE);
        assert_eq!(
            verdict,
            Ok(None),
            "a {end}-byte prefix of a {}-byte frame",
            frame.len()
        );
    }
}

/// Every frame in `bytes`, which must all be whole and valid.
fn read_written(bytes: &[u8]) -> Vec<H2Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while !buf.is_empty() {
        match read_h2_frame(&mut buf, MAX_FRAME_SIZE) {
            Ok(Some(frame)) => frames.push(frame),
            other => panic!("elbe's own bytes {bytes:?} read as {other:?}"),
        }
    }
    frames
}

/// `frame` written by elbe's writers and read back.
fn check_round_trip(frame: &H2Frame, split_at: u32) {
    let Some(written) = write_h2_frame(frame, split_at) else {
        return;
    };
    let back = read_written(&written);
    match frame {
        H2Frame::Headers {
            stream,
            end_stream,
            fragment,
            ..
        } => check_header_block(&back, *stream, *end_stream, fragment, split_at),
        H2Frame::Data {
            stream,
            end_stream,
            data,
            ..
        } => {
            let expected = H2Frame::Data {
                stream: *stream,
                end_stream: *end_stream,
                data: data.clone(),
                flow_controlled: data.len() as u32,
            };
            assert_eq!(back, [expected]);
        }
        H2Frame::Ping { payload, .. } => assert_eq!(
            back,
            [H2Frame::Ping {
                ack: true,
                payload: *payload
            }]
        ),
        other => assert_eq!(back, [other.clone()]),
    }
}

/// A header block written as HEADERS + CONTINUATION frames.
fn check_header_block(
    frames: &[H2Frame],
    stream: u32,
    end_stream: bool,
    block: &Bytes,
    split_at: u32,
) {
    let mut joined = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let last = i + 1 == frames.len();
        let (fragment, end_headers) = match frame {
            H2Frame::Headers {
                stream: s,
                end_stream: e,
                end_headers,
                fragment,
            } if i == 0 => {
                assert_eq!((*s, *e), (stream, end_stream));
                (fragment, *end_headers)
            }
            H2Frame::Continuation {
                stream: s,
                end_headers,
                fragment,
            } if i > 0 => {
                assert_eq!(*s, stream);
                (fragment, *end_headers)
            }
            other => panic!("frame {i} of a header block is {other:?}"),
        };
        assert_eq!(
            end_headers,
            last,
            "END_HEADERS on frame {i} of {}",
            frames.len()
        );
        assert!(
            fragment.len() <= split_at as usize,
            "a {}-byte fragment",
            fragment.len()
        );
        assert!(
            last || fragment.len() == split_at as usize,
            "a short fragment before the last"
        );
        joined.extend_from_slice(fragment);
    }
    assert_eq!(joined, block[..]);
}

fuzz_target!(|input: &[u8]| {
    let [size, split, data @ ..] = input else {
        return;
    };
    let split_at = 1 + u32::from(*size);
    let preface = check_h2_preface(data);
    let expected = if data.starts_with(PREFACE) {
        Some(true)
    } else if PREFACE.starts_with(data) {
        Some(false)
    } else {
        None
    };
    assert_eq!(
        preface.as_ref().ok().copied(),
        expected,
        "the preface check"
    );
    let bytes = if preface == Ok(true) {
        &data[PREFACE.len()..]
    } else {
        data
    };

    let split = bytes.len() * usize::from(*split) / 255;
    let (whole, left) = read_in_two(bytes, bytes.len());
    let (apart, left_apart) = read_in_two(bytes, split);
    assert_eq!(whole, apart, "split at byte {split} of {}", bytes.len());
    assert_eq!(left, left_apart);

    let mut at = 0;
    for (step, used) in &whole {
        let frame_bytes = &bytes[at..at + used];
        at += used;
        match step {
            Ok(frame) => {
                check_prefixes(frame_bytes);
                check_round_trip(frame, split_at);
                if let H2Frame::Settings(pairs) = frame {
                    let ours = h2_settings_after(pairs)
                        .expect("a client's valid SETTINGS apply to the defaults");
                    let Some(H2Frame::Settings(again)) = read_written(&ours).pop() else {
                        panic!("not SETTINGS")
                    };
                    assert_eq!(h2_settings_after(&again), Ok(ours));
                }
            }
            Err(_) if *used > 0 => check_prefixes(frame_bytes),
            Err(_) => {}
        }
    }
});
