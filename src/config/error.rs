//! The one error a configuration file can produce: which file, which key, and why.
//!
//! Rule: every refusal names the file, the key path into the TOML and the reason in plain words, because
//! `elbe check` and a refused SIGHUP reload print nothing else (DESIGN.md "Shutdown and reload").
//!
//! Trade-off: the reason is text, not an enum of causes. Nothing in elbe branches on why a file was refused; the
//! reader is a person, and each check words its reason for the mistake it catches. It lives apart from
//! `config.rs` so the validation modules can build it without importing their parent.

use std::fmt;
use std::path::PathBuf;

/// A configuration file that cannot be used: which file, which key, and why.
///
/// `key` is a path into the TOML (`load_balancer[0].listener[1].protocol`); it is empty for I/O and TOML syntax
/// errors, whose `reason` then carries the cause (and the line and column for syntax errors). Displayed as
/// `file: key: reason`, or `file: reason` when there is no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file, as given.
    pub file: PathBuf,
    /// The key path into the TOML; empty for I/O and syntax errors.
    pub key: String,
    /// Why the value is refused, or the I/O or syntax error's cause.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.reason)
    }
}
