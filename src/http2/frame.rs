//! HTTP/2 frames (RFC 9113 §4, §6): taking them off the front of what a client sent, and writing elbe's. HTTP/2
//! is elbe's departure from ELB Classic, whose front end spoke HTTP/1.x only (ELB-SPEC §1.1).
//!
//! Reading ([`read_frame`]) checks every rule that needs no connection state: the length against the
//! SETTINGS_MAX_FRAME_SIZE elbe announced (from the 9-byte header alone, before the payload is waited for), the
//! fixed lengths of each type, which types belong on stream 0 and which never do, padding, a stream depending on
//! itself, SETTINGS values (§6.5.2) and zero WINDOW_UPDATE increments. What needs the connection's state (stream
//! states, CONTINUATION sequences, flow-control windows) is the connection's to check. Each refusal is a
//! [`FrameError`]: a connection error or a stream error (§5.4), with its §7 error code.
//!
//! The trade-off: DATA payloads and header-block fragments are [`Bytes`] split off the read buffer, so a frame
//! costs no copy and no allocation, and the buffer's memory stays alive until the last of them is dropped (the
//! connection's next read then grows a fresh one). Everything else is parsed in place.
//!
//! Writing: each frame elbe sends has a function that appends it to a [`bytes::BufMut`] (`BytesMut` or
//! `Vec<u8>`); a DATA frame's header can be written alone so a body chunk goes out with `writev`, uncopied.

mod error;
mod read;
mod settings;
mod write;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub(crate) use error::{ErrorCode, FrameError, Violation};
pub(crate) use read::{check_preface, read_frame};
pub(crate) use settings::{Settings, SettingsUpdate};
pub(crate) use write::{
    write_data, write_data_header, write_goaway, write_headers, write_ping_ack, write_rst_stream,
    write_settings, write_settings_ack, write_window_update,
};

/// What a client sends first (§3.4), before its SETTINGS frame.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Every frame starts with this many bytes: length (24 bits), type, flags, stream id (§4.1).
pub(crate) const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE until a SETTINGS frame says otherwise, and the least it may be (§6.5.2).
pub(crate) const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE may be: what 24 bits hold (§6.5.2).
pub(crate) const MAX_FRAME_SIZE_LIMIT: u32 = 16_777_215;
/// The largest flow-control window, and SETTINGS_INITIAL_WINDOW_SIZE (§6.9.1).
pub(crate) const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// Frame type codes (§6, §11.2).
mod kind {
    pub(super) const DATA: u8 = 0x0;
    pub(super) const HEADERS: u8 = 0x1;
    pub(super) const PRIORITY: u8 = 0x2;
    pub(super) const RST_STREAM: u8 = 0x3;
    pub(super) const SETTINGS: u8 = 0x4;
    pub(super) const PUSH_PROMISE: u8 = 0x5;
    pub(super) const PING: u8 = 0x6;
    pub(super) const GOAWAY: u8 = 0x7;
    pub(super) const WINDOW_UPDATE: u8 = 0x8;
    pub(super) const CONTINUATION: u8 = 0x9;
}

/// Flag bits (§6); a flag a type does not define is ignored (§4.1).
mod flag {
    pub(super) const END_STREAM: u8 = 0x1;
    pub(super) const ACK: u8 = 0x1;
    pub(super) const END_HEADERS: u8 = 0x4;
    pub(super) const PADDED: u8 = 0x8;
    pub(super) const PRIORITY: u8 = 0x20;
}

/// One frame as a client sent it, checked as far as it can be without the connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Data(Data),
    Headers(Headers),
    /// Priority signals are deprecated (§5.3.2) and ignored; the frame is checked, and its fields dropped.
    Priority {
        stream: u32,
    },
    RstStream {
        stream: u32,
        code: ErrorCode,
    },
    /// The parameters of a SETTINGS frame, to apply and then acknowledge (§6.5.3).
    Settings(SettingsUpdate),
    /// The peer's acknowledgement of our SETTINGS.
    SettingsAck,
    /// A client must not push (§8.4): the connection answers PROTOCOL_ERROR. Its fields are not read.
    PushPromise {
        stream: u32,
    },
    /// `ack` false: the peer asks for an answer carrying `payload` (§6.7).
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: Bytes,
    },
    /// Stream 0 is the connection's window.
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation(Continuation),
    /// A type RFC 9113 does not define: ignored (§4.1, §5.5), but it still counts as a frame (a header block may
    /// not be interrupted by one, §6.10).
    Unknown {
        kind: u8,
        stream: u32,
    },
}

/// A DATA frame (§6.1), its padding removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Data {
    pub(crate) stream: u32,
    pub(crate) end_stream: bool,
    pub(crate) data: Bytes,
    /// Bytes of padding and its length octet: they count against flow control too (§6.9.1).
    pub(crate) padding: u32,
}

impl Data {
    /// What the frame takes from the stream's and the connection's windows: its whole payload (§6.9.1).
    pub(crate) fn flow_controlled_len(&self) -> u32 {
        self.data.len() as u32 + self.padding
    }
}

/// A HEADERS frame (§6.2): the start of a header block, padding and priority fields removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Headers {
    pub(crate) stream: u32,
    pub(crate) end_stream: bool,
    /// False: CONTINUATION frames on the same stream carry the rest of the block, and nothing else may come
    /// between them (§6.10).
    pub(crate) end_headers: bool,
    pub(crate) fragment: Bytes,
}

/// A CONTINUATION frame (§6.10): more of a header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Continuation {
    pub(crate) stream: u32,
    pub(crate) end_headers: bool,
    pub(crate) fragment: Bytes,
}
