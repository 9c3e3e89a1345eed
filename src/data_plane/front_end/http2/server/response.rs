//! A response head as the client gets it: `:status` and the fields, HPACK-encoded (RFC 9113 §8.3.2).
//!
//! The fields that describe an HTTP/1 connection are left out (§8.2.2: `connection`, `keep-alive`,
//! `proxy-connection`, `transfer-encoding`, `upgrade`): an instance speaks HTTP/1.1 to elbe and its
//! `Connection: close` or chunked framing are about that connection, not the client's. Names are lowercase
//! already: a `HeaderMap` keeps them so.

use bytes::BytesMut;
use http::{HeaderMap, StatusCode};

use crate::http2::hpack::Encoder;

/// Whether a response field is one §8.2.2 keeps out of HTTP/2.
fn is_connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

/// Encodes `:status` and `headers` onto `block`.
pub(crate) fn encode_head(
    encoder: &mut Encoder,
    status: StatusCode,
    headers: &HeaderMap,
    block: &mut BytesMut,
) {
    let status = status.as_str().as_bytes();
    let fields = std::iter::once((&b":status"[..], status)).chain(
        headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
            .filter(|(name, _)| !is_connection_specific(name)),
    );
    encoder.encode(fields, block);
}

/// Encodes trailers (no pseudo-header fields, §8.1).
pub(crate) fn encode_trailers(encoder: &mut Encoder, trailers: &HeaderMap, block: &mut BytesMut) {
    let fields = trailers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
        .filter(|(name, _)| !is_connection_specific(name));
    encoder.encode(fields, block);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::hpack::Decoder;

    fn decoded(block: BytesMut) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        Decoder::new(4096, 1 << 20)
            .decode(&block.freeze(), |field| {
                fields.push((
                    String::from_utf8_lossy(&field.name).into_owned(),
                    String::from_utf8_lossy(&field.value).into_owned(),
                ))
            })
            .unwrap();
        fields
    }

    #[test]
    fn the_status_comes_first_and_connection_fields_are_left_out() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("connection", "close".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.append("set-cookie", "a=1".parse().unwrap());
        headers.append("set-cookie", "b=2".parse().unwrap());
        let mut block = BytesMut::new();
        encode_head(
            &mut Encoder::default(),
            StatusCode::NOT_FOUND,
            &headers,
            &mut block,
        );
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            decoded(block),
            pairs(&[
                (":status", "404"),
                ("content-type", "text/plain"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
            ])
        );
    }
}
