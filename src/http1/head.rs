//! Where a parsed head's parts lie in its bytes.
//!
//! `httparse` hands back slices of the buffer it parsed; elbe notes their positions ([`Span`]s) before freezing the
//! buffer into `Bytes`, so that header values can then share the head's bytes instead of being copied.

use bytes::Bytes;

/// Where a part of a head lies in its bytes: `start..end`. Offsets are `u32`s, half a `usize` pair, so the 24 spans
/// a head keeps on the stack are 384 bytes to zero and move per head rather than 768 (callgrind: copying the
/// request's and the response's `FieldSpans` out of `FieldSpans::new` was 1 % of a proxied request's
/// instructions). Heads are parsed within bounds far below 4 GiB, which [`Span::within`] relies on: a request's
/// `limits.max_request_header_bytes` (at most `config::defaults::MAX_REQUEST_HEADER_BYTES_LIMIT`) and a
/// response's `MAX_HEAD_BYTES`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span(u32, u32);

impl Span {
    /// The span of `part`, which must be a slice of `buf` within its first 4 GiB (a parsed head's part).
    pub(crate) fn within(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        let end = start + part.len();
        debug_assert!(
            end <= u32::MAX as usize,
            "a head's part lies within its first 4 GiB"
        );
        Span(start as u32, end as u32)
    }

    pub(crate) fn start(self) -> usize {
        self.0 as usize
    }

    pub(crate) fn end(self) -> usize {
        self.1 as usize
    }

    /// `start..end`, to index the head with.
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start()..self.end()
    }

    /// This part of `head`, sharing its bytes.
    pub(crate) fn of(self, head: &Bytes) -> Bytes {
        head.slice(self.range())
    }
}

/// The (name, value) spans of the header lines httparse found in a buffer: taken before the buffer is frozen into
/// `Bytes`, so that header values can share the head's bytes instead of being copied. A head rarely has more than
/// two dozen lines; those stay on the stack.
pub(crate) struct FieldSpans {
    few: [(Span, Span); 24],
    many: Vec<(Span, Span)>,
    len: usize,
}

impl FieldSpans {
    pub(crate) fn new(buf: &[u8], headers: &[httparse::Header<'_>]) -> Self {
        let at = |header: &httparse::Header<'_>| {
            (
                Span::within(buf, header.name.as_bytes()),
                Span::within(buf, header.value),
            )
        };
        let mut spans = FieldSpans {
            few: [(Span(0, 0), Span(0, 0)); 24],
            many: Vec::new(),
            len: headers.len(),
        };
        if headers.len() <= spans.few.len() {
            for (field, header) in spans.few.iter_mut().zip(headers) {
                *field = at(header);
            }
        } else {
            spans.many = headers.iter().map(at).collect();
        }
        spans
    }

    pub(crate) fn as_slice(&self) -> &[(Span, Span)] {
        if self.len <= self.few.len() {
            &self.few[..self.len]
        } else {
            &self.many
        }
    }
}
