//! The codec's tests: `rfc` (every example of RFC 7541 Appendix C), `errors` (each way a block is refused, and the
//! header-list limit that is not a connection error), `round_trip` (random field lists through the encoder and a
//! decoder over many blocks, with table size changes).

mod errors;
mod rfc;
mod round_trip;

use bytes::{Bytes, BytesMut};

use super::decoder::{DecodeError, Field};
use super::{Decoder, Encoder, DEFAULT_TABLE_SIZE};

/// The bytes of an RFC hex dump ("8286 8441 ...").
fn hex(dump: &str) -> Bytes {
    let digits: Vec<u8> = dump.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(
        digits.len() % 2,
        0,
        "an odd number of hex digits in {dump:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("hex digits are ASCII");
            u8::from_str_radix(text, 16).expect("two hex digits")
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A decoder with the default table and no practical header-list limit.
fn decoder(max_table_size: usize) -> Decoder {
    Decoder::new(max_table_size, usize::MAX)
}

/// Decodes `block`, the fields as (name, value) text.
fn decode(decoder: &mut Decoder, block: &Bytes) -> Result<Vec<(String, String)>, DecodeError> {
    let mut fields = Vec::new();
    decoder.decode(block, |field| fields.push(text(&field)))?;
    Ok(fields)
}

fn text(field: &Field) -> (String, String) {
    (
        String::from_utf8_lossy(&field.name).into_owned(),
        String::from_utf8_lossy(&field.value).into_owned(),
    )
}

/// The decoder's dynamic table, newest first, and its size.
fn table(decoder: &Decoder) -> (Vec<(String, String)>, usize) {
    let entries = decoder
        .table()
        .entries()
        .map(|entry| {
            (
                String::from_utf8_lossy(entry.name()).into_owned(),
                String::from_utf8_lossy(entry.value()).into_owned(),
            )
        })
        .collect();
    (entries, decoder.table().size())
}

/// (name, value) pairs from string literals.
fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// One block of `fields` from `encoder`.
fn encode(encoder: &mut Encoder, fields: &[(&str, &str)]) -> Bytes {
    let mut out = BytesMut::new();
    encoder.encode(
        fields
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes())),
        &mut out,
    );
    out.freeze()
}

#[test]
fn the_default_table_size_is_http2s_initial_setting() {
    assert_eq!(DEFAULT_TABLE_SIZE, 4096);
}
