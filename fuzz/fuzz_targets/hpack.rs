//! HPACK (`http2::hpack`): the header blocks a client sends elbe's HTTP/2 front end, decoded in order on one
//! connection, with our SETTINGS_HEADER_TABLE_SIZE changing between them (`fuzz_support::hpack_blocks` says how
//! the bytes are laid out).
//!
//! Invariants:
//! - no input panics, and memory stays bounded (the table by its setting, at most 65,535 bytes here);
//! - every block that decodes, encoded again by elbe's encoder, decodes to the same fields with a second decoder
//!   kept across blocks (the encoder's indexing, Huffman and size updates keep both tables in step);
//! - the same bytes decode the same way twice (no hidden state outside the decoder).
#![no_main]

use elbe::fuzz_support::hpack_blocks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = hpack_blocks(data);
    if let Err(broken) = &first {
        panic!("{broken}");
    }
    assert_eq!(hpack_blocks(data), first, "the same blocks decoded differently");
});
