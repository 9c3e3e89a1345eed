//! Access logs in ELB's line format (ELB-SPEC.md §11): one line per request, to a file or stdout.
//!
//! The proxy builds an [`Entry`] when a response ends and hands it to [`AccessLog::log`], which never
//! blocks: the entry goes into a bounded channel read by one writer task, and when the channel is full the
//! entry is dropped and counted ([`AccessLog::dropped`]). A slow disk therefore costs log lines, never
//! request latency. The writer formats entries into one reused buffer, takes whatever else is already
//! queued (up to [`MAX_BATCH_LINES`]), and writes and flushes the batch at once.
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

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

/// The writer takes at most this many queued entries into one write.
pub const MAX_BATCH_LINES: u64 = 1024;
/// ...or stops taking more once the batch is this large.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// ELB truncates the user agent at 8 KB (ELB-SPEC §11, field 13).
pub const MAX_USER_AGENT_BYTES: usize = 8 * 1024;

/// One request (HTTP/HTTPS listener) or connection (TCP/SSL listener) as the access log records it.
///
/// Which kind of listener the line is for follows from `elb_status`: `Some` is an HTTP/HTTPS line,
/// `None` is a TCP/SSL line, where ELB writes `-` for both status codes.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When the request arrived (field 1), written as ISO-8601 UTC with microseconds.
    pub received_at: SystemTime,
    pub load_balancer: Arc<str>,
    /// The peer address elbe saw (never a client-supplied header).
    pub client: SocketAddr,
    /// The instance the request went to; `None` (not dispatched, the instance closed early, idle
    /// timeout) writes `-`.
    pub backend: Option<SocketAddr>,
    /// `None` writes `-1` (not dispatched).
    pub request_processing: Option<Duration>,
    pub backend_processing: Option<Duration>,
    pub response_processing: Option<Duration>,
    /// The status elbe sent (HTTP/HTTPS listeners). `None` marks a TCP/SSL line: both status fields `-`.
    pub elb_status: Option<u16>,
    /// The instance's status; on an HTTP line `None` writes `0` (no response from the instance).
    pub backend_status: Option<u16>,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    /// `None` (TCP/SSL listeners, or a request too malformed to name) writes `"- - - "`.
    pub request: Option<RequestLine>,
    /// Truncated at [`MAX_USER_AGENT_BYTES`]; `None` writes `"-"`.
    pub user_agent: Option<String>,
    /// OpenSSL cipher name for HTTPS/SSL listeners; `None` writes `-`.
    pub ssl_cipher: Option<&'static str>,
    /// e.g. `TLSv1.2`; `None` writes `-`.
    pub ssl_protocol: Option<&'static str>,
}

/// Field 12 of an HTTP line: `METHOD scheme://host:port/path HTTP/x.y`, the URL as the client sent it.
#[derive(Debug, Clone)]
pub struct RequestLine {
    pub method: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host without the port (an IPv6 literal keeps its brackets).
    pub host: String,
    pub port: u16,
    /// Starts with `/` (or is `*`), written right after the port.
    pub path_and_query: String,
    pub version: http::Version,
}

