//! A response head as the client gets it: `:status` and the fields, HPACK-encoded (RFC 9113 §8.3.2).
//!
//! The fields that describe an HTTP/1 connection are left out (§8.2.2: `connection`, `keep-alive`,
//! `proxy-connection`, `transfer-encoding`, `upgrade`): an instance speaks HTTP/1.1 to elbe and its
//! `Connection: close` or chunked framing are about that connection, not the client's. An instance's fields come
//! as the header lines it sent ([`RawHead`]: no map is built for them), their names lowercased here (§8.2.1);
//! the fields elbe's layers add come in the response's map, whose names are lowercase already.

use bytes::BytesMut;
use http::{HeaderMap, StatusCode};

use super::request::is_connection_field as is_connection_specific;
use crate::data_plane::back_end::http1::RawHead;
use crate::http2::hpack::Encoder;

/// Encodes `:status`, the instance's header lines (`raw`), then `headers`, onto `block`. `name` is room for a
/// lowercased name.
pub(crate) fn encode_head(
    encoder: &mut Encoder,
    status: StatusCode,
    raw: Option<&RawHead>,
    headers: &HeaderMap,
    block: &mut BytesMut,
    name: &mut Vec<u8>,
) {
    encoder.encode([(&b":status"[..], status.as_str().as_bytes())], block);
    if let Some(raw) = raw {
        for (field, value) in raw.fields() {
            name.clear();
            name.extend_from_slice(field);
            name.make_ascii_lowercase();
            if name.is_empty() || is_connection_specific(name) {
                continue;
            }
            encoder.encode([(&name[..], value)], block);
        }
    }
    let fields = headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
        .filter(|(name, _)| !is_connection_specific(name));
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
    fn the_status_comes_first_then_the_instances_lines_lowercased_then_the_map_without_connection_fields(
    ) {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("connection", "close".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.append("set-cookie", "a=1".parse().unwrap());
        headers.append("set-cookie", "b=2".parse().unwrap());
        let mut block = BytesMut::new();
        let raw = RawHead {
            reason: bytes::Bytes::new(),
            lines: bytes::Bytes::from_static(
                b"Content-Type: text/plain\r\nX-Mixed-Case:  v  \r\nConnection: close\r\n",
            ),
            has_length: false,
        };
        let mut name = Vec::new();
        let mut encoder = Encoder::default();
        let status = StatusCode::NOT_FOUND;
        encode_head(
            &mut encoder,
            status,
            Some(&raw),
            &headers,
            &mut block,
            &mut name,
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
                ("x-mixed-case", "v"),
                ("content-type", "text/plain"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
            ])
        );
    }
}
