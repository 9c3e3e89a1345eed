//! HPACK's two tables (RFC 7541 §2.3): the static table of Appendix A, and the dynamic table each side of a
//! connection keeps for the fields the other side's encoder asked it to remember.
//!
//! The dynamic table is a ring (`VecDeque`), newest first: index 62 is its front (§2.3.3). An entry costs its name,
//! its value and 32 bytes (§4.1); inserting one evicts from the back until it fits, and one larger than the whole
//! table empties it (§4.4). Each entry is one buffer (name then value), copied in when inserted: a slice of the
//! header block it came from would keep that whole block alive for as long as the entry lives.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

/// SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 §6.5.2), and the most elbe's encoder ever uses.
pub(crate) const DEFAULT_TABLE_SIZE: usize = 4096;

/// What a field costs in a table or in a header list (RFC 7541 §4.1, RFC 9113 §6.5.2): name, value and 32.
pub(super) const fn field_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + ENTRY_OVERHEAD
}

const ENTRY_OVERHEAD: usize = 32;

/// The first dynamic table index: after the static table's 61.
pub(super) const FIRST_DYNAMIC: usize = STATIC.len() + 1;

/// RFC 7541 Appendix A: the static table, index 1 first.
pub(super) const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),                   // 1
    (b":method", b"GET"),                   // 2
    (b":method", b"POST"),                  // 3
    (b":path", b"/"),                       // 4
    (b":path", b"/index.html"),             // 5
    (b":scheme", b"http"),                  // 6
    (b":scheme", b"https"),                 // 7
    (b":status", b"200"),                   // 8
    (b":status", b"204"),                   // 9
    (b":status", b"206"),                   // 10
    (b":status", b"304"),                   // 11
    (b":status", b"400"),                   // 12
    (b":status", b"404"),                   // 13
    (b":status", b"500"),                   // 14
    (b"accept-charset", b""),               // 15
    (b"accept-encoding", b"gzip, deflate"), // 16
    (b"accept-language", b""),              // 17
    (b"accept-ranges", b""),                // 18
    (b"accept", b""),                       // 19
    (b"access-control-allow-origin", b""),  // 20
    (b"age", b""),                          // 21
    (b"allow", b""),                        // 22
    (b"authorization", b""),                // 23
    (b"cache-control", b""),                // 24
    (b"content-disposition", b""),          // 25
    (b"content-encoding", b""),             // 26
    (b"content-language", b""),             // 27
    (b"content-length", b""),               // 28
    (b"content-location", b""),             // 29
    (b"content-range", b""),                // 30
    (b"content-type", b""),                 // 31
    (b"cookie", b""),                       // 32
    (b"date", b""),                         // 33
    (b"etag", b""),                         // 34
    (b"expect", b""),                       // 35
    (b"expires", b""),                      // 36
    (b"from", b""),                         // 37
    (b"host", b""),                         // 38
    (b"if-match", b""),                     // 39
    (b"if-modified-since", b""),            // 40
    (b"if-none-match", b""),                // 41
    (b"if-range", b""),                     // 42
    (b"if-unmodified-since", b""),          // 43
    (b"last-modified", b""),                // 44
    (b"link", b""),                         // 45
    (b"location", b""),                     // 46
    (b"max-forwards", b""),                 // 47
    (b"proxy-authenticate", b""),           // 48
    (b"proxy-authorization", b""),          // 49
    (b"range", b""),                        // 50
    (b"referer", b""),                      // 51
    (b"refresh", b""),                      // 52
    (b"retry-after", b""),                  // 53
    (b"server", b""),                       // 54
    (b"set-cookie", b""),                   // 55
    (b"strict-transport-security", b""),    // 56
    (b"transfer-encoding", b""),            // 57
    (b"user-agent", b""),                   // 58
    (b"vary", b""),                         // 59
    (b"via", b""),                          // 60
    (b"www-authenticate", b""),             // 61
];

