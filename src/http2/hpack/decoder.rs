//! The HPACK decoder (RFC 7541 §3, §6): one header block in, its fields out to the caller's sink, the dynamic
//! table updated on the way.
//!
//! Fields come out as [`Bytes`], so the caller can build an `http::HeaderMap` (`HeaderValue::from_maybe_shared`)
//! or its own representation without a copy: a raw literal is a slice of the block, a static entry a `'static`
//! slice, a dynamic entry a slice of the entry's buffer, and Huffman-coded strings are decoded into a scratch
//! buffer the decoder keeps and splits (one allocation per kilobyte of decoded text, not per field).
//!
//! Errors: RFC 7541 §2.2 makes every decoding error a connection error (RFC 9113 §4.3: COMPRESSION_ERROR), so after
//! any `Err` but one the caller must close the connection: the table may be half-updated. The one exception is
//! [`DecodeError::HeaderListTooLarge`] (RFC 9113 §6.5.2, SETTINGS_MAX_HEADER_LIST_SIZE): the block is still decoded
//! to its end so the table stays in step with the peer's encoder, the fields past the limit are not handed to the
//! sink, and the error comes at the end; the connection may go on (431 or RST_STREAM for that stream).

use bytes::{Bytes, BytesMut};

use super::huffman::{self, HuffmanError};
use super::table::{field_size, DynamicTable, FIRST_DYNAMIC, STATIC};

/// The most continuation bytes an integer may have: 5 carry 35 bits, more than the 2^32 allowed.
const MAX_CONTINUATION_BYTES: usize = 5;
/// The largest integer accepted (an index, a length, a table size).
const MAX_INTEGER: u64 = 1 << 32;
/// The scratch buffer for Huffman-decoded strings grows by at least this much, so short strings share one
/// allocation.
const SCRATCH_CHUNK: usize = 1024;

/// One decoded field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: Bytes,
    pub(crate) value: Bytes,
    /// Sent "never indexed" (§6.2.3): a proxy re-encoding it must not index it either.
    pub(crate) sensitive: bool,
}

/// Why a header block is refused. All but `HeaderListTooLarge` are COMPRESSION_ERROR: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("index {0} is in neither the static nor the dynamic table (RFC 7541 §2.3.3)")]
    InvalidIndex(usize),
    #[error("an integer runs past the end of the header block")]
    TruncatedInteger,
    #[error(
        "an integer is over 2^32 or has more than {MAX_CONTINUATION_BYTES} continuation bytes"
    )]
    IntegerOverflow,
    #[error("a string literal runs past the end of the header block")]
    TruncatedString,
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
    #[error("a dynamic table size update after the block's first field (RFC 7541 §4.2)")]
    SizeUpdateNotAtStart,
    #[error("a dynamic table size update to {size} bytes, over the {max} our SETTINGS_HEADER_TABLE_SIZE allows")]
    SizeUpdateTooLarge { size: usize, max: usize },
    #[error("no dynamic table size update at the start of the block after our SETTINGS_HEADER_TABLE_SIZE fell to {max} (RFC 7541 §4.2)")]
    SizeUpdateMissing { max: usize },
    #[error("a header list of {size} bytes, over the {max} SETTINGS_MAX_HEADER_LIST_SIZE allows")]
    HeaderListTooLarge { size: usize, max: usize },
}

impl DecodeError {
    /// The header list was over the limit, but the block was decoded and the connection may go on.
    pub(crate) fn is_header_list_too_large(&self) -> bool {
        matches!(self, DecodeError::HeaderListTooLarge { .. })
    }
}

/// How a literal asks the decoder to treat the table (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexing {
    Incremental,
    Without,
    Never,
}

/// The decoder of one connection's header blocks from the peer.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: DynamicTable,
    /// The most a size update may ask for: our SETTINGS_HEADER_TABLE_SIZE.
    settings_max: usize,
    /// Our setting fell below the table's size: the next block must open with a size update (§4.2).
    update_required: bool,
    max_header_list_size: usize,
    scratch: BytesMut,
}

/// A read position in a header block.
struct Cursor<'a> {
    block: &'a Bytes,
    position: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.block.get(self.position).copied()
    }

    /// An integer with an `prefix_bits`-bit prefix (§5.1), the first byte's other bits ignored.
    fn integer(&mut self, prefix_bits: u32) -> Result<usize, DecodeError> {
        let mask = (1u8 << prefix_bits) - 1;
        let first = self.peek().ok_or(DecodeError::TruncatedInteger)? & mask;
        self.position += 1;
        if first < mask {
            return Ok(usize::from(first));
        }
        let mut value = u64::from(mask);
        for shift in (0..MAX_CONTINUATION_BYTES as u32).map(|k| 7 * k) {
            let byte = self.peek().ok_or(DecodeError::TruncatedInteger)?;
            self.position += 1;
            value += u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if value > MAX_INTEGER {
                    return Err(DecodeError::IntegerOverflow);
                }
                return usize::try_from(value).map_err(|_| DecodeError::IntegerOverflow);
            }
        }
        Err(DecodeError::IntegerOverflow)
    }

    /// The next `len` bytes' range, if the block has them.
    fn take(&mut self, len: usize) -> Option<std::ops::Range<usize>> {
        let end = self.position.checked_add(len)?;
        if end > self.block.len() {
            return None;
        }
        let range = self.position..end;
        self.position = end;
        Some(range)
    }
}

