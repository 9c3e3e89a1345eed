//! Every way a header block is refused, each with its own error; the header-list limit, which still updates the
//! table; and the size-update rules of §4.2.

use bytes::BytesMut;

use super::super::huffman::{self, HuffmanError};
use super::{decode, decoder, hex, pairs, table};
use crate::http2::hpack::decoder::DecodeError;
use crate::http2::hpack::Decoder;

fn refusal(block: &str) -> DecodeError {
    decode(&mut decoder(4096), &hex(block)).unwrap_err()
}

#[test]
fn index_0_is_refused() {
    assert_eq!(refusal("80"), DecodeError::InvalidIndex(0));
}

#[test]
fn an_index_past_the_tables_is_refused() {
    // 62 with an empty dynamic table, as a field and as a literal's name.
    assert_eq!(refusal("be"), DecodeError::InvalidIndex(62));
    assert_eq!(refusal("7e 01 61"), DecodeError::InvalidIndex(62));
    // One past the newest entry once the table holds one.
    let mut decoder = decoder(4096);
    decode(&mut decoder, &hex("4001 61 0162")).unwrap();
    assert_eq!(
        decode(&mut decoder, &hex("be")).unwrap(),
        pairs(&[("a", "b")])
    );
    assert_eq!(
        decode(&mut decoder, &hex("bf")),
        Err(DecodeError::InvalidIndex(63))
    );
}

#[test]
fn a_size_update_after_a_field_is_refused() {
    assert_eq!(refusal("82 20"), DecodeError::SizeUpdateNotAtStart);
}

#[test]
fn a_size_update_above_our_setting_is_refused() {
    // 4097 = 31 + 4066.
    let expected = DecodeError::SizeUpdateTooLarge {
        size: 4097,
        max: 4096,
    };
    assert_eq!(refusal("3fe2 1f"), expected);
}

#[test]
fn size_updates_at_the_start_evict_and_two_may_come_together() {
    let mut decoder = decoder(4096);
    decode(&mut decoder, &hex("4001 61 0162")).unwrap();
    // 0 (the table emptied), then 4096 again, then a field.
    assert_eq!(
        decode(&mut decoder, &hex("20 3fe1 1f 82")).unwrap(),
        pairs(&[(":method", "GET")])
    );
    assert_eq!(table(&decoder), (vec![], 0));
    assert_eq!(
        decode(&mut decoder, &hex("be")),
        Err(DecodeError::InvalidIndex(62))
    );
}

#[test]
fn after_our_setting_falls_the_next_block_must_open_with_a_size_update() {
    let mut decoder = decoder(4096);
    decode(&mut decoder, &hex("4001 61 0162")).unwrap();
    decoder.set_max_table_size(100);
    assert_eq!(
        decode(&mut decoder, &hex("82")),
        Err(DecodeError::SizeUpdateMissing { max: 100 })
    );
    let mut decoder = Decoder::new(4096, usize::MAX);
    decoder.set_max_table_size(100);
    assert_eq!(
        decode(&mut decoder, &hex("3f45 82")).unwrap(),
        pairs(&[(":method", "GET")])
    );
    // Once done, later blocks need none; and a setting that grows needs none either.
    assert_eq!(
        decode(&mut decoder, &hex("82")).unwrap(),
        pairs(&[(":method", "GET")])
    );
    decoder.set_max_table_size(8192);
    assert_eq!(
        decode(&mut decoder, &hex("82")).unwrap(),
        pairs(&[(":method", "GET")])
    );
}

#[test]
fn a_truncated_integer_is_refused() {
    assert_eq!(refusal("ff"), DecodeError::TruncatedInteger);
    assert_eq!(refusal("ff 80"), DecodeError::TruncatedInteger);
    assert_eq!(refusal("3f"), DecodeError::TruncatedInteger);
}

#[test]
fn an_integer_over_2_to_the_32_or_too_long_is_refused() {
    // Five continuation bytes worth more than 2^32.
    assert_eq!(refusal("ff ffff ffff 7f"), DecodeError::IntegerOverflow);
    // A sixth continuation byte, even of zeros.
    assert_eq!(refusal("ff 8080 8080 8000"), DecodeError::IntegerOverflow);
    // A string length of 2^32 + 1: over the limit before the bytes are looked for.
    assert_eq!(
        refusal("40 7f 82 80 80 80 10"),
        DecodeError::IntegerOverflow
    );
}