/// The index of the first static entry named `name` (1-based), by the name's length, then its bytes: at most
/// six comparisons, not a scan of 61 entries.
pub(super) fn static_name(name: &[u8]) -> Option<usize> {
    let index = match name.len() {
        3 => match name {
            b"age" => 21,
            b"via" => 60,
            _ => return None,
        },
        4 => match name {
            b"date" => 33,
            b"etag" => 34,
            b"from" => 37,
            b"host" => 38,
            b"link" => 45,
            b"vary" => 59,
            _ => return None,
        },
        5 => match name {
            b":path" => 4,
            b"allow" => 22,
            b"range" => 50,
            _ => return None,
        },
        6 => match name {
            b"accept" => 19,
            b"cookie" => 32,
            b"expect" => 35,
            b"server" => 54,
            _ => return None,
        },
        7 => match name {
            b":method" => 2,
            b":scheme" => 6,
            b":status" => 8,
            b"expires" => 36,
            b"referer" => 51,
            b"refresh" => 52,
            _ => return None,
        },
        8 => match name {
            b"if-match" => 39,
            b"if-range" => 42,
            b"location" => 46,
            _ => return None,
        },
        10 => match name {
            b":authority" => 1,
            b"set-cookie" => 55,
            b"user-agent" => 58,
            _ => return None,
        },
        11 => match name {
            b"retry-after" => 53,
            _ => return None,
        },
        12 => match name {
            b"content-type" => 31,
            b"max-forwards" => 47,
            _ => return None,
        },
        13 => match name {
            b"accept-ranges" => 18,
            b"authorization" => 23,
            b"cache-control" => 24,
            b"content-range" => 30,
            b"if-none-match" => 41,
            b"last-modified" => 44,
            _ => return None,
        },
        14 => match name {
            b"accept-charset" => 15,
            b"content-length" => 28,
            _ => return None,
        },
        15 => match name {
            b"accept-encoding" => 16,
            b"accept-language" => 17,
            _ => return None,
        },
        16 => match name {
            b"content-encoding" => 26,
            b"content-language" => 27,
            b"content-location" => 29,
            b"www-authenticate" => 61,
            _ => return None,
        },
        17 => match name {
            b"if-modified-since" => 40,
            b"transfer-encoding" => 57,
            _ => return None,
        },
        18 => match name {
            b"proxy-authenticate" => 48,
            _ => return None,
        },
        19 => match name {
            b"content-disposition" => 25,
            b"if-unmodified-since" => 43,
            b"proxy-authorization" => 49,
            _ => return None,
        },
        25 => match name {
            b"strict-transport-security" => 56,
            _ => return None,
        },
        27 => match name {
            b"access-control-allow-origin" => 20,
            _ => return None,
        },
        _ => return None,
    };
    Some(index)
}

/// How `name: value` matches the static table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StaticMatch {
    /// Name and value: the field is one index.
    Field(usize),
    /// The name only (its first entry).
    Name(usize),
    None,
}

/// Looks `name: value` up in the static table. Entries that share a name are consecutive (`:status` has seven),
/// so a full match is looked for only from the name's first entry on.
pub(super) fn static_match(name: &[u8], value: &[u8]) -> StaticMatch {
    let Some(first) = static_name(name) else {
        return StaticMatch::None;
    };
    let same_name = STATIC[first - 1..]
        .iter()
        .take_while(|(entry_name, _)| *entry_name == name);
    for (offset, (_, entry_value)) in same_name.enumerate() {
        if *entry_value == value {
            return StaticMatch::Field(first + offset);
        }
    }
    StaticMatch::Name(first)
}

/// One dynamic table entry: its name and value in one buffer.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    bytes: Bytes,
    name_len: usize,
}

impl Entry {
    pub(super) fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }

    /// The name, sharing the entry's buffer.
    pub(super) fn name_bytes(&self) -> Bytes {
        self.bytes.slice(..self.name_len)
    }

    /// The value, sharing the entry's buffer.
    pub(super) fn value_bytes(&self) -> Bytes {
        self.bytes.slice(self.name_len..)
    }

    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table of one direction of a connection.
#[derive(Debug)]
pub(super) struct DynamicTable {
    /// Newest first.
    entries: VecDeque<Entry>,
    /// The sum of the entries' sizes.
    size: usize,
    /// The most `size` may be: the last size update's value.
    max_size: usize,
}

impl DynamicTable {
    pub(super) fn new(max_size: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// The entry at `position` (0 is the newest: index 62).
    pub(super) fn get(&self, position: usize) -> Option<&Entry> {
        self.entries.get(position)
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) fn max_size(&self) -> usize {
        self.max_size
    }

    /// A size update (§4.3): entries are evicted until the table fits.
    pub(super) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    /// Adds `name: value` as the newest entry, evicting the oldest until it fits (§4.4). The bytes are copied
    /// before any eviction, so a name taken from an entry this insertion evicts is still right.
    pub(super) fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = field_size(name, value);
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        let mut bytes = BytesMut::with_capacity(name.len() + value.len());
        bytes.put_slice(name);
        bytes.put_slice(value);
        self.evict_to(self.max_size - size);
        self.entries.push_front(Entry {
            bytes: bytes.freeze(),
            name_len: name.len(),
        });
        self.size += size;
    }

    fn evict_to(&mut self, room: usize) {
        while self.size > room {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.size();
        }
    }
}
