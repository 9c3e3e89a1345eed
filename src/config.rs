//! The configuration file: a raw serde model of the TOML and the validated types the rest of elbe uses.
//!
//! The file's shape is the contract in DESIGN.md ("The configuration file"). It is read in two layers, as Sozu and
//! linkerd do: `raw` mirrors the TOML exactly and rejects unknown keys (a typo must be an error, not a setting
//! silently ignored); [`parse`] then turns it into [`Config`], applying every default from [`defaults`] and checking
//! the rules ELB's API checks (listener pairing, ELB-SPEC §1; health-check target syntax, §2.1; load balancer names,
//! §4) and that every certificate and key file can be read. Every error names the file, the key path (`load_balancer[0].listener[1].protocol`) and the reason in plain
//! words, because `elbe check` and a refused SIGHUP reload print nothing else.
//!
//! Trade-off: durations and thresholds accept any positive value so tests can run in milliseconds (DESIGN.md);
//! ELB's own ranges (interval 5–300 s, thresholds 2–10, ...) are enforced by the ELB-compatible API, not here.
//!
//! # Layout
//!
//! Read in the order the file is:
//!
//! - `raw`: the serde model, one struct per table, unknown keys refused; its durations are parsed on the way in
//!   by `duration` ([`parse_duration`]).
//! - `validate`: raw -> domain: every default from [`defaults`], every rule checked, one child module per part of
//!   a load balancer (listeners, health check) and the socket collision check last; `names` holds the checks on
//!   load balancer names, labels, host names and ports.
//! - `model`: [`Config`] and its tables, the validated types; `protocol`, `health_target` and
//!   `instance_address`: the values parsed from text ([`Protocol`], [`HealthTarget`], [`InstanceAddress`]).
//! - `traffic`: sticky-session policies and listener rules ([`Policy`], [`Rule`]), with their matchers compiled.
//! - `error`: [`ConfigError`], what every refusal returns.
//!
//! Every public item is re-exported here, so the rest of elbe names them `config::Item`, whatever file they are in.

pub mod defaults;
mod duration;
mod error;
mod health_target;
mod instance_address;
mod model;
mod names;
mod protocol;
mod raw;
mod traffic;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use duration::parse_duration;
pub use error::ConfigError;
pub use health_target::HealthTarget;
pub use instance_address::InstanceAddress;
pub use model::{
    AccessLogDestination, Admin, Api, ApiCertificate, ApiCredentials, ApiZone, AvailabilityZone,
    BackendCa, BackendServer, CertificatePaths, Cluster, Config, ConnectionDraining, Discovery,
    Dns, HealthCheck, Instance, Limits, Listener, LoadBalancer,
};
pub use names::{check_label, check_load_balancer_name, is_cookie_name};
pub use protocol::Protocol;
pub use traffic::{
    FixedResponse, IpNet, Pattern, Piece, Policy, PolicyKind, Redirect, RedirectProtocol,
    RequestParts, Rule, RuleAction, Template,
};

/// Reads and validates the configuration file at `path`. Relative paths inside it resolve against its folder.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        reason: format!("cannot read the configuration file: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and validates configuration text. `path` names the file in errors, and relative paths inside the
/// text resolve against its folder.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: raw::Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| toml_error(text, path, e))?;
    validate::config(raw, path)
}

/// Turns a serde/TOML error into a [`ConfigError`] that names the key path and, when TOML knows it, the line.
///
/// serde's words are for Rust programmers (`missing field`, `expected u16`, `expected a sequence`); they are
/// reworded here for the person fixing the file: a missing key is blamed on its own path, numbers are given
/// their range, and a table written with single brackets where the file needs an array of tables says so.
fn toml_error(
    text: &str,
    path: &Path,
    err: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let mut key = err.path().to_string();
    if key == "." {
        key.clear();
    }
    let inner = err.inner();
    // toml's messages may span lines ("invalid table header\nexpected `.`, `]]`"); logs and /status want one.
    let message: Vec<&str> = inner.message().lines().map(str::trim).collect();
    let message = message.join("; ");
    let location = inner.span().map(|span| line_and_column(text, span.start));
    let reason = if let Some(field) = missing_field(&message) {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(field);
        match location {
            Some((line, _)) => {
                format!("is required, and the table at line {line} does not give it")
            }
            None => "is required, and the file does not give it".to_owned(),
        }
    } else {
        let message = plain_words(&message, &key);
        match location {
            Some((line, column)) if key.is_empty() => {
                format!("TOML syntax error at line {line}, column {column}: {message}")
            }
            Some((line, column)) => format!("{message} (line {line}, column {column})"),
            None => message,
        }
    };
    ConfigError {
        file: path.to_owned(),
        key,
        reason,
    }
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The key serde says is missing (`missing field `name``), if that is the error.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(field, _)| field)
}

/// serde's type names in words; a single-bracket table where the file needs `[[...]]`, explained.
fn plain_words(message: &str, key: &str) -> String {
    if message.starts_with("invalid type: map, expected a sequence") {
        return format!(
            "is a list of tables: write each entry as [[{}]] (double brackets)",
            without_indices(key)
        );
    }
    let mut message = message
        .replace("expected u16", "expected a whole number from 0 to 65535")
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected usize", "expected a whole number, 0 or more")
        .replace("expected u64", "expected a whole number, 0 or more");
    if message.starts_with("invalid type: string") && message.contains("expected a whole number") {
        message.push_str(" (write numbers without quotes)");
    }
    message
}

/// `load_balancer[0].listener` -> `load_balancer.listener`: the table header the file writes.
fn without_indices(key: &str) -> String {
    let mut header = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => header.push(c),
            _ => {}
        }
    }
    header
}
