//! Access logs in ELB's line format (ELB-SPEC.md §11): one line per request, to a file or stdout.
//!
//! The proxy starts a [`PendingEntry`] when a request head arrives and, when the response ends, hands its
//! [`Entry`](entry::Entry) to [`AccessLog::log`], which never blocks: the entry goes into a bounded channel read by one
//! writer task, and when the channel is full the entry is dropped and counted ([`AccessLog::dropped`]). A
//! slow disk therefore costs log lines, never request latency. The writer formats entries into one reused
//! buffer, takes whatever else is already queued (up to [`MAX_BATCH_LINES`](writer::MAX_BATCH_LINES)), and writes and flushes the
//! batch at once.
//!
//! Lines carry all 15 fields, including the 2015 ones (`user_agent`, `ssl_cipher`, `ssl_protocol`).
//! Requests that were never dispatched are logged too, with backend `-` and the three timings `-1`, as ELB
//! writes them. [`AccessLog::reopen`] (SIGHUP, logrotate) makes the writer reopen the file at its path
//! between batches; if that fails the old file stays in use.
//!
//! Choices where ELB-SPEC is silent:
//! - Addresses print as Rust's `SocketAddr` does: `1.2.3.4:80`, IPv6 as `[2001:db8::1]:80` (a bare
//!   `v6:port` could not be split). IPv4-mapped IPv6 clients (dual-stack sockets) print as IPv4.
//! - Times are truncated to whole microseconds (`0.000051`), as are timestamps.
//! - The two quoted fields escape `"` as `\"`, `\` as `\\`, and control characters as `\xHH`, so a line is
//!   always one line and always splits into exactly 15 fields.
//!
//! # Layout
//!
//! - `entry`: the line, [`Entry`](entry::Entry) and [`Entry::format`](entry::Entry::format): the 15 fields, timestamps, quoting, truncation.
//! - `writer`: [`AccessLog`], the handle the proxy logs through, and the task that batches lines to a
//!   [`Destination`]; [`WriterHandle`] stops it at shutdown.
//! - `pending`: [`PendingEntry`], one request's entry while it is in flight on the request path.

mod entry;
mod pending;
mod writer;

pub(crate) use entry::Entry;
pub(crate) use pending::{Dispatched, PendingEntry, RequestFacts};
pub(crate) use writer::{AccessLog, Destination, WriterHandle};
