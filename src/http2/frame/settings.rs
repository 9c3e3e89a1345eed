//! SETTINGS parameters (RFC 9113 §6.5.2, and RFC 8441 §3's SETTINGS_ENABLE_CONNECT_PROTOCOL, by which elbe offers
//! WebSockets over HTTP/2): what one frame carried ([`SettingsUpdate`], checked as it is read) and what an endpoint
//! has in force ([`Settings`], starting from the RFC's defaults).
//!
//! A frame's parameters are kept as the last value given for each, not as a list: a frame costs no allocation, and
//! applying them in order (§6.5.3) ends in the same state.

use bytes::BufMut;

use super::error::connection;
use super::{FrameError, Violation, DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT, MAX_WINDOW_SIZE};

/// Parameter ids (§6.5.2, §11.3; RFC 8441 §9.1).
mod id {
    pub(super) const HEADER_TABLE_SIZE: u16 = 0x1;
    pub(super) const ENABLE_PUSH: u16 = 0x2;
    pub(super) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub(super) const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub(super) const MAX_FRAME_SIZE: u16 = 0x5;
    pub(super) const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub(super) const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// The parameters one SETTINGS frame carried (or one elbe sends): `None` for those it did not mention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SettingsUpdate {
    pub(crate) header_table_size: Option<u32>,
    pub(crate) enable_push: Option<bool>,
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) initial_window_size: Option<u32>,
    pub(crate) max_frame_size: Option<u32>,
    pub(crate) max_header_list_size: Option<u32>,
    pub(crate) enable_connect_protocol: Option<bool>,
}

impl SettingsUpdate {
    /// Takes one parameter as read from the wire, checked as §6.5.2 says (a later value for the same id replaces
    /// an earlier one). Unknown ids are ignored, as §6.5.2 requires.
    pub(crate) fn record(&mut self, id: u16, value: u32) -> Result<(), FrameError> {
        let out_of_range = || connection(Violation::SettingValue { id, value });
        match id {
            id::HEADER_TABLE_SIZE => self.header_table_size = Some(value),
            id::ENABLE_PUSH => self.enable_push = Some(flag(value).ok_or_else(out_of_range)?),
            id::MAX_CONCURRENT_STREAMS => self.max_concurrent_streams = Some(value),
            id::INITIAL_WINDOW_SIZE if value > MAX_WINDOW_SIZE => {
                return Err(connection(Violation::WindowTooLarge(value)));
            }
            id::INITIAL_WINDOW_SIZE => self.initial_window_size = Some(value),
            id::MAX_FRAME_SIZE
                if !(DEFAULT_MAX_FRAME_SIZE..=MAX_FRAME_SIZE_LIMIT).contains(&value) =>
            {
                return Err(out_of_range());
            }
            id::MAX_FRAME_SIZE => self.max_frame_size = Some(value),
            id::MAX_HEADER_LIST_SIZE => self.max_header_list_size = Some(value),
            id::ENABLE_CONNECT_PROTOCOL => {
                self.enable_connect_protocol = Some(flag(value).ok_or_else(out_of_range)?);
            }
            _ => {}
        }
        Ok(())
    }

    /// The parameters given, in id order, as (id, value) on the wire.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (u16, u32)> {
        [
            (id::HEADER_TABLE_SIZE, self.header_table_size),
            (id::ENABLE_PUSH, self.enable_push.map(u32::from)),
            (id::MAX_CONCURRENT_STREAMS, self.max_concurrent_streams),
            (id::INITIAL_WINDOW_SIZE, self.initial_window_size),
            (id::MAX_FRAME_SIZE, self.max_frame_size),
            (id::MAX_HEADER_LIST_SIZE, self.max_header_list_size),
            (
                id::ENABLE_CONNECT_PROTOCOL,
                self.enable_connect_protocol.map(u32::from),
            ),
        ]
        .into_iter()
        .filter_map(|(id, value)| Some((id, value?)))
    }
}

/// `ours` when it is not the default.
fn differs<T: PartialEq>(ours: T, default: T) -> Option<T> {
    (ours != default).then_some(ours)
}

/// A 0/1 parameter.
fn flag(value: u32) -> Option<bool> {
    match value {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// The parameters in force for one endpoint: the RFC's defaults (§6.5.2) until its SETTINGS say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) header_table_size: u32,
    pub(crate) enable_push: bool,
    /// `None`: no limit.
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) initial_window_size: u32,
    pub(crate) max_frame_size: u32,
    /// `None`: no limit.
    pub(crate) max_header_list_size: Option<u32>,
    /// Extended CONNECT (RFC 8441): elbe's own SETTINGS say 1, for WebSockets over HTTP/2.
    pub(crate) enable_connect_protocol: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_table_size: 4_096,
            enable_push: true,
            max_concurrent_streams: None,
            initial_window_size: 65_535,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: None,
            enable_connect_protocol: false,
        }
    }
}

impl Settings {
    /// Applies a SETTINGS frame the peer sent. Withdrawing extended CONNECT once offered is the one change that
    /// is refused (RFC 8441 §3); nothing is applied then.
    pub(crate) fn apply(&mut self, update: &SettingsUpdate) -> Result<(), FrameError> {
        if self.enable_connect_protocol && update.enable_connect_protocol == Some(false) {
            return Err(connection(Violation::ConnectProtocolWithdrawn));
        }
        let SettingsUpdate {
            header_table_size,
            enable_push,
            max_concurrent_streams,
            initial_window_size,
            max_frame_size,
            max_header_list_size,
            enable_connect_protocol,
        } = *update;
        self.header_table_size = header_table_size.unwrap_or(self.header_table_size);
        self.enable_push = enable_push.unwrap_or(self.enable_push);
        self.max_concurrent_streams = max_concurrent_streams.or(self.max_concurrent_streams);
        self.initial_window_size = initial_window_size.unwrap_or(self.initial_window_size);
        self.max_frame_size = max_frame_size.unwrap_or(self.max_frame_size);
        self.max_header_list_size = max_header_list_size.or(self.max_header_list_size);
        self.enable_connect_protocol =
            enable_connect_protocol.unwrap_or(self.enable_connect_protocol);
        Ok(())
    }

    /// What a first SETTINGS frame must say for the peer to hold these: every value that is not the default the
    /// peer starts from.
    pub(crate) fn changes(&self) -> SettingsUpdate {
        let default = Settings::default();
        SettingsUpdate {
            header_table_size: differs(self.header_table_size, default.header_table_size),
            enable_push: differs(self.enable_push, default.enable_push),
            max_concurrent_streams: self.max_concurrent_streams,
            initial_window_size: differs(self.initial_window_size, default.initial_window_size),
            max_frame_size: differs(self.max_frame_size, default.max_frame_size),
            max_header_list_size: self.max_header_list_size,
            enable_connect_protocol: differs(
                self.enable_connect_protocol,
                default.enable_connect_protocol,
            ),
        }
    }

    /// Appends the SETTINGS frame that announces these (the first frame a server sends, §3.4).
    pub(crate) fn write(&self, buf: &mut impl BufMut) {
        super::write_settings(buf, &self.changes());
    }
}
