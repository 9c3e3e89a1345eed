//! The HTTP/1 body decoder both roles use (`http1::framing::decode`), for chunked bodies and `Content-Length` ones.
//!
//! Input: byte 0 picks the framing (even: chunked; odd: a length of byte 0 / 2 bytes, 0 to 127), byte 1 where the
//! bytes split into two reads; the rest is what the peer sent.
//!
//! Invariants:
//! - the decoder never yields more data bytes than it was given, and a length body yields exactly its first
//!   `length` bytes and leaves the rest;
//! - fed the same input split at any point into two reads, it yields the same data, the same trailers, the same
//!   verdict (done, needs more, refused with the same reason) and leaves the same bytes;
//! - a chunked body it decodes whole, written again with elbe's own chunked encoder, decodes to the same data and
//!   trailers.
#![no_main]

use bytes::{Bytes, BytesMut};
use elbe::fuzz_support::{encode_chunked, BodyDecoder, BodyFrame};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;

/// Frames a decoder may yield per input byte at most, plus a few: a decoder that yields more is looping.
const FRAMES_PER_BYTE: usize = 1;

#[derive(Debug, PartialEq)]
enum Verdict {
    Done,
    NeedMore,
    Refused(String),
}

#[derive(Debug, PartialEq)]
struct Decoded {
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
    verdict: Verdict,
    left: BytesMut,
}

fuzz_target!(|data: &[u8]| {
    let [framing, split_byte, input @ ..] = data else {
        return;
    };
    let length = (framing % 2 == 1).then_some(u64::from(framing / 2));
    let decoder = || length.map_or_else(BodyDecoder::chunked, BodyDecoder::length);
    let split = usize::from(*split_byte) * input.len() / 255;

    let whole = decode(decoder(), &[input]);
    assert!(whole.data.len() <= input.len(), "more data out than bytes in");
    if let Some(length) = length {
        let length = usize::try_from(length).unwrap_or(usize::MAX).min(input.len());
        assert_eq!(whole.data, &input[..length]);
        assert_eq!(&whole.left[..], &input[length..]);
    }
    let two_reads = decode(decoder(), &[&input[..split], &input[split..]]);
    assert_eq!(whole, two_reads, "split after {split} bytes");

    if length.is_none() && whole.verdict == Verdict::Done {
        let encoded = encode_chunked(&[Bytes::from(whole.data.clone())], whole.trailers.as_ref());
        let again = decode(BodyDecoder::chunked(), &[&encoded]);
        assert_eq!(again.verdict, Verdict::Done, "elbe's own encoding of {:?}", encoded);
        assert_eq!(again.data, whole.data);
        assert_eq!(again.trailers, whole.trailers);
        assert!(again.left.is_empty());
    }
});

/// Decodes `reads` one after the other into one buffer, as a connection reads its socket, until the body ends,
/// is refused, or needs more than was sent.
fn decode(mut decoder: BodyDecoder, reads: &[&[u8]]) -> Decoded {
    let total: usize = reads.iter().map(|read| read.len()).sum();
    let mut frames_left = total * FRAMES_PER_BYTE + 4;
    let mut buf = BytesMut::new();
    let mut reads = reads.iter();
    let mut data = Vec::new();
    let mut trailers = None;
    let verdict = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(BodyFrame::Data(bytes))) => {
                assert!(!bytes.is_empty(), "an empty data frame");
                data.extend_from_slice(&bytes);
            }
            Ok(Some(BodyFrame::Trailers(map))) => {
                assert!(trailers.is_none(), "two trailer sections");
                // An empty section and none are the same on the wire.
                trailers = (!map.is_empty()).then_some(map);
            }
            Ok(None) if decoder.is_done() => break Verdict::Done,
            Ok(None) => match reads.next() {
                Some(read) => buf.extend_from_slice(read),
                None => break Verdict::NeedMore,
            },
            Err(error) => break Verdict::Refused(format!("{:?}: {error}", error.kind())),
        }
        frames_left = frames_left.checked_sub(1).expect("the decoder keeps yielding frames: a loop");
    };
    if verdict == Verdict::Done {
        assert!(decoder.decode(&mut buf).is_ok_and(|frame| frame.is_none()), "frames after the end");
    }
    // What was never fed stays unread.
    for read in reads {
        buf.extend_from_slice(read);
    }
    Decoded { data, trailers, verdict, left: buf }
}
