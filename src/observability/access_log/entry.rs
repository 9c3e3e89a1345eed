//! The line and its format (ELB-SPEC.md §11): the 15 space-separated fields of one request or connection.
//!
//! [`Entry::format`] appends one line to a caller's buffer, so the writer formats a whole batch into one reused
//! `String` without allocating per line. Field by field it follows §11's table and example lines: timestamps in
//! ISO-8601 UTC with microseconds, times in seconds with six decimals or `-1`, `-` for what is not known, the
//! request and user agent quoted. Trade-off: where §11 is silent on escaping, the two quoted fields escape `"`,
//! `\` and control characters (`\"`, `\\`, `\xHH`), so a client's bytes can never end a field early or break
//! the line; a line without such bytes is exactly §11's example shape.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// ELB truncates the user agent at 8 KB (ELB-SPEC §11, field 13).
pub(crate) const MAX_USER_AGENT_BYTES: usize = 8 * 1024;

/// One request (HTTP/HTTPS listener) or connection (TCP/SSL listener) as the access log records it.
///
/// Which kind of listener the line is for follows from `elb_status`: `Some` is an HTTP/HTTPS line,
/// `None` is a TCP/SSL line, where ELB writes `-` for both status codes.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
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
pub(crate) struct RequestLine {
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
    pub(crate) fn format(&self, out: &mut String) {
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

// `pub(super)`: the writer's tests log `dispatched()` entries and split the lines they find with `parse`.
#[cfg(test)]
pub(super) mod tests {
    use super::*;

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
    pub(crate) fn dispatched() -> Entry {
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
    pub(crate) fn parse(line: &str) -> Vec<String> {
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
}