impl Decoder {
    /// A decoder for a connection whose SETTINGS_HEADER_TABLE_SIZE is `max_table_size` (4096 unless we send
    /// another) and whose SETTINGS_MAX_HEADER_LIST_SIZE is `max_header_list_size`.
    pub(crate) fn new(max_table_size: usize, max_header_list_size: usize) -> Self {
        Decoder {
            table: DynamicTable::new(max_table_size),
            settings_max: max_table_size,
            update_required: false,
            max_header_list_size,
            scratch: BytesMut::new(),
        }
    }

    /// Our SETTINGS_HEADER_TABLE_SIZE changed (when the peer acknowledged it). A size at or above the table's
    /// lets later updates grow it; a smaller one requires the next block to open with an update (§4.2), until
    /// which the table keeps its entries: the peer's encoder evicts them with that update.
    pub(crate) fn set_max_table_size(&mut self, max_table_size: usize) {
        self.settings_max = max_table_size;
        self.update_required = self.table.max_size() > max_table_size;
    }

    #[cfg(test)]
    pub(super) fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Decodes one whole header block (HEADERS and its CONTINUATIONs, concatenated), handing each field to `sink`
    /// in order. See the module's doc for what an `Err` means for the connection.
    pub(crate) fn decode(
        &mut self,
        block: &Bytes,
        mut sink: impl FnMut(Field),
    ) -> Result<(), DecodeError> {
        let mut cursor = Cursor { block, position: 0 };
        self.size_updates(&mut cursor)?;
        let mut list_size = 0usize;
        while let Some(first) = cursor.peek() {
            let field = match first {
                _ if first & 0x80 != 0 => self.indexed(&mut cursor)?,
                _ if first & 0x40 != 0 => self.literal(&mut cursor, 6, Indexing::Incremental)?,
                _ if first & 0x20 != 0 => return Err(DecodeError::SizeUpdateNotAtStart),
                _ if first & 0x10 != 0 => self.literal(&mut cursor, 4, Indexing::Never)?,
                _ => self.literal(&mut cursor, 4, Indexing::Without)?,
            };
            list_size = list_size.saturating_add(field_size(&field.name, &field.value));
            if list_size <= self.max_header_list_size {
                sink(field);
            }
        }
        if list_size > self.max_header_list_size {
            return Err(DecodeError::HeaderListTooLarge {
                size: list_size,
                max: self.max_header_list_size,
            });
        }
        Ok(())
    }

    /// The size updates a block may open with (§4.2: one, or two when the size went down and up again).
    fn size_updates(&mut self, cursor: &mut Cursor<'_>) -> Result<(), DecodeError> {
        let mut updated = false;
        while cursor.peek().is_some_and(|byte| byte & 0xe0 == 0x20) {
            let size = cursor.integer(5)?;
            if size > self.settings_max {
                return Err(DecodeError::SizeUpdateTooLarge {
                    size,
                    max: self.settings_max,
                });
            }
            self.table.set_max_size(size);
            updated = true;
        }
        if self.update_required && !updated {
            return Err(DecodeError::SizeUpdateMissing {
                max: self.settings_max,
            });
        }
        self.update_required = false;
        Ok(())
    }

    /// An indexed field (§6.1).
    fn indexed(&mut self, cursor: &mut Cursor<'_>) -> Result<Field, DecodeError> {
        let index = cursor.integer(7)?;
        let (name, value) = self.entry(index)?;
        Ok(Field {
            name,
            value,
            sensitive: false,
        })
    }

    /// A literal field (§6.2), its name indexed or literal.
    fn literal(
        &mut self,
        cursor: &mut Cursor<'_>,
        prefix_bits: u32,
        indexing: Indexing,
    ) -> Result<Field, DecodeError> {
        let index = cursor.integer(prefix_bits)?;
        let name = match index {
            0 => self.string(cursor)?,
            _ => self.entry(index)?.0,
        };
        let value = self.string(cursor)?;
        if indexing == Indexing::Incremental {
            self.table.insert(&name, &value);
        }
        Ok(Field {
            name,
            value,
            sensitive: indexing == Indexing::Never,
        })
    }

    /// The name and value at `index` of the static table (1 to 61) or the dynamic one (62 on).
    fn entry(&self, index: usize) -> Result<(Bytes, Bytes), DecodeError> {
        if let Some(&(name, value)) = index.checked_sub(1).and_then(|i| STATIC.get(i)) {
            return Ok((Bytes::from_static(name), Bytes::from_static(value)));
        }
        let entry = index
            .checked_sub(FIRST_DYNAMIC)
            .and_then(|position| self.table.get(position))
            .ok_or(DecodeError::InvalidIndex(index))?;
        Ok((entry.name_bytes(), entry.value_bytes()))
    }

    /// A string literal (§5.2): raw, a slice of the block; Huffman-coded, decoded into the scratch buffer.
    fn string(&mut self, cursor: &mut Cursor<'_>) -> Result<Bytes, DecodeError> {
        let huffman = cursor.peek().ok_or(DecodeError::TruncatedString)? & 0x80 != 0;
        let len = cursor.integer(7)?;
        let range = cursor.take(len).ok_or(DecodeError::TruncatedString)?;
        if !huffman {
            return Ok(cursor.block.slice(range));
        }
        // 5 bits is the shortest code: a string decodes to at most 8/5 of its length.
        let most = len + len / 2 + len / 8 + 1;
        if self.scratch.capacity() < most {
            self.scratch.reserve(most.max(SCRATCH_CHUNK));
        }
        huffman::decode(&cursor.block[range], &mut self.scratch)?;
        Ok(self.scratch.split().freeze())
    }
}
