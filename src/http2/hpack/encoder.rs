//! The HPACK encoder (RFC 7541 §6) for the responses elbe sends on one connection.
//!
//! Per field, cheapest first: a full static match is one index (`:status` 200, 204, 206, 304, 400, 404, 500); a
//! full match in the dynamic table too; otherwise a literal whose name is indexed when the static or dynamic table
//! has it, its value Huffman-coded when that is shorter. A proxy's responses on one connection repeat `server`,
//! `content-type`, `cache-control`, `date` (within a second) and more, so literals are added to the dynamic table
//! (incremental indexing) and the next response sends them as one byte each, except:
//! - values unique per response, which would only churn the table (`content-length`, `content-range`, `etag`,
//!   `last-modified`, `age`), and fields over half the table, which would evict everything else: literal without
//!   indexing;
//! - secrets (§7.1.3): `set-cookie` carries the session a client will send back as `cookie`, usually unique per
//!   response, and a value kept in a compression context is what CRIME-style probing guesses at, so it is
//!   never indexed (which also tells any intermediary re-encoding it not to index it); so are `authorization`,
//!   `proxy-authorization`, and `cookie` values under 20 bytes (short enough to guess).
//!
//! The dynamic table is looked up by a scan, newest first, comparing lengths before bytes: at 4096 bytes a table
//! holds a response's dozen or two fields (benches/hpack.rs measures it), and a scan of those costs less than
//! hashing every field. The static table is looked up by name length, then name (`table::static_name`).
//!
//! The table's limit is min(the peer's SETTINGS_HEADER_TABLE_SIZE, 4096). When it changes, the next block opens
//! with the size update(s) the peer's decoder needs (§4.2): the smallest size it went through, then the new one.

use bytes::{BufMut, BytesMut};

use super::huffman;
use super::table::{
    field_size, static_match, DynamicTable, StaticMatch, DEFAULT_TABLE_SIZE, FIRST_DYNAMIC,
};

/// Fields whose values differ from one response to the next: indexing them would only evict useful entries.
const UNIQUE_PER_RESPONSE: [&[u8]; 5] = [
    b"content-length",
    b"content-range",
    b"etag",
    b"last-modified",
    b"age",
];

/// `cookie` values shorter than this are never indexed (§7.1.3: short values are guessable).
const SHORT_COOKIE: usize = 20;

/// The encoder of one connection's header blocks to the peer.
#[derive(Debug)]
pub(crate) struct Encoder {
    table: DynamicTable,
    /// Size updates owed to the peer's decoder (§4.2): the smallest size since the last block, and the size now.
    pending_update: Option<(usize, usize)>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            pending_update: None,
        }
    }
}

/// How a literal is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    Incremental,
    Without,
    Never,
}

impl Literal {
    /// The representation's pattern bits and its index's prefix length (§6.2).
    fn pattern(self) -> (u8, u32) {
        match self {
            Literal::Incremental => (0x40, 6),
            Literal::Without => (0x00, 4),
            Literal::Never => (0x10, 4),
        }
    }
}

impl Encoder {
    /// The peer's SETTINGS_HEADER_TABLE_SIZE: the table is cut to min(`size`, 4096) now, and the next block
    /// tells the peer's decoder.
    pub(crate) fn set_peer_max_table_size(&mut self, size: usize) {
        let size = size.min(DEFAULT_TABLE_SIZE);
        if size == self.table.max_size() && self.pending_update.is_none() {
            return;
        }
        let lowest = self
            .pending_update
            .map_or(size, |(lowest, _)| lowest.min(size));
        self.pending_update = Some((lowest, size));
        self.table.set_max_size(size);
    }

    /// Encodes one header block of `fields` (names lowercase, pseudo-header fields first) onto `dst`.
    pub(crate) fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        dst: &mut BytesMut,
    ) {
        if let Some((lowest, size)) = self.pending_update.take() {
            if lowest < size {
                put_integer(dst, lowest, 5, 0x20);
            }
            put_integer(dst, size, 5, 0x20);
        }
        for (name, value) in fields {
            self.encode_field(name, value, dst);
        }
    }

    fn encode_field(&mut self, name: &[u8], value: &[u8], dst: &mut BytesMut) {
        debug_assert!(
            !name.iter().any(u8::is_ascii_uppercase),
            "HTTP/2 field names are lowercase"
        );
        let static_name = match static_match(name, value) {
            StaticMatch::Field(index) => return put_integer(dst, index, 7, 0x80),
            StaticMatch::Name(index) => Some(index),
            StaticMatch::None => None,
        };
        let literal = self.literal_kind(name, value);
        let (dynamic_field, dynamic_name) = self.find(name, value);
        if let (Some(position), false) = (dynamic_field, literal == Literal::Never) {
            return put_integer(dst, FIRST_DYNAMIC + position, 7, 0x80);
        }
        let name_index = static_name.or(dynamic_name.map(|position| FIRST_DYNAMIC + position));
        let (pattern, prefix_bits) = literal.pattern();
        match name_index {
            Some(index) => put_integer(dst, index, prefix_bits, pattern),
            None => {
                dst.put_u8(pattern);
                put_string(dst, name);
            }
        }
        put_string(dst, value);
        if literal == Literal::Incremental {
            self.table.insert(name, value);
        }
    }

    /// The module doc's rules for a field not fully matched in the static table.
    fn literal_kind(&self, name: &[u8], value: &[u8]) -> Literal {
        let secret = match name {
            b"set-cookie" | b"authorization" | b"proxy-authorization" => true,
            b"cookie" => value.len() < SHORT_COOKIE,
            _ => false,
        };
        if secret {
            Literal::Never
        } else if UNIQUE_PER_RESPONSE.contains(&name)
            || field_size(name, value) > self.table.max_size() / 2
        {
            Literal::Without
        } else {
            Literal::Incremental
        }
    }

    /// The newest dynamic entry that is `name: value`, and the newest named `name` (positions, 0 the newest).
    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let mut named = None;
        for (position, entry) in self.table.entries().enumerate() {
            if entry.name().len() != name.len() || entry.name() != name {
                continue;
            }
            if entry.value() == value {
                return (Some(position), named.or(Some(position)));
            }
            named.get_or_insert(position);
        }
        (None, named)
    }
}

/// An integer with a `prefix_bits`-bit prefix after `pattern`'s bits (§5.1).
pub(super) fn put_integer(dst: &mut BytesMut, value: usize, prefix_bits: u32, pattern: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        dst.put_u8(pattern | value as u8);
        return;
    }
    dst.put_u8(pattern | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        dst.put_u8((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    dst.put_u8(rest as u8);
}

/// A string literal (§5.2), Huffman-coded when that is shorter.
fn put_string(dst: &mut BytesMut, bytes: &[u8]) {
    let coded = huffman::encoded_len(bytes);
    if coded < bytes.len() {
        put_integer(dst, coded, 7, 0x80);
        huffman::encode(bytes, dst);
    } else {
        put_integer(dst, bytes.len(), 7, 0x00);
        dst.put_slice(bytes);
    }
}
