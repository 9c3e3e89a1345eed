//! Scanning response heads without sockets: inputs the `response_head` fuzz target found, and the invariants it
//! checks (the verdict does not depend on how the bytes arrive).

use super::*;

/// The head read in one read, in both modes (`raw` and header map).
fn both(bytes: &[u8]) -> [Result<Option<ResponseHead>, BackendError>; 2] {
    [true, false].map(|raw| read_head(&mut BytesMut::from(bytes), false, raw))
}

/// Found by `fuzz/corpus/response_head/seed-found-reason-obs-text`: httparse hands back a static `""`, not a slice
/// of the buffer, for a reason phrase with obs-text or none at all, and taking its position in the buffer
/// overflowed (a panic in debug builds, an out-of-bounds slice in release). Both are now "no reason phrase".
#[test]
fn a_missing_or_obs_text_reason_phrase_is_no_reason_phrase() {
    for head in [
        &b"HTTP/1.1 503 Back-end busy \xe9\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200\nContent-Length: 0\n\n",
        b"HTTP/1.1 204 \r\n\r\n",
    ] {
        for scanned in both(head) {
            let scanned = scanned.unwrap().unwrap();
            if let Some(raw) = scanned.raw {
                assert_eq!(raw.reason, "", "{:?}", String::from_utf8_lossy(head));
            } else {
                assert!(scanned
                    .response
                    .extensions()
                    .get::<hyper::ext::ReasonPhrase>()
                    .is_none());
            }
        }
    }
}

#[test]
fn a_reason_phrase_is_kept_as_received() {
    let [raw, map] = both(b"HTTP/1.1 200 Fine, thanks\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(raw.unwrap().unwrap().raw.unwrap().reason, "Fine, thanks");
    let map = map.unwrap().unwrap();
    let reason = map
        .response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .unwrap();
    assert_eq!(reason.as_bytes(), b"Fine, thanks");
}
