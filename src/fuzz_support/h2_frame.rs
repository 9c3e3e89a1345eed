//! HTTP/2 frames (`http2::frame`) for the `h2_frame` fuzz target: read as elbe's server reads them, handed back as
//! plain data, and written back as elbe writes each type.

use bytes::{Bytes, BytesMut};

use crate::http2::frame::{self, Frame, FrameError, Settings, SettingsUpdate};

/// One frame as `http2::frame::read_frame` read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Frame {
    Data {
        stream: u32,
        end_stream: bool,
        data: Bytes,
        /// The data and the padding removed from it.
        flow_controlled: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        fragment: Bytes,
    },
    Priority {
        stream: u32,
    },
    RstStream {
        stream: u32,
        code: u32,
    },
    /// (id, value), the last value of each id, in id order.
    Settings(Vec<(u16, u32)>),
    SettingsAck,
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
        debug: Bytes,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        fragment: Bytes,
    },
    Unknown {
        kind: u8,
        stream: u32,
    },
}

/// A refusal: which stream it resets (`None`: the connection ends), the RFC 9113 §7 code, the rule's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Error {
    pub stream: Option<u32>,
    pub code: u32,
    pub reason: String,
    /// A HEADERS frame's block came with the stream error, for the connection to decode.
    pub with_headers: bool,
}

impl From<FrameError> for H2Error {
    fn from(error: FrameError) -> Self {
        let (stream, with_headers) = match &error {
            FrameError::Connection(_) => (None, false),
            FrameError::Stream {
                stream, headers, ..
            } => (Some(*stream), headers.is_some()),
        };
        H2Error {
            stream,
            code: error.code().wire(),
            reason: error.to_string(),
            with_headers,
        }
    }
}

/// Whether `bytes` start with the connection preface (`http2::frame::check_preface`).
pub fn check_h2_preface(bytes: &[u8]) -> Result<bool, H2Error> {
    Ok(frame::check_preface(bytes)?)
}

/// The length of the client preface.
pub const H2_PREFACE_LEN: usize = frame::PREFACE.len();

/// Takes the next frame off `buf` (`http2::frame::read_frame`): `Ok(None)` while it is not all there.
pub fn read_h2_frame(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<H2Frame>, H2Error> {
    Ok(frame::read_frame(buf, max_frame_size)?.map(plain))
}

fn plain(frame: Frame) -> H2Frame {
    match frame {
        Frame::Data(data) => H2Frame::Data {
            stream: data.stream,
            end_stream: data.end_stream,
            flow_controlled: data.flow_controlled_len(),
            data: data.data,
        },
        Frame::Headers(h) => H2Frame::Headers {
            stream: h.stream,
            end_stream: h.end_stream,
            end_headers: h.end_headers,
            fragment: h.fragment,
        },
        Frame::Priority { stream } => H2Frame::Priority { stream },
        Frame::RstStream { stream, code } => H2Frame::RstStream {
            stream,
            code: code.wire(),
        },
        Frame::Settings(update) => H2Frame::Settings(update.pairs().collect()),
        Frame::SettingsAck => H2Frame::SettingsAck,
        Frame::PushPromise { stream } => H2Frame::PushPromise { stream },
        Frame::Ping { ack, payload } => H2Frame::Ping { ack, payload },
        Frame::GoAway {
            last_stream,
            code,
            debug,
        } => H2Frame::GoAway {
            last_stream,
            code: code.wire(),
            debug,
        },
        Frame::WindowUpdate { stream, increment } => H2Frame::WindowUpdate { stream, increment },
        Frame::Continuation(c) => H2Frame::Continuation {
            stream: c.stream,
            end_headers: c.end_headers,
            fragment: c.fragment,
        },
        Frame::Unknown { kind, stream } => H2Frame::Unknown { kind, stream },
    }
}

/// The bytes elbe writes for `frame` (`http2::frame::write_*`): a header block split at `max_frame_size` into
/// HEADERS and CONTINUATION frames, DATA without padding, a PING as its acknowledgement. `None` for what elbe
/// never sends (PRIORITY, PUSH_PROMISE, unknown types, a header block's pieces) and for SETTINGS values out of
/// range.
pub fn write_h2_frame(frame: &H2Frame, max_frame_size: u32) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match frame {
        H2Frame::Data {
            stream,
            end_stream,
            data,
            ..
        } => frame::write_data(&mut buf, *stream, data, *end_stream),
        H2Frame::Headers {
            stream,
            end_stream,
            end_headers: true,
            fragment,
        } => frame::write_headers(&mut buf, *stream, fragment, *end_stream, max_frame_size),
        H2Frame::RstStream { stream, code } => {
            frame::write_rst_stream(&mut buf, *stream, (*code).into());
        }
        H2Frame::Settings(pairs) => frame::write_settings(&mut buf, &update(pairs).ok()?),
        H2Frame::SettingsAck => frame::write_settings_ack(&mut buf),
        H2Frame::Ping { payload, .. } => frame::write_ping_ack(&mut buf, *payload),
        H2Frame::GoAway {
            last_stream,
            code,
            debug,
        } => frame::write_goaway(&mut buf, *last_stream, (*code).into(), debug),
        H2Frame::WindowUpdate { stream, increment } => {
            frame::write_window_update(&mut buf, *stream, *increment);
        }
        _ => return None,
    }
    Some(buf)
}

/// The SETTINGS frame elbe would announce after applying `pairs` to the RFC's defaults (`Settings::apply`, then
/// `Settings::write`), or the refusal.
pub fn h2_settings_after(pairs: &[(u16, u32)]) -> Result<Vec<u8>, H2Error> {
    let mut settings = Settings::default();
    settings.apply(&update(pairs)?)?;
    let mut buf = Vec::new();
    settings.write(&mut buf);
    Ok(buf)
}

fn update(pairs: &[(u16, u32)]) -> Result<SettingsUpdate, FrameError> {
    let mut update = SettingsUpdate::default();
    for &(id, value) in pairs {
        update.record(id, value)?;
    }
    Ok(update)
}
