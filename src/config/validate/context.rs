//! The validation context every check runs in: the file being read, for errors, and its folder, for relative
//! paths; and the few helpers that turn a bad value into a [`ConfigError`] at its key.
//!
//! Rule: a check never builds a `ConfigError` by hand; it calls [`Cx::err`] with the key path it is at, so every
//! error names the same file and reads `file: key: reason`.
//!
//! Trade-off: the checks are methods of `Cx`, one `impl Cx` block per module of `validate`, rather than free
//! functions taking the file and folder as arguments: each reads as the table it checks, at the cost of
//! `pub(super)` methods any sibling may call.

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use crate::config::error::ConfigError;

/// The validation context: which file (for errors) and which folder (for relative paths).
pub(super) struct Cx<'a> {
    pub(super) file: &'a Path,
    pub(super) base: &'a Path,
}

impl Cx<'_> {
    /// The error for `key` in this file.
    pub(super) fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Parses `text` with `FromStr`, blaming `key` on failure.
    pub(super) fn parse<T: FromStr>(
        &self,
        key: &str,
        text: &str,
        why: impl Fn(T::Err) -> String,
    ) -> Result<T, ConfigError> {
        text.parse().map_err(|e| self.err(key, why(e)))
    }

    /// Parses a value whose `FromStr` error already says why in plain words.
    pub(super) fn value<T: FromStr<Err = String>>(
        &self,
        key: &str,
        text: &str,
    ) -> Result<T, ConfigError> {
        text.parse().map_err(|why| self.err(key, why))
    }

    /// An `IP:port` the file gives for a listener elbe binds (admin, DNS).
    pub(super) fn socket_addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        self.parse(key, text, |_| {
            format!("{text:?} is not an IP address and port (e.g. \"127.0.0.1:9900\")")
        })
    }
}
