//! Reading a request head without sockets: verdicts that must not depend on how the client's bytes arrive (the
//! invariant the `request_head` fuzz target checks; each case here is an input it found).

use super::*;

fn limits(max_head_bytes: usize) -> HeadLimits {
    HeadLimits {
        max_head_bytes,
        max_headers: 32,
        max_uri_bytes: max_head_bytes,
    }
}

/// The verdict on `bytes` read in one read, and in two split after `split` bytes (`None`: still incomplete).
fn verdicts(
    bytes: &[u8],
    split: usize,
    max_head_bytes: usize,
) -> (Option<ElbResponse>, Option<ElbResponse>) {
    let verdict = |buf: &mut BytesMut| parse(buf, limits(max_head_bytes)).err();
    let whole = verdict(&mut BytesMut::from(bytes));
    let mut buf = BytesMut::from(&bytes[..split]);
    let first = match verdict(&mut buf) {
        None => {
            buf.extend_from_slice(&bytes[split..]);
            verdict(&mut buf)
        }
        refused => refused,
    };
    (whole, first)
}

/// Found by `fuzz/corpus/request_head/seed-found-431-then-400`: a head over the limit with a malformed byte past
/// the limit was 400 when it arrived in one read and 431 when the first read already held more than the limit.
#[test]
fn a_head_over_the_limit_is_431_whatever_follows_the_limit() {
    let mut head = b"GET /".to_vec();
    head.extend_from_slice(&[b'a'; 70]);
    head.extend_from_slice(b"\0 HTTP/1.1\r\nHost: h\r\n\r\n");
    let (whole, split) = verdicts(&head, 66, 64);
    assert_eq!(whole, Some(ElbResponse::HeadersTooLarge));
    assert_eq!(split, Some(ElbResponse::HeadersTooLarge));
}

#[test]
fn a_malformed_byte_within_the_limit_is_400_however_it_arrives() {
    let head = b"GET /a\0 HTTP/1.1\r\nHost: h\r\n\r\n";
    for split in 0..head.len() {
        assert_eq!(
            verdicts(head, split, 64),
            (Some(ElbResponse::BadRequest), Some(ElbResponse::BadRequest)),
            "split after {split}"
        );
    }
}

#[test]
fn a_head_of_exactly_the_limit_parses() {
    let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut buf = BytesMut::from(&head[..]);
    let parsed = parse(&mut buf, limits(head.len()));
    assert!(matches!(parsed, Ok(Some(_))));
    assert!(buf.is_empty());
    let mut buf = BytesMut::from(&head[..]);
    assert!(matches!(
        parse(&mut buf, limits(head.len() - 1)),
        Err(ElbResponse::HeadersTooLarge)
    ));
}
