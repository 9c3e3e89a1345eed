//! HPACK (RFC 7541), HTTP/2's header compression: `decoder` for the request blocks a client sends, `encoder` for
//! the response blocks elbe sends, `table` (the static table and each direction's dynamic table), `huffman` (the
//! string code of Appendix B).
//!
//! One `Decoder` and one `Encoder` per connection, each owned by the connection's task: the blocks of a
//! connection must be decoded in the order they were sent, since each may change the table the next one reads.
//! The trade-off taken: fields are `Bytes` sharing the block or the table rather than borrowed slices, so a caller
//! keeps them without copying, at one reference count per string.

mod decoder;
mod encoder;
mod huffman;
mod table;
#[cfg(test)]
mod tests;

// `DecodeError` and `Field` are reached as `decoder::...` until the connection that names them exists.
pub(crate) use decoder::{Decoder, Field};
pub(crate) use encoder::Encoder;
pub(crate) use table::DEFAULT_TABLE_SIZE;
