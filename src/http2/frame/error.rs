//! How a frame breaks the rules (RFC 9113 §5.4): which rule ([`Violation`]), whether the connection or only one
//! stream must end ([`FrameError`]), and the §7 error code the GOAWAY or RST_STREAM carries ([`ErrorCode`]).

use super::{kind, Headers};

/// An error code of RST_STREAM and GOAWAY (§7), with its wire value. A peer may send codes this list does not
/// name: they are kept as [`ErrorCode::Unknown`] (§7: "MUST NOT trigger any special behavior").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    NoError,
    ProtocolError,
    InternalError,
    FlowControlError,
    SettingsTimeout,
    StreamClosed,
    FrameSizeError,
    RefusedStream,
    Cancel,
    CompressionError,
    ConnectError,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
    /// A value §7 does not define (never one it does).
    Unknown(u32),
}

/// The codes §7 defines, in wire order (0x0 to 0xd): a value indexes it.
const KNOWN: [ErrorCode; 14] = [
    ErrorCode::NoError,
    ErrorCode::ProtocolError,
    ErrorCode::InternalError,
    ErrorCode::FlowControlError,
    ErrorCode::SettingsTimeout,
    ErrorCode::StreamClosed,
    ErrorCode::FrameSizeError,
    ErrorCode::RefusedStream,
    ErrorCode::Cancel,
    ErrorCode::CompressionError,
    ErrorCode::ConnectError,
    ErrorCode::EnhanceYourCalm,
    ErrorCode::InadequateSecurity,
    ErrorCode::Http11Required,
];

impl ErrorCode {
    /// The code as written on the wire.
    pub(crate) fn wire(self) -> u32 {
        match self {
            ErrorCode::NoError => 0x0,
            ErrorCode::ProtocolError => 0x1,
            ErrorCode::InternalError => 0x2,
            ErrorCode::FlowControlError => 0x3,
            ErrorCode::SettingsTimeout => 0x4,
            ErrorCode::StreamClosed => 0x5,
            ErrorCode::FrameSizeError => 0x6,
            ErrorCode::RefusedStream => 0x7,
            ErrorCode::Cancel => 0x8,
            ErrorCode::CompressionError => 0x9,
            ErrorCode::ConnectError => 0xa,
            ErrorCode::EnhanceYourCalm => 0xb,
            ErrorCode::InadequateSecurity => 0xc,
            ErrorCode::Http11Required => 0xd,
            ErrorCode::Unknown(value) => value,
        }
    }
}

impl From<u32> for ErrorCode {
    fn from(value: u32) -> Self {
        KNOWN
            .get(value as usize)
            .copied()
            .unwrap_or(ErrorCode::Unknown(value))
    }
}

/// The rule a frame broke, for the error code and for the GOAWAY's debug data and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    #[error("the connection preface is wrong (RFC 9113 §3.4)")]
    Preface,
    #[error("a frame of {len} bytes is over SETTINGS_MAX_FRAME_SIZE {max} (RFC 9113 §4.2)")]
    TooLarge { len: u32, max: u32 },
    #[error("a {} frame cannot be {len} bytes long (RFC 9113 §6)", kind_name(*kind))]
    BadLength { kind: u8, len: u32 },
    #[error("a {} frame is too short for its padding or priority fields (RFC 9113 §6.1, §6.2)", kind_name(*kind))]
    MissingFields { kind: u8 },
    #[error("a SETTINGS acknowledgement has a payload (RFC 9113 §6.5)")]
    AckWithPayload,
    #[error("a {} frame on stream 0, which it never belongs to (RFC 9113 §6)", kind_name(*kind))]
    StreamZero { kind: u8 },
    #[error("a {} frame on a stream, though it belongs to stream 0 (RFC 9113 §6)", kind_name(*kind))]
    NotStreamZero { kind: u8 },
    #[error("a frame's padding is as long as its payload or longer (RFC 9113 §6.1, §6.2)")]
    PaddingTooLong,
    #[error("a stream depends on itself (RFC 9113 §5.3.1)")]
    SelfDependency,
    #[error("a WINDOW_UPDATE with an increment of 0 (RFC 9113 §6.9)")]
    ZeroIncrement,
    #[error("SETTINGS_INITIAL_WINDOW_SIZE {0} is over 2^31-1 (RFC 9113 §6.5.2)")]
    WindowTooLarge(u32),
    #[error("SETTINGS parameter {id} cannot be {value} (RFC 9113 §6.5.2, RFC 8441 §3)")]
    SettingValue { id: u16, value: u32 },
    #[error("SETTINGS_ENABLE_CONNECT_PROTOCOL went back from 1 to 0 (RFC 8441 §3)")]
    ConnectProtocolWithdrawn,
}

impl Violation {
    /// The error code §5.4 and §6 give the rule.
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            Violation::TooLarge { .. }
            | Violation::BadLength { .. }
            | Violation::MissingFields { .. }
            | Violation::AckWithPayload => ErrorCode::FrameSizeError,
            Violation::WindowTooLarge(_) => ErrorCode::FlowControlError,
            Violation::Preface
            | Violation::StreamZero { .. }
            | Violation::NotStreamZero { .. }
            | Violation::PaddingTooLong
            | Violation::SelfDependency
            | Violation::ZeroIncrement
            | Violation::SettingValue { .. }
            | Violation::ConnectProtocolWithdrawn => ErrorCode::ProtocolError,
        }
    }
}

/// A frame that breaks a rule of RFC 9113. A connection error ends the connection (GOAWAY with the code, §5.4.1);
/// a stream error resets one stream (RST_STREAM, §5.4.2) and the connection goes on: the frame's bytes have then
/// been taken off the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("HTTP/2 connection error: {0}")]
    Connection(Violation),
    #[error("HTTP/2 error on stream {stream}: {violation}")]
    Stream {
        stream: u32,
        violation: Violation,
        /// A HEADERS frame's header block, which the connection must still decode before it resets the stream:
        /// the HPACK state is shared by every stream (§4.3).
        headers: Option<Headers>,
    },
}

impl FrameError {
    /// The code the GOAWAY or RST_STREAM carries.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            FrameError::Connection(violation) | FrameError::Stream { violation, .. } => {
                violation.code()
            }
        }
    }
}

/// A frame that ends the connection.
pub(super) fn connection(violation: Violation) -> FrameError {
    FrameError::Connection(violation)
}

/// A frame that ends its stream only.
pub(super) fn stream(stream: u32, violation: Violation) -> FrameError {
    FrameError::Stream {
        stream,
        violation,
        headers: None,
    }
}

/// A frame type's name in RFC 9113, for messages.
fn kind_name(kind: u8) -> &'static str {
    match kind {
        kind::DATA => "DATA",
        kind::HEADERS => "HEADERS",
        kind::PRIORITY => "PRIORITY",
        kind::RST_STREAM => "RST_STREAM",
        kind::SETTINGS => "SETTINGS",
        kind::PUSH_PROMISE => "PUSH_PROMISE",
        kind::PING => "PING",
        kind::GOAWAY => "GOAWAY",
        kind::WINDOW_UPDATE => "WINDOW_UPDATE",
        kind::CONTINUATION => "CONTINUATION",
        _ => "unknown",
    }
}