impl Entry {
    /// Appends the line, without its trailing newline, to `out`.
    pub fn format(&self, out: &mut String) {
        // Writing to a String cannot fail; the `let _ =` below discard an always-`Ok`.
        write_timestamp(out, self.received_at);
        out.push(' ');
        out.push_str(&self.load_balancer);
        out.push(' ');
        write_addr(out, self.client);
        out.push(' ');
        match self.backend {
            Some(backend) => write_addr(out, backend),
            None => out.push('-'),
        }
        for time in [
            self.request_processing,
            self.backend_processing,
            self.response_processing,
        ] {
            out.push(' ');
            match time {
                Some(time) => {
                    let _ = write!(out, "{}.{:06}", time.as_secs(), time.subsec_micros());
                }
                None => out.push_str("-1"),
            }
        }
        match self.elb_status {
            Some(elb) => {
                let _ = write!(out, " {elb} {}", self.backend_status.unwrap_or(0));
            }
            None => out.push_str(" - -"),
        }
        let _ = write!(out, " {} {} \"", self.received_bytes, self.sent_bytes);
        match &self.request {
            Some(line) => {
                write_quoted(out, &line.method);
                out.push(' ');
                write_quoted(out, line.scheme);
                out.push_str("://");
                write_quoted(out, &line.host);
                let _ = write!(out, ":{}", line.port);
                write_quoted(out, &line.path_and_query);
                out.push(' ');
                out.push_str(version_name(line.version));
            }
            None => out.push_str("- - - "),
        }
        out.push_str("\" \"");
        match &self.user_agent {
            Some(agent) => write_quoted(out, truncate(agent, MAX_USER_AGENT_BYTES)),
            None => out.push('-'),
        }
        out.push('"');
        for name in [self.ssl_cipher, self.ssl_protocol] {
            out.push(' ');
            out.push_str(name.filter(|name| !name.is_empty()).unwrap_or("-"));
        }
    }
}

fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn write_addr(out: &mut String, addr: SocketAddr) {
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let _ = write!(out, "{addr}");
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends `s` for use inside a quoted field: `"` and `\` are backslash-escaped, control characters
/// become `\xHH`, so the field cannot end early or break the line.
fn write_quoted(out: &mut String, s: &str) {
    let needs_escape = |c: char| c == '"' || c == '\\' || c.is_ascii_control();
    if !s.contains(needs_escape) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `2014-05-13T23:39:43.945958Z`. Times before 1970 (a clock set far back) print as the epoch.
fn write_timestamp(out: &mut String, at: SystemTime) {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_micros()
    );
}

/// (year, month, day) of the proleptic Gregorian calendar for a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, restricted to days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days end each 400-year era's years.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    /// Appended to; created if missing.
    File(PathBuf),
}

/// Opening the access log file failed; the `io::Error` returned by [`AccessLog::start`] wraps this.
#[derive(Debug, thiserror::Error)]
#[error("cannot open access log file {}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// State shared by the handles and the writer task.
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    reopen_failures: AtomicU64,
    reopen_requested: AtomicBool,
    /// Wakes an idle writer so a reopen does not wait for the next request.
    wake: Notify,
}

/// A cheap clonable handle to the access log; [`AccessLog::log`] never blocks.
#[derive(Debug, Clone)]
pub struct AccessLog {
    entries: mpsc::Sender<Entry>,
    shared: Arc<Shared>,
}

impl AccessLog {
    /// Opens the destination and starts the writer task on the current tokio runtime. `capacity` bounds
    /// the entries waiting to be written (at least 1). Fails when the file cannot be opened (the error
    /// names the path, see [`OpenError`]) or when called outside a runtime.
    pub fn start(
        destination: Destination,
        capacity: usize,
    ) -> Result<(AccessLog, WriterHandle), io::Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let sink = match &destination {
            Destination::Stdout => Sink::Stdout(tokio::io::stdout()),
            Destination::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| open_error(path, source))?;
                Sink::File(tokio::fs::File::from_std(file))
            }
        };
        let (entries, receiver) = mpsc::channel(capacity.max(1));
        let (stop, stop_signal) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            destination,
            sink,
            entries: receiver,
            shared: Arc::clone(&shared),
            failing: false,
        };
        let task = runtime.spawn(writer.run(stop_signal));
        Ok((AccessLog { entries, shared }, WriterHandle { stop, task }))
    }

    /// Queues one entry. When the channel is full (or the writer has stopped) the entry is dropped and
    /// counted in [`AccessLog::dropped`].
    pub fn log(&self, entry: Entry) {
        if self.entries.try_send(entry).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries that never became a line: the channel was full, the writer had stopped, or the write
    /// failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines written (and flushed) so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Reopen attempts that failed (the old file stayed in use).
    pub fn reopen_failures(&self) -> u64 {
        self.shared.reopen_failures.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen the file at its path (SIGHUP after logrotate renamed it). Returns at
    /// once; the writer reopens before writing its next batch, so every entry logged after this call
    /// goes to the new file (entries queued before it may land in either). A failure is logged, counted
    /// in [`AccessLog::reopen_failures`], and keeps the old file. No effect on stdout.
    pub fn reopen(&self) {
        self.shared.reopen_requested.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

fn open_error(path: &Path, source: io::Error) -> io::Error {
    let kind = source.kind();
    io::Error::new(
        kind,
        OpenError {
            path: path.to_owned(),
            source,
        },
    )
}

/// Owns the writer task. Dropping it leaves the task running until every [`AccessLog`] is dropped.
#[derive(Debug)]
pub struct WriterHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl WriterHandle {
    /// Stops taking entries (later [`AccessLog::log`] calls count as dropped), writes everything already
    /// queued, flushes, and waits for the task to end. Used at shutdown and in tests.
    pub async fn flush_and_stop(self) {
        // An error means the task already ended (every handle was dropped): nothing left to drain.
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "access log writer task failed");
        }
    }
}

enum Sink {
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File),
}

impl Sink {
    async fn write_and_flush(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => {
                out.write_all(bytes).await?;
                out.flush().await
            }
            Sink::File(file) => {
                file.write_all(bytes).await?;
                file.flush().await
            }
        }
    }
}

/// The task that owns the destination.
struct Writer {
    destination: Destination,
    sink: Sink,
    entries: mpsc::Receiver<Entry>,
    shared: Arc<Shared>,
    /// The last write failed: warn once per outage, not once per batch.
    failing: bool,
}

impl Writer {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut batch = String::with_capacity(64 * 1024);
        let mut stop_pending = true;
        loop {
            let first = tokio::select! {
                entry = self.entries.recv() => match entry {
                    Some(entry) => Some(entry),
                    // Every handle dropped, or stopped and drained.
                    None => break,
                },
                signal = &mut stop, if stop_pending => {
                    stop_pending = false;
                    // Err: the WriterHandle was dropped without stopping; keep running.
                    if signal.is_ok() {
                        // Queued entries stay receivable; `recv` returns None once they are drained.
                        self.entries.close();
                    }
                    None
                }
                () = self.shared.wake.notified() => None,
            };
            // Checked after receiving: an entry logged after `reopen()` sees the flag set here.
            if self.shared.reopen_requested.swap(false, Ordering::AcqRel) {
                self.reopen().await;
            }
            let Some(first) = first else { continue };
            batch.clear();
            first.format(&mut batch);
            batch.push('\n');
            let mut lines: u64 = 1;
            while lines < MAX_BATCH_LINES && batch.len() < MAX_BATCH_BYTES {
                let Ok(entry) = self.entries.try_recv() else {
                    break;
                };
                entry.format(&mut batch);
                batch.push('\n');
                lines += 1;
            }
            self.write(batch.as_bytes(), lines).await;
            if batch.capacity() > 4 * MAX_BATCH_BYTES {
                // One huge batch (long user agents) should not pin its memory for good.
                batch = String::with_capacity(64 * 1024);
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], lines: u64) {
        match self.sink.write_and_flush(bytes).await {
            Ok(()) => {
                self.shared.written.fetch_add(lines, Ordering::Relaxed);
                if self.failing {
                    self.failing = false;
                    tracing::info!(destination = ?self.destination, "access log writes work again");
                }
            }
            Err(error) => {
                self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(destination = ?self.destination, %error,
                        "cannot write the access log; dropping lines until writes work again");
                }
            }
        }
    }

    async fn reopen(&mut self) {
        let Destination::File(path) = &self.destination else {
            return;
        };
        let opened = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await;
        match opened {
            Ok(file) => {
                // Everything written so far was flushed batch by batch; the old file simply closes.
                self.sink = Sink::File(file);
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(source) => {
                self.shared.reopen_failures.fetch_add(1, Ordering::Relaxed);
                let error = open_error(path, source);
                tracing::error!(%error, "cannot reopen the access log; still writing to the old file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn at(unix_micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(unix_micros)
    }

    fn timestamp(unix_micros: u64) -> String {
        let mut out = String::new();
        write_timestamp(&mut out, at(unix_micros));
        out
    }

    fn line(entry: &Entry) -> String {
        let mut out = String::new();
        entry.format(&mut out);
        out
    }

    fn get(host: &str, path: &str) -> RequestLine {
        RequestLine {
            method: "GET".into(),
            scheme: "http",
            host: host.into(),
            port: 80,
            path_and_query: path.into(),
            version: http::Version::HTTP_11,
        }
    }

    /// A dispatched HTTP request, the shape of ELB-SPEC §11's first example line.
    fn dispatched() -> Entry {
        Entry {
            // 2014-06-02T10:00:01.123456Z
            received_at: at(1_401_703_201_123_456),
            load_balancer: "web-lb".into(),
            client: "198.51.100.7:52311".parse().unwrap(),
            backend: Some("10.0.1.15:80".parse().unwrap()),
            request_processing: Some(Duration::from_micros(51)),
            backend_processing: Some(Duration::from_micros(12_004)),
            response_processing: Some(Duration::from_micros(40)),
            elb_status: Some(200),
            backend_status: Some(200),
            received_bytes: 0,
            sent_bytes: 1532,
            request: Some(get("www.example.org", "/index.html")),
            user_agent: Some("curl/7.38.0".into()),
            ssl_cipher: None,
            ssl_protocol: None,
        }
    }

    fn not_dispatched(status: u16, path: &str) -> Entry {
        Entry {
            received_at: at(1_401_703_202_223_456),
            client: "198.51.100.8:40112".parse().unwrap(),
            backend: None,
            request_processing: None,
            backend_processing: None,
            response_processing: None,
            elb_status: Some(status),
            backend_status: None,
            sent_bytes: 0,
            request: Some(get("www.example.org", path)),
            user_agent: None,
            ..dispatched()
        }
    }

    /// Splits a line into fields on spaces, keeping quoted fields (with `\` escapes) whole and unescaped.
    fn parse(line: &str) -> Vec<String> {
        let mut fields = Vec::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            let mut field = String::new();
            if c == '"' {
                loop {
                    match chars.next().expect("unterminated quote") {
                        '"' => break,
                        '\\' => match chars.next().expect("dangling escape") {
                            'x' => {
                                let hex: String = chars.by_ref().take(2).collect();
                                field.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                            }
                            c => field.push(c),
                        },
                        c => field.push(c),
                    }
                }
                assert!(matches!(chars.next(), None | Some(' ')), "junk after quote");
            } else {
                field.push(c);
                for c in chars.by_ref() {
                    if c == ' ' {
                        break;
                    }
                    field.push(c);
                }
            }
            fields.push(field);
        }
        fields
    }

    #[test]
    fn dispatched_http_request() {
        assert_eq!(
            line(&dispatched()),
            "2014-06-02T10:00:01.123456Z web-lb 198.51.100.7:52311 10.0.1.15:80 0.000051 0.012004 \
             0.000040 200 200 0 1532 \"GET http://www.example.org:80/index.html HTTP/1.1\" \
             \"curl/7.38.0\" - -"
        );
    }

    #[test]
    fn backend_timed_out_504() {
        // ELB-SPEC §11 example line 2, plus the 2015 fields.
        assert_eq!(
            line(&not_dispatched(504, "/slow")),
            "2014-06-02T10:00:02.223456Z web-lb 198.51.100.8:40112 - -1 -1 -1 504 0 0 0 \
             \"GET http://www.example.org:80/slow HTTP/1.1\" \"-\" - -"
        );
    }

    #[test]
    fn never_dispatched_503() {
        let fields = parse(&line(&not_dispatched(503, "/")));
        assert_eq!(fields.len(), 15);
        assert_eq!(fields[3..9], ["-", "-1", "-1", "-1", "503", "0"]);
    }

    #[test]
    fn https_request_with_cipher_and_protocol() {
        let entry = Entry {
            received_at: at(1_433_239_204_423_456),
            load_balancer: "web-lb".into(),
            client: "198.51.100.7:52312".parse().unwrap(),
            backend: Some("10.0.1.15:80".parse().unwrap()),
            request_processing: Some(Duration::from_micros(80)),
            backend_processing: Some(Duration::from_micros(1100)),
            response_processing: Some(Duration::from_micros(50)),
            elb_status: Some(200),
            backend_status: Some(200),
            received_bytes: 0,
            sent_bytes: 57,
            request: Some(RequestLine {
                scheme: "https",
                port: 443,
                ..get("www.example.org", "/")
            }),
            user_agent: Some("curl/7.38.0".into()),
            ssl_cipher: Some("ECDHE-RSA-AES128-GCM-SHA256"),
            ssl_protocol: Some("TLSv1.2"),
        };
        // ELB-SPEC §11 example line 4, exactly.
        assert_eq!(
            line(&entry),
            "2015-06-02T10:00:04.423456Z web-lb 198.51.100.7:52312 10.0.1.15:80 0.000080 0.001100 \
             0.000050 200 200 0 57 \"GET https://www.example.org:443/ HTTP/1.1\" \"curl/7.38.0\" \
             ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2"
        );
    }

    #[test]
    fn tcp_listener() {
        let entry = Entry {
            received_at: at(1_401_703_203_323_456),
            load_balancer: "tcp-lb".into(),
            client: "198.51.100.9:33333".parse().unwrap(),
            backend: Some("10.0.1.16:8080".parse().unwrap()),
            request_processing: Some(Duration::from_micros(980)),
            backend_processing: Some(Duration::from_micros(31)),
            response_processing: Some(Duration::from_micros(35)),
            elb_status: None,
            backend_status: None,
            received_bytes: 77,
            sent_bytes: 410,
            request: None,
            user_agent: None,
            ssl_cipher: None,
            ssl_protocol: None,
        };
        let line = line(&entry);
        // ELB-SPEC §11 example line 3, plus the 2015 fields.
        assert_eq!(
            line,
            "2014-06-02T10:00:03.323456Z tcp-lb 198.51.100.9:33333 10.0.1.16:8080 0.000980 0.000031 \
             0.000035 - - 77 410 \"- - - \" \"-\" - -"
        );
        assert_eq!(parse(&line).len(), 15);
    }

    #[test]
    fn quotes_in_user_agent_and_url_are_escaped() {
        let agent = r#"Mozilla "quoted" \ end\"#;
        let entry = Entry {
            user_agent: Some(agent.into()),
            request: Some(get("www.example.org", "/a\"b")),
            ..dispatched()
        };
        let line = line(&entry);
        assert!(line.contains(r#""Mozilla \"quoted\" \\ end\\""#), "{line}");
        let fields = parse(&line);
        assert_eq!(fields.len(), 15);
        assert_eq!(fields[11], "GET http://www.example.org:80/a\"b HTTP/1.1");
        assert_eq!(fields[12], agent);
    }

    #[test]
    fn control_characters_cannot_break_the_line() {
        let entry = Entry {
            user_agent: Some("a\nb\tc".into()),
            ..dispatched()
        };
        let line = line(&entry);
        assert!(!line.contains('\n'));
        assert_eq!(parse(&line)[12], "a\nb\tc");
    }

    #[test]
    fn user_agent_truncated_at_8_kb_on_a_char_boundary() {
        let entry = Entry {
            // 'é' is two bytes: 8193 bytes in all, so byte 8192 falls inside the last 'é'.
            user_agent: Some(format!("a{}", "é".repeat(4096))),
            ..dispatched()
        };
        let fields = parse(&line(&entry));
        assert_eq!(fields[12].len(), 8191);
        assert!(fields[12].ends_with('é'));
    }

    #[test]
    fn every_line_parses_to_15_fields() {
        for entry in [
            dispatched(),
            not_dispatched(504, "/slow"),
            not_dispatched(503, "/?q=a%20b"),
        ] {
            let fields = parse(&line(&entry));
            assert_eq!(fields.len(), 15, "{fields:?}");
        }
        let fields = parse(&line(&dispatched()));
        assert_eq!(fields[0], "2014-06-02T10:00:01.123456Z");
        assert_eq!(
            fields[11],
            "GET http://www.example.org:80/index.html HTTP/1.1"
        );
        assert_eq!(fields[12], "curl/7.38.0");
        assert_eq!(fields[14], "-");
    }

    #[test]
    fn ipv6_addresses_are_bracketed_and_mapped_ipv4_is_plain() {
        let entry = Entry {
            client: "[2001:db8::7]:52311".parse().unwrap(),
            backend: Some("[::ffff:10.0.1.15]:80".parse().unwrap()),
            ..dispatched()
        };
        let fields = parse(&line(&entry));
        assert_eq!(fields[2], "[2001:db8::7]:52311");
        assert_eq!(fields[3], "10.0.1.15:80");
    }

    #[test]
    fn durations_are_seconds_with_six_decimals() {
        let entry = Entry {
            request_processing: Some(Duration::new(61, 5_000_999)),
            ..dispatched()
        };
        assert_eq!(parse(&line(&entry))[4], "61.005000");
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            timestamp(1_400_024_383_945_958),
            "2014-05-13T23:39:43.945958Z"
        );
        assert_eq!(
            timestamp(1_456_749_296_000_001),
            "2016-02-29T12:34:56.000001Z"
        );
        // 2000 is a leap year (divisible by 400); 2100 is not.
        assert_eq!(
            timestamp(951_782_400_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            timestamp(4_107_542_400_000_000),
            "2100-03-01T00:00:00.000000Z"
        );
        assert_eq!(
            timestamp(946_684_799_999_999),
            "1999-12-31T23:59:59.999999Z"
        );
        // Before the epoch: clamped.
        let mut out = String::new();
        write_timestamp(&mut out, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn civil_from_days_matches_counting_day_by_day() {
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let month_length = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > month_length {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "elbe-access-log-{}-{name}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lines_of(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn numbered(n: u64) -> Entry {
        Entry {
            sent_bytes: n,
            ..dispatched()
        }
    }

    /// Waits (bounded) until the writer has written `n` lines.
    async fn wait_written(log: &AccessLog, n: u64) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while log.written() < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("writer did not catch up");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_one_line_per_entry() {
        let dir = TempDir::new("lines");
        let path = dir.0.join("access.log");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 65_536).unwrap();
        for n in 0..5000 {
            log.log(numbered(n));
        }
        writer.flush_and_stop().await;
        let lines = lines_of(&path);
        assert_eq!(lines.len(), 5000);
        assert_eq!((log.written(), log.dropped()), (5000, 0));
        for (n, line) in lines.iter().enumerate() {
            let fields = parse(line);
            assert_eq!(fields.len(), 15);
            assert_eq!(fields[10], n.to_string(), "lines keep their order");
        }
        // After stopping, entries are dropped and counted.
        log.log(numbered(0));
        assert_eq!(log.dropped(), 1);
    }

    #[tokio::test]
    async fn appends_to_an_existing_file() {
        let dir = TempDir::new("append");
        let path = dir.0.join("access.log");
        std::fs::write(&path, "old line\n").unwrap();
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        log.log(numbered(1));
        writer.flush_and_stop().await;
        let lines = lines_of(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "old line");
    }

    #[tokio::test]
    async fn reopen_after_rename_writes_to_a_new_file() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("access.log");
        let rotated = dir.0.join("access.log.1");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 1024).unwrap();
        for n in 0..3 {
            log.log(numbered(n));
        }
        wait_written(&log, 3).await;
        // logrotate: rename, then SIGHUP.
        std::fs::rename(&path, &rotated).unwrap();
        log.log(numbered(3)); // before the reopen: goes to the renamed file
        wait_written(&log, 4).await;
        log.reopen();
        for n in 4..6 {
            log.log(numbered(n));
        }
        writer.flush_and_stop().await;
        let sent = |lines: Vec<String>| -> Vec<String> {
            lines.iter().map(|line| parse(line)[10].clone()).collect()
        };
        assert_eq!(sent(lines_of(&rotated)), ["0", "1", "2", "3"]);
        assert_eq!(sent(lines_of(&path)), ["4", "5"]);
        assert_eq!(log.reopen_failures(), 0);
    }

    #[tokio::test]
    async fn reopen_when_idle_creates_the_file_without_waiting_for_a_request() {
        let dir = TempDir::new("idle-reopen");
        let path = dir.0.join("access.log");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        std::fs::remove_file(&path).unwrap();
        log.reopen();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !path.exists() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("file was not reopened");
        writer.flush_and_stop().await;
    }

    #[tokio::test]
    async fn failed_reopen_keeps_the_old_file() {
        let dir = TempDir::new("reopen-fails");
        let logs = dir.0.join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("access.log");
        let rotated = dir.0.join("access.log.1");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        log.log(numbered(0));
        wait_written(&log, 1).await;
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::remove_dir(&logs).unwrap(); // the path can no longer be created
        log.reopen();
        log.log(numbered(1));
        writer.flush_and_stop().await;
        assert_eq!(log.reopen_failures(), 1);
        assert_eq!(lines_of(&rotated).len(), 2);
        assert_eq!((log.written(), log.dropped()), (2, 0));
    }

    #[tokio::test]
    async fn full_channel_drops_and_counts_without_blocking() {
        let dir = TempDir::new("full");
        let path = dir.0.join("access.log");
        // A current-thread runtime: the writer cannot run until this test awaits, so the channel fills.
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 1).unwrap();
        for n in 0..100 {
            log.log(numbered(n));
        }
        assert_eq!(log.dropped(), 99);
        writer.flush_and_stop().await;
        assert_eq!(log.written(), 1);
        assert_eq!(lines_of(&path).len(), 1);
    }

    #[tokio::test]
    async fn writer_ends_when_every_handle_is_dropped() {
        let dir = TempDir::new("dropped");
        let path = dir.0.join("access.log");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        log.log(numbered(0));
        drop(log);
        tokio::time::timeout(Duration::from_secs(10), writer.task)
            .await
            .expect("writer did not end")
            .unwrap();
        assert_eq!(lines_of(&path).len(), 1);
    }

    #[tokio::test]
    async fn open_failure_names_the_path() {
        let dir = TempDir::new("open-fails");
        let path = dir.0.join("missing-dir").join("access.log");
        let error = AccessLog::start(Destination::File(path.clone()), 16).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );
        let open = error
            .get_ref()
            .unwrap()
            .downcast_ref::<OpenError>()
            .unwrap();
        assert_eq!(open.path, path);
    }

    #[tokio::test]
    async fn stdout_destination_starts_and_stops() {
        let (log, writer) = AccessLog::start(Destination::Stdout, 16).unwrap();
        log.reopen(); // no effect on stdout
        writer.flush_and_stop().await;
        assert_eq!(log.reopen_failures(), 0);
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        assert!(AccessLog::start(Destination::Stdout, 16).is_err());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Building an entry on the request path

/// What the proxy learned about a request it dispatched, carried to the access log in the response's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Dispatched {
    pub backend: SocketAddr,
    /// When the request was handed to the instance's connection.
    pub request_sent: std::time::Instant,
    /// When the instance's response head arrived.
    pub headers_received: std::time::Instant,
}

/// One request's entry while the request is in progress; logged when the response body is dropped (the request
/// is over, fully sent or not), so `sent_bytes` is what really went out.
pub struct PendingEntry {
    log: AccessLog,
    arrived: std::time::Instant,
    entry: Entry,
}

/// The parts of a request head the access log records.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
}

impl PendingEntry {
    /// Starts an entry when the request head arrives; `request` is `None` for a head too malformed to name (ELB
    /// logs such requests too, with `"- - - "`). `received_bytes` is the request's Content-Length (a chunked
    /// upload counts 0: the body streams to the instance without being counted).
    pub fn begin(
        log: &AccessLog,
        load_balancer: &Arc<str>,
        client: SocketAddr,
        scheme: &'static str,
        port: u16,
        tls: Option<(&'static str, &'static str)>,
        request: Option<RequestFacts<'_>>,
    ) -> Self {
        let entry = Entry {
            received_at: SystemTime::now(),
            load_balancer: load_balancer.clone(),
            client,
            backend: None,
            request_processing: None,
            backend_processing: None,
            response_processing: None,
            elb_status: None,
            backend_status: None,
            received_bytes: 0,
            sent_bytes: 0,
            request: None,
            user_agent: None,
            ssl_cipher: tls.map(|(cipher, _)| cipher),
            ssl_protocol: tls.map(|(_, protocol)| protocol),
        };
        let mut pending = PendingEntry {
            log: log.clone(),
            arrived: std::time::Instant::now(),
            entry,
        };
        if let Some(request) = request {
            pending.describe(request, scheme, port);
        }
        pending
    }

    fn describe(&mut self, request: RequestFacts<'_>, scheme: &'static str, port: u16) {
        let RequestFacts {
            method,
            uri,
            version,
            headers,
        } = request;
        let host = uri
            .host()
            .map(str::to_owned)
            .or_else(|| {
                let value = headers.get(http::header::HOST)?.to_str().ok()?;
                Some(strip_port(value).to_owned())
            })
            .unwrap_or_else(|| "-".to_owned());
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let received_bytes = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let entry = &mut self.entry;
        entry.received_bytes = received_bytes;
        entry.request = Some(RequestLine {
            method: method.as_str().to_owned(),
            scheme,
            host,
            port,
            path_and_query,
            version,
        });
        entry.user_agent = headers
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    }

    /// The response is known: its status, and, when an instance answered, where and how long each phase took.
    /// `elb_generated` responses record backend status 0, and `-1` times unless the request was dispatched.
    pub fn respond(&mut self, status: u16, elb_generated: bool, dispatched: Option<&Dispatched>) {
        let entry = &mut self.entry;
        entry.elb_status = Some(status);
        entry.backend_status = (!elb_generated).then_some(status);
        if let Some(d) = dispatched {
            let now = std::time::Instant::now();
            entry.backend = Some(d.backend);
            entry.request_processing = Some(d.request_sent.saturating_duration_since(self.arrived));
            entry.backend_processing =
                Some(d.headers_received.saturating_duration_since(d.request_sent));
            entry.response_processing = Some(now.saturating_duration_since(d.headers_received));
        }
    }

    /// The response body is over: logs the line with the bytes that were sent.
    pub fn finish(mut self, sent_bytes: u64) {
        self.entry.sent_bytes = sent_bytes;
        self.log.log(self.entry);
    }
}

/// `host:port` or `[v6]:port` without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}
