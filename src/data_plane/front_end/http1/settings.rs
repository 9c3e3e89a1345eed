//! What one client connection keeps of its listener's limits and timeouts, on every connection, idle or not: so
//! in `u32`s.

use std::time::Duration;

/// The limits and timers of one client connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// The limits are `u32`s (a head over 4 GiB is refused anyway): every connection carries these, idle or not.
    pub max_head_bytes: u32,
    pub max_headers: u32,
    /// A request target longer than this is ELB's 414, even when the whole head is also too large.
    pub max_uri_bytes: u32,
    /// A new connection must send its first byte, and a request head must arrive whole, within this.
    pub request_header_timeout: Millis,
    /// A keep-alive connection with no request is closed after this (ELB's idle timeout).
    pub idle_timeout: Millis,
}

/// A timeout as a connection keeps it: whole milliseconds in a `u32` (up to 49 days, past ELB's longest idle
/// timeout of 4,000 s; longer ones are held at that), 4 bytes where a `Duration` takes 16, on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Millis(u32);

impl From<Duration> for Millis {
    fn from(timeout: Duration) -> Self {
        Millis(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX))
    }
}

impl From<Millis> for Duration {
    fn from(timeout: Millis) -> Self {
        Duration::from_millis(u64::from(timeout.0))
    }
}
