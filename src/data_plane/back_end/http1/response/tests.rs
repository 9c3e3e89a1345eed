//! Scanning response heads without sockets: inputs the `response_head` fuzz target found, and the invariants it
//! checks (the verdict does not depend on how the bytes arrive).

use super::*;

/// The head read in one read, in both modes (`raw` and header map).
fn both(bytes: &[u8]) -> [Result<Option<ResponseHead>, BackendError>; 2] {
    [true, false].map(|raw| read_head(&mut BytesMut::from(bytes), false, raw, false))
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

/// Found by `fuzz/corpus/response_head/seed-found-bare-lf-lines`: when every kept line ended in a bare LF (an
/// instance writing LF-only heads), the raw lines for an HTTP/1 client came out empty: every header, even
/// `Content-Length`, was lost while `has_length` still said it was there.
#[test]
fn lines_ending_in_a_bare_lf_are_kept_and_written_with_crlf() {
    for head in [
        &b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\nConnection: keep-alive\n\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\n\nok",
    ] {
        let scanned = read_head(&mut BytesMut::from(head), false, true, false).unwrap().unwrap();
        let raw = scanned.raw.unwrap();
        assert_eq!(
            raw.lines,
            "Content-Type: text/plain\r\nContent-Length: 2\r\n",
            "{:?}",
            String::from_utf8_lossy(head)
        );
        assert!(raw.has_length);
    }
}

#[test]
fn contiguous_crlf_lines_are_one_slice_of_the_head() {
    let head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nA: 1\r\nB: 2\r\n\r\n";
    let scanned = read_head(&mut BytesMut::from(&head[..]), false, true, false)
        .unwrap()
        .unwrap();
    assert_eq!(scanned.raw.unwrap().lines, "A: 1\r\nB: 2\r\n");
}

/// The `response_head` fuzz target's invariant (the same verdict for one read or two), on an input longer than
/// its runs make: a head over 64 KiB was accepted when it came whole in one read and refused when a first read
/// held more than 64 KiB without its end.
#[test]
fn a_head_over_the_limit_is_refused_however_it_arrives() {
    let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    head.resize(MAX_HEAD_BYTES + 100, b'x');
    let split = head.len();
    head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let too_large = "instance sent an unparseable response: response head too large";
    let whole = read_head(&mut BytesMut::from(&head[..]), false, true, false);
    assert_eq!(whole.unwrap_err().to_string(), too_large);
    let mut buf = BytesMut::from(&head[..split]);
    assert_eq!(
        read_head(&mut buf, false, true, false)
            .unwrap_err()
            .to_string(),
        too_large
    );
    // A head of exactly the limit is read.
    let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    head.resize(MAX_HEAD_BYTES - b"\r\n\r\n".len(), b'x');
    head.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(
        read_head(&mut BytesMut::from(&head[..]), false, true, false),
        Ok(Some(_))
    ));
}

/// Found by `fuzz/corpus/response_head/seed-found-connection-names-17`: only the first 16 names the `Connection`
/// lines listed were removed; a line named 17th or later went on to the client (RFC 9110 §7.6.1: each must go).
#[test]
fn every_line_connection_names_is_dropped() {
    let options: Vec<String> = (1..=40).map(|i| format!("x-hop-{i}")).collect();
    let mut head = format!("HTTP/1.1 200 OK\r\nConnection: {}\r\n", options.join(", "));
    for option in &options {
        head.push_str(&format!("{option}: secret\r\n"));
    }
    head.push_str("X-Kept: 1\r\nContent-Length: 0\r\n\r\n");
    let [raw, map] = both(head.as_bytes());
    assert_eq!(
        raw.unwrap().unwrap().raw.unwrap().lines,
        "X-Kept: 1\r\nContent-Length: 0\r\n"
    );
    let map = map.unwrap().unwrap();
    let names: Vec<&str> = map
        .response
        .headers()
        .keys()
        .map(|name| name.as_str())
        .collect();
    assert_eq!(names, ["x-kept", "content-length"]);
}

/// A 101 is held to the accept its request's key calls for (RFC 6455 §4.2.2): the right one switches, a wrong or
/// missing one is the instance's error (a 502), whatever the client.
#[test]
fn a_switch_must_answer_the_key_it_was_sent() {
    let expected = crate::data_plane::headers::websocket::accept_for(b"dGhlIHNhbXBsZSBub25jZQ==");
    let switch = |accept: &str| {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{accept}\r\n"
        );
        [true, false].map(|raw| {
            read_head(
                &mut BytesMut::from(head.as_bytes()),
                false,
                raw,
                Switch::WebSocket(Some(expected)),
            )
        })
    };
    for scanned in switch("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") {
        let head = scanned.unwrap().unwrap();
        assert_eq!(head.response.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
    for accept in ["Sec-WebSocket-Accept: s3pPLMBiTxaK9kBOwDwI6rCMnKU=\r\n", ""] {
        for scanned in switch(accept) {
            assert!(
                matches!(scanned, Err(BackendError::BadResponse(_))),
                "{accept}: {scanned:?}"
            );
        }
    }
}
