//! The WebSocket handshake's keys (RFC 6455 §4) for elbe's HTTP/2 clients: RFC 8441 §4's extended CONNECT has no
//! `Sec-WebSocket-Key` (HTTP/2 needs none), so elbe makes one for the HTTP/1.1 `GET` it sends the instance and
//! checks the instance's `Sec-WebSocket-Accept` against it, as the client would have. An instance that answers
//! with the wrong one did not understand the handshake: its `101` is ELB's 502 (ELB-SPEC §9, elbe's departure).

use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Version};
use sha1::{Digest, Sha1};

/// `Sec-WebSocket-Key`: the nonce the instance's accept is made from.
pub(crate) const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// `Sec-WebSocket-Accept`: the instance's proof it read the key.
pub(crate) const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// RFC 6455 §1.3's GUID, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A `Sec-WebSocket-Accept` value: base64 of a SHA-1 digest, always 28 bytes.
pub(crate) type Accept = [u8; 28];

/// Whether a request is RFC 8441 §4's WebSocket over HTTP/2: `CONNECT` with `:protocol = websocket`. Any other
/// `CONNECT` (none, or another `:protocol`) is not, and stays refused.
pub(crate) fn is_extended_websocket<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_2
        && request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// A fresh `Sec-WebSocket-Key` (16 random bytes, base64, RFC 6455 §4.1). `None` only when the system's random
/// source fails, and then there is no handshake to make.
pub(crate) fn fresh_key() -> Option<HeaderValue> {
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).ok()?;
    HeaderValue::from_str(&data_encoding::BASE64.encode(&nonce)).ok()
}

/// The `Sec-WebSocket-Accept` an instance must answer `key` with (RFC 6455 §4.2.2 step 5.4).
pub(crate) fn accept_for(key: &[u8]) -> Accept {
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    let mut accept = [0u8; 28];
    data_encoding::BASE64.encode_mut(&digest, &mut accept);
    accept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_rfc_6455s_example() {
        // RFC 6455 §1.3 and §4.2.2: this key's accept.
        assert_eq!(
            &accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn fresh_keys_are_16_bytes_of_base64_and_differ() {
        let (a, b) = (fresh_key().unwrap(), fresh_key().unwrap());
        assert_eq!(a.len(), 24);
        assert_eq!(
            data_encoding::BASE64.decode(a.as_bytes()).unwrap().len(),
            16
        );
        assert_ne!(a, b);
    }

    #[test]
    fn only_connect_with_the_websocket_protocol_over_http2_is_a_websocket() {
        let connect = |protocol: Option<&'static str>| {
            let mut request = Request::connect("https://app.example/chat")
                .version(Version::HTTP_2)
                .body(())
                .unwrap();
            if let Some(protocol) = protocol {
                request
                    .extensions_mut()
                    .insert(hyper::ext::Protocol::from_static(protocol));
            }
            request
        };
        assert!(is_extended_websocket(&connect(Some("websocket"))));
        assert!(!is_extended_websocket(&connect(Some("connect-udp"))));
        assert!(!is_extended_websocket(&connect(None)));
    }
}
