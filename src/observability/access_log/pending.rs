//! Building an entry on the request path: started when the request head arrives, completed when the response is
//! known, logged when the response body is over.
//!
//! The three times of ELB-SPEC §11 (fields 5 to 7) are measured between four instants: the head arrived
//! ([`PendingEntry::begin`]), the request went to the instance and the instance's head came back (the proxy's
//! [`Dispatched`], carried in the response's extensions), and the response started towards the client
//! ([`PendingEntry::respond`]). They come from tokio's clock, as the rest of the data plane's timers do, so tests
//! can pause time; the timestamp (field 1) is wall-clock `SystemTime`. Trade-off: the entry is logged when the
//! body is dropped, so `sent_bytes` is what really went out, at the cost of carrying the pending entry (boxed)
//! with the body; and `received_bytes` is the request's Content-Length, not a count, so a chunked upload logs 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::entry::{Entry, RequestLine};
use super::writer::AccessLog;

/// What the proxy learned about a request it dispatched, carried to the access log in the response's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dispatched {
    pub backend: SocketAddr,
    /// When the request was handed to the instance's connection.
    pub request_sent: Instant,
    /// When the instance's response head arrived.
    pub headers_received: Instant,
}

/// One request's entry while the request is in progress; logged when the response body is dropped (the request
/// is over, fully sent or not), so `sent_bytes` is what really went out.
pub(crate) struct PendingEntry {
    log: AccessLog,
    arrived: Instant,
    entry: Entry,
}

/// The parts of a request head the access log records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
}

impl PendingEntry {
    /// Starts an entry when the request head arrives; `request` is `None` for a head too malformed to name (ELB
    /// logs such requests too, with `"- - - "`). `received_bytes` is the request's Content-Length (a chunked
    /// upload counts 0: the body streams to the instance without being counted).
    pub(crate) fn begin(
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
            arrived: Instant::now(),
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
    pub(crate) fn respond(
        &mut self,
        status: u16,
        elb_generated: bool,
        dispatched: Option<&Dispatched>,
    ) {
        let entry = &mut self.entry;
        entry.elb_status = Some(status);
        entry.backend_status = (!elb_generated).then_some(status);
        if let Some(d) = dispatched {
            let now = Instant::now();
            entry.backend = Some(d.backend);
            entry.request_processing = Some(d.request_sent.saturating_duration_since(self.arrived));
            entry.backend_processing =
                Some(d.headers_received.saturating_duration_since(d.request_sent));
            entry.response_processing = Some(now.saturating_duration_since(d.headers_received));
        }
    }

    /// The response body is over: logs the line with the bytes that were sent.
    pub(crate) fn finish(mut self, sent_bytes: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observability::access_log::writer::Destination;
    use std::time::Duration;

    /// A pending entry for `GET /a?b` from 198.51.100.7, with the given request headers. Nothing is logged:
    /// the tests never call `finish`.
    fn pending(log: &AccessLog, headers: &[(&str, &str)]) -> PendingEntry {
        let uri: http::Uri = "/a?b".parse().unwrap();
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let request = RequestFacts {
            method: &http::Method::GET,
            uri: &uri,
            version: http::Version::HTTP_11,
            headers: &map,
        };
        let load_balancer: Arc<str> = "web-lb".into();
        let client = "198.51.100.7:52311".parse().unwrap();
        PendingEntry::begin(log, &load_balancer, client, "http", 80, None, Some(request))
    }

    #[tokio::test]
    async fn request_line_comes_from_the_head_and_host_header() {
        let (log, _writer) = AccessLog::start(Destination::Stdout, 1).unwrap();
        let headers = [
            ("host", "www.example.org:8080"),
            ("content-length", "17"),
            ("user-agent", "curl/7.38.0"),
        ];
        let entry = pending(&log, &headers).entry;
        let line = entry.request.unwrap();
        assert_eq!(
            (line.method.as_str(), line.host.as_str()),
            ("GET", "www.example.org")
        );
        assert_eq!((line.port, line.path_and_query.as_str()), (80, "/a?b"));
        assert_eq!(entry.received_bytes, 17);
        assert_eq!(entry.user_agent.as_deref(), Some("curl/7.38.0"));
    }

    #[tokio::test]
    async fn dispatched_response_times_the_three_phases() {
        let (log, _writer) = AccessLog::start(Destination::Stdout, 1).unwrap();
        let mut pending = pending(&log, &[]);
        let headers_received = Instant::now();
        let request_sent = headers_received - Duration::from_millis(7);
        pending.arrived = request_sent - Duration::from_millis(5);
        let backend = "10.0.1.15:80".parse().unwrap();
        let dispatched = Dispatched {
            backend,
            request_sent,
            headers_received,
        };
        pending.respond(200, false, Some(&dispatched));
        let entry = pending.entry;
        assert_eq!(
            (entry.elb_status, entry.backend_status),
            (Some(200), Some(200))
        );
        assert_eq!(entry.backend, Some(backend));
        assert_eq!(entry.request_processing, Some(Duration::from_millis(5)));
        assert_eq!(entry.backend_processing, Some(Duration::from_millis(7)));
        assert!(entry.response_processing.is_some());
    }

    #[tokio::test]
    async fn elb_generated_response_has_no_backend_status_or_times() {
        let (log, _writer) = AccessLog::start(Destination::Stdout, 1).unwrap();
        let mut pending = pending(&log, &[]);
        pending.respond(503, true, None);
        let entry = pending.entry;
        assert_eq!((entry.elb_status, entry.backend_status), (Some(503), None));
        assert_eq!(entry.backend, None);
        assert_eq!(entry.request_processing, None);
        // No Host header and an origin-form URI: the host is `-`.
        assert_eq!(entry.request.unwrap().host, "-");
    }

    #[test]
    fn strip_port_keeps_ipv6_brackets() {
        assert_eq!(strip_port("www.example.org:8080"), "www.example.org");
        assert_eq!(strip_port("www.example.org"), "www.example.org");
        assert_eq!(strip_port("[2001:db8::1]:80"), "[2001:db8::1]");
        assert_eq!(strip_port("[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(strip_port("odd:name"), "odd:name");
    }
}