#[test]
fn a_truncated_string_is_refused() {
    assert_eq!(refusal("40"), DecodeError::TruncatedString);
    assert_eq!(refusal("40 05 6162"), DecodeError::TruncatedString);
    assert_eq!(refusal("40 01 61"), DecodeError::TruncatedString);
    assert_eq!(refusal("41 85 ff"), DecodeError::TruncatedString);
}

#[test]
fn bad_huffman_padding_is_refused() {
    // '0' (00000) then three zero bits: padding must be ones.
    assert_eq!(
        refusal("00 81 00 0161"),
        DecodeError::Huffman(HuffmanError::Padding)
    );
    // 'a' (00011) then 11 one bits: padding must be under 8 bits.
    assert_eq!(
        refusal("41 82 1fff"),
        DecodeError::Huffman(HuffmanError::Padding)
    );
}

#[test]
fn eos_in_a_string_is_refused() {
    assert_eq!(
        refusal("41 84 ffff ffff"),
        DecodeError::Huffman(HuffmanError::Eos)
    );
}

#[test]
fn every_byte_round_trips_through_huffman_and_padding_of_up_to_7_ones_is_accepted() {
    let all: Vec<u8> = (0..=255).collect();
    let mut coded = BytesMut::new();
    huffman::encode(&all, &mut coded);
    let mut back = BytesMut::new();
    huffman::decode(&coded, &mut back).unwrap();
    assert_eq!(&back[..], &all[..]);
    // 'a' (00011) + 111: three bits of padding.
    let mut back = BytesMut::new();
    huffman::decode(&[0x1f], &mut back).unwrap();
    assert_eq!(&back[..], b"a");
}

#[test]
fn a_header_list_over_the_limit_is_refused_but_the_table_is_still_updated() {
    // C.3.1's list is 180 bytes (42 + 43 + 38 + 57): the first two fields fit in 100, the rest do not.
    let mut decoder = Decoder::new(4096, 100);
    let mut seen = Vec::new();
    let first = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
    let error = decoder
        .decode(&first, |field| seen.push(super::text(&field)))
        .unwrap_err();
    assert_eq!(
        error,
        DecodeError::HeaderListTooLarge {
            size: 180,
            max: 100
        }
    );
    assert!(error.is_header_list_too_large());
    assert_eq!(seen, pairs(&[(":method", "GET"), (":scheme", "http")]));
    assert_eq!(
        table(&decoder),
        (pairs(&[(":authority", "www.example.com")]), 57)
    );
    // The next block refers to the entry the refused one added: the decoder stayed in step.
    let mut seen = Vec::new();
    let small = hex("be");
    decoder
        .decode(&small, |field| seen.push(super::text(&field)))
        .unwrap();
    assert_eq!(seen, pairs(&[(":authority", "www.example.com")]));
}

#[test]
fn a_field_larger_than_the_table_empties_it() {
    let mut decoder = decoder(64);
    decode(&mut decoder, &hex("4001 61 0162")).unwrap();
    assert_eq!(table(&decoder).1, 34);
    // 1 + 40 + 32 = 73 > 64.
    let block = format!("4001 61 28 {}", "62".repeat(40));
    assert_eq!(decode(&mut decoder, &hex(&block)).unwrap().len(), 1);
    assert_eq!(table(&decoder), (vec![], 0));
}

#[test]
fn errors_say_what_was_wrong() {
    let error = DecodeError::HeaderListTooLarge {
        size: 180,
        max: 100,
    };
    assert_eq!(
        error.to_string(),
        "a header list of 180 bytes, over the 100 SETTINGS_MAX_HEADER_LIST_SIZE allows"
    );
    assert!(!DecodeError::InvalidIndex(0).is_header_list_too_large());
    assert!(DecodeError::Huffman(HuffmanError::Eos)
        .to_string()
        .contains("EOS"));
}
