//! One health check of one instance: connect, maybe a TLS handshake, maybe a `GET`, and a verdict.
//!
//! The rule is ELB-SPEC §2.1 "Target syntax": TCP passes once connected; SSL once a TLS handshake completes, the
//! certificate unverified ([`tls`]); HTTP and HTTPS send `GET <path>` ("The request on the wire") and pass only on
//! status exactly `200` whose body, if any, is framed by `Content-Length` or chunked `Transfer-Encoding`. The whole
//! probe, connect included, takes at most the check's `Timeout`, on tokio's clock. A failure says why
//! ([`ProbeFailure`], keeping the I/O, TLS or parse error that caused it) and whether CloudWatch counts it as a
//! backend connection error.
//!
//! Every check opens its own connection, as ELB's do (ELB-SPEC §2.1: each check is independent), and closes it
//! with a reset (`SO_LINGER` 0) once it has its verdict, so a check leaves no TIME_WAIT socket behind.
//!
//! Trade-offs: the request is written as raw bytes and only the response head is read, parsed with `httparse` and
//! bounded to [`MAX_RESPONSE_HEAD`], because a full HTTP client costs more than the check is worth. The parser is
//! lenient about header lines the verdict does not need (it skips invalid ones, as the hand parser before it did),
//! and a status other than 200 fails as soon as its status line is in, without waiting for the rest of the head.

pub(crate) mod tls;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{self, Instant};
use tokio_rustls::client::TlsStream;

use crate::config::HealthTarget;

/// The most of a response head a probe reads; a longer head fails the check as malformed.
pub(crate) const MAX_RESPONSE_HEAD: usize = 8192;

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeFailure {
    /// The instance refused the connection.
    #[error("connection refused")]
    Refused,
    /// The connection was reset (or aborted) before a verdict.
    #[error("connection reset")]
    Reset,
    /// No TCP connection within the timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// Connected, but no verdict (handshake or response) within the timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// Connecting failed otherwise (unreachable network or host, no local address, ...).
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed: the I/O error tokio-rustls returns, which carries the rustls error when TLS itself
    /// failed (its message is the rustls error's).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// The probes' TLS client configuration could not be built (the crypto provider lacks the TLS versions).
    #[error("TLS client configuration failed: {0}")]
    TlsConfig(#[source] rustls::Error),
    /// The instance answered with a status other than 200.
    #[error("status {0}, not 200")]
    Status(u16),
    /// The response was not HTTP/1.x, or a 200 carried a body without `Content-Length` or chunked encoding.
    #[error("malformed response: {0}")]
    Malformed(#[source] MalformedResponse),
    /// Another I/O error after connecting.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
}

impl ProbeFailure {
    /// Whether this failure counts as a backend connection error (CloudWatch `BackendConnectionErrors`).
    pub(crate) fn is_connection_error(&self) -> bool {
        matches!(
            self,
            ProbeFailure::Refused
                | ProbeFailure::Reset
                | ProbeFailure::ConnectTimeout
                | ProbeFailure::Connect(_)
        )
    }
}

/// What was wrong with a response that fails the check although its status is not the reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MalformedResponse {
    /// The instance closed the connection without sending a byte.
    #[error("connection closed without a response")]
    Empty,
    /// The instance closed the connection inside the response head.
    #[error("connection closed inside the response head")]
    Truncated,
    /// The stream ended abruptly before the head did (a TLS peer that closed without `close_notify`).
    #[error("connection closed before a complete response head")]
    Eof(#[source] io::Error),
    /// Not an HTTP/1.x status line; `first_line` is the start of what came instead, for the log.
    #[error("bad response head {first_line:?}: {cause}")]
    Head {
        first_line: String,
        #[source]
        cause: httparse::Error,
    },
    /// No end of the head within [`MAX_RESPONSE_HEAD`] bytes.
    #[error("no complete response head in {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
    /// A 200 followed by a body whose end nothing marks (ELB-SPEC §2.1).
    #[error("a body without Content-Length or chunked encoding")]
    UnframedBody,
}

/// One check of one instance at `addr` (the caller picks the port: the target's, or the instance's own; DESIGN.md
/// "Health-check port"). The whole probe, connect included, takes at most `timeout`.
pub(crate) async fn probe(
    target: &HealthTarget,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let deadline = Instant::now() + timeout;
    let tcp = connect(addr, deadline).await?;
    verdict_by(deadline, target, tcp, addr).await
}

/// Opens the TCP connection by `deadline`, naming the failures CloudWatch counts as connection errors.
async fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, ProbeFailure> {
    match time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => Err(ProbeFailure::ConnectTimeout),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(ProbeFailure::Refused),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Err(ProbeFailure::Reset),
        Ok(Err(e)) => Err(ProbeFailure::Connect(e)),
        Ok(Ok(tcp)) => {
            // Closed with a reset once the verdict is in, as haproxy closes its checks: no FIN exchange and no
            // TIME_WAIT socket per check, which at thousands of checks a second is most of the kernel's work and
            // would hold tens of thousands of ports. The instance has answered by then (or, for a TCP check,
            // only the connection was asked of it). Best effort: a check without it is still a check.
            let _ = tcp.set_zero_linger();
            Ok(tcp)
        }
    }
}

/// The target's verdict on a connected stream, by `deadline`. Generic over the stream so that tests can run it on an
/// in-memory one, whose silence a paused clock can time out deterministically.
async fn verdict_by<S>(
    deadline: Instant,
    target: &HealthTarget,
    stream: S,
    addr: SocketAddr,
) -> Result<(), ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let verdict = async {
        match target {
            HealthTarget::Tcp { .. } => Ok(()),
            HealthTarget::Ssl { .. } => tls_handshake(stream, addr).await.map(drop),
            HealthTarget::Http { path, .. } => http_get(stream, addr, path).await,
            HealthTarget::Https { path, .. } => {
                http_get(tls_handshake(stream, addr).await?, addr, path).await
            }
        }
    };
    time::timeout_at(deadline, verdict)
        .await
        .unwrap_or(Err(ProbeFailure::Timeout))
}

/// A TLS handshake without certificate validation (ELB-SPEC §2.1) and without SNI.
async fn tls_handshake<S>(stream: S, addr: SocketAddr) -> Result<TlsStream<S>, ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = tls::client_config().map_err(ProbeFailure::TlsConfig)?;
    // An IP-address server name: rustls sends no SNI for it (ELB sends none either).
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ProbeFailure::Reset
            }
            _ => ProbeFailure::Tls(e),
        })
}

/// Sends the health-check request and reads the verdict from the response head.
async fn http_get<S>(mut stream: S, addr: SocketAddr, path: &str) -> Result<(), ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send_request(&mut stream, addr, path).await?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_length = loop {
        match parse_head(&head)? {
            Head::Partial => read_more(&mut stream, &mut head, &mut chunk).await?,
            Head::Ok { framed: true, .. } => return Ok(()),
            Head::Ok { length, .. } => break length,
        }
    };
    // A 200 without framing headers passes only if no body follows: the instance closes right after the head.
    if head.len() > head_length {
        return Err(ProbeFailure::Malformed(MalformedResponse::UnframedBody));
    }
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => Ok(()),
        Ok(_) => Err(ProbeFailure::Malformed(MalformedResponse::UnframedBody)),
    }
}

/// Writes the request of ELB-SPEC §2.1 "The request on the wire"; Host is the instance's address with its port.
async fn send_request<S>(stream: &mut S, addr: SocketAddr, path: &str) -> Result<(), ProbeFailure>
where
    S: AsyncWrite + Unpin,
{
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ELB-HealthChecker/1.0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(io_failure)?;
    stream.flush().await.map_err(io_failure)
}

/// What the response bytes read so far say, when they do not fail the check already.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Not a complete head yet.
    Partial,
    /// A complete `200` head of `length` bytes; `framed`: it carries `Content-Length` or chunked encoding.
    Ok { length: usize, framed: bool },
}

/// Parses the response head read so far: a status other than 200 fails at once, a 200 waits for the whole head.
fn parse_head(buf: &[u8]) -> Result<Head, ProbeFailure> {
    // One slot per 3 bytes (the shortest header line is `a:\n`), so the head's size alone bounds the number of header
    // lines, as it did before httparse.
    let mut slots = vec![httparse::EMPTY_HEADER; buf.len() / 3 + 1];
    let mut response = httparse::Response::new(&mut slots);
    let parsed = httparse::ParserConfig::default()
        .ignore_invalid_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .parse_response(&mut response, buf);
    // httparse fills in the reason (maybe empty) once the status line is complete, even if the head is not.
    if let (Some(code), Some(_)) = (response.code, response.reason) {
        if code != 200 {
            return Err(ProbeFailure::Status(code));
        }
    }
    match parsed {
        Ok(httparse::Status::Partial) => Ok(Head::Partial),
        Ok(httparse::Status::Complete(length)) => Ok(Head::Ok {
            length,
            framed: response.headers.iter().any(frames_a_body),
        }),
        Err(cause) => Err(ProbeFailure::Malformed(MalformedResponse::Head {
            first_line: first_line(buf),
            cause,
        })),
    }
}

/// Whether a header marks where the body ends: `Content-Length` with a number, or `Transfer-Encoding` naming chunked.
fn frames_a_body(header: &httparse::Header<'_>) -> bool {
    let value = header.value.trim_ascii();
    if header.name.eq_ignore_ascii_case("content-length") {
        !value.is_empty() && value.iter().all(u8::is_ascii_digit)
    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
        value.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"))
    } else {
        false
    }
}

/// The start of what the instance sent, up to its first line end and at most 100 bytes, for the log.
fn first_line(buf: &[u8]) -> String {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(&line[..line.len().min(100)])
        .trim_end()
        .to_string()
}

/// Appends one read to `head`, failing when the head outgrows [`MAX_RESPONSE_HEAD`] or the connection ends.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Result<(), ProbeFailure> {
    if head.len() >= MAX_RESPONSE_HEAD {
        return Err(ProbeFailure::Malformed(MalformedResponse::TooLong));
    }
    let room = chunk.len().min(MAX_RESPONSE_HEAD - head.len());
    match stream.read(&mut chunk[..room]).await.map_err(io_failure)? {
        0 if head.is_empty() => Err(ProbeFailure::Malformed(MalformedResponse::Empty)),
        0 => Err(ProbeFailure::Malformed(MalformedResponse::Truncated)),
        n => {
            head.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

/// Maps an I/O error after connecting.
fn io_failure(e: io::Error) -> ProbeFailure {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ProbeFailure::Reset,
        io::ErrorKind::UnexpectedEof => ProbeFailure::Malformed(MalformedResponse::Eof(e)),
        _ => ProbeFailure::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::health::fake_instance::{
        closed_port, http_server, https_server, raw_server,
    };
    use std::sync::atomic::AtomicU16;
    use std::sync::Arc;
    use tokio::net::TcpListener;

    const SHORT: Duration = Duration::from_millis(500);

    fn http(port: u16) -> HealthTarget {
        HealthTarget::Http {
            port,
            path: "/health".into(),
        }
    }

    /// The status a response head gives, or `None` if it is not one.
    fn status_of(head: &[u8]) -> Option<u16> {
        match parse_head(head) {
            Ok(Head::Ok { .. }) => Some(200),
            Err(ProbeFailure::Status(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether a 200 with these header lines frames its body.
    fn framed(headers: &str) -> bool {
        let head = format!("HTTP/1.1 200 OK\r\n{headers}\r\n");
        matches!(
            parse_head(head.as_bytes()),
            Ok(Head::Ok { framed: true, .. })
        )
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/2 200 OK\r\n\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 20 OK\r\n\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2000 OK\r\n\r\n"), None);
        assert_eq!(status_of(b"SSH-2.0-OpenSSH_9.6\r\n"), None);
        assert!(framed("Server: x\r\ncontent-length: 12\r\n"));
        assert!(framed("Transfer-Encoding: gzip, Chunked\r\n"));
        assert!(!framed("Server: x\r\nContent-Length: abc\r\n"));
    }

    #[test]
    fn a_status_other_than_200_fails_before_the_head_is_complete() {
        assert!(matches!(
            parse_head(b"HTTP/1.1 404 Not Found\r\nServer: x"),
            Err(ProbeFailure::Status(404))
        ));
        // Not before its status line is: `HTTP/1.1 503` may still become `HTTP/1.1 5030`.
        assert_eq!(parse_head(b"HTTP/1.1 503").unwrap(), Head::Partial);
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nServer: x").unwrap(),
            Head::Partial
        );
        assert_eq!(parse_head(b"").unwrap(), Head::Partial);
    }

    #[test]
    fn header_lines_the_verdict_does_not_need_may_be_invalid() {
        assert!(framed("Bad Header: x\r\nContent-Length: 0\r\n"));
        assert!(framed("Content-Length : 0\r\n"));
        let failure = parse_head(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap_err();
        assert_eq!(
            failure.to_string(),
            "malformed response: bad response head \"SSH-2.0-OpenSSH_9.6\": invalid HTTP version"
        );
        assert!(std::error::Error::source(&failure).is_some());
    }

    /// A connected instance that never answers times out, at the deadline exactly: the paused clock jumps there once
    /// nothing else can run. The stream is in memory, so no socket event can race the jump.
    #[tokio::test(start_paused = true)]
    async fn timeouts_when_the_instance_never_answers() {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let https = HealthTarget::Https {
            port: 8443,
            path: "/health".into(),
        };
        for target in [http(8443), HealthTarget::Ssl { port: 8443 }, https] {
            let (stream, _silent) = tokio::io::duplex(4096);
            let started = Instant::now();
            let deadline = started + Duration::from_millis(200);
            let result = verdict_by(deadline, &target, stream, addr).await;
            assert!(
                matches!(result, Err(ProbeFailure::Timeout)),
                "{target}: {result:?}"
            );
            assert!(started.elapsed() < Duration::from_millis(400));
            assert_eq!(started.elapsed(), Duration::from_millis(200));
        }
    }

    #[tokio::test]
    async fn http_passes_only_on_200() {
        for (code, passes) in [(200, true), (301, false), (204, false), (500, false)] {
            let (addr, _) = http_server("127.0.0.1", Arc::new(AtomicU16::new(code))).await;
            let result = probe(&http(addr.port()), addr, SHORT).await;
            match result {
                Ok(()) => assert!(passes, "{code} passed"),
                Err(ProbeFailure::Status(s)) => {
                    assert!(!passes && s == code, "{code} failed with {s}")
                }
                Err(other) => panic!("{code}: {other}"),
            }
        }
    }

    #[tokio::test]
    async fn http_request_on_the_wire() {
        let (addr, seen) = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        probe(&http(addr.port()), addr, SHORT).await.unwrap();
        let request = String::from_utf8(seen.await.unwrap()).unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains("\r\nUser-Agent: ELB-HealthChecker/1.0\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", addr.port())),
            "{request}"
        );
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn http_failures() {
        let addr = closed_port().await;
        let result = probe(&http(addr.port()), addr, SHORT).await;
        assert!(matches!(result, Err(ProbeFailure::Refused)), "{result:?}");
        assert!(result.unwrap_err().is_connection_error());

        // Accepts and resets.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_zero_linger().unwrap();
            drop(stream);
        });
        let result = probe(&http(addr.port()), addr, SHORT).await;
        assert!(
            matches!(
                result,
                Err(ProbeFailure::Reset | ProbeFailure::Malformed(_))
            ),
            "{result:?}"
        );

        for garbage in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"HTTP/1.1 OK 200\r\n\r\n",
            b"\0\0\0\0",
            b"",
        ] {
            let (addr, _) = raw_server(garbage).await;
            let result = probe(&http(addr.port()), addr, SHORT).await;
            assert!(
                matches!(result, Err(ProbeFailure::Malformed(_))),
                "{garbage:?}: {result:?}"
            );
        }

        // A 200 with an unframed body fails; without a body it passes.
        let (addr, _) = raw_server(b"HTTP/1.1 200 OK\r\n\r\nhello").await;
        let result = probe(&http(addr.port()), addr, SHORT).await;
        assert!(
            matches!(result, Err(ProbeFailure::Malformed(_))),
            "{result:?}"
        );
        let (addr, _) = raw_server(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n").await;
        probe(&http(addr.port()), addr, SHORT).await.unwrap();
        let (addr, _) = raw_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )
        .await;
        probe(&http(addr.port()), addr, SHORT).await.unwrap();
    }

    #[tokio::test]
    async fn tcp_probe() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        probe(&HealthTarget::Tcp { port: addr.port() }, addr, SHORT)
            .await
            .unwrap();
        drop(listener);
        let result = probe(&HealthTarget::Tcp { port: addr.port() }, addr, SHORT).await;
        assert!(matches!(result, Err(ProbeFailure::Refused)), "{result:?}");
    }

    #[tokio::test]
    async fn ssl_and_https_probes() {
        let addr = https_server(200).await;
        probe(&HealthTarget::Ssl { port: addr.port() }, addr, SHORT)
            .await
            .unwrap();
        probe(
            &HealthTarget::Https {
                port: addr.port(),
                path: "/health".into(),
            },
            addr,
            SHORT,
        )
        .await
        .unwrap();
        let addr = https_server(404).await;
        let result = probe(
            &HealthTarget::Https {
                port: addr.port(),
                path: "/health".into(),
            },
            addr,
            SHORT,
        )
        .await;
        assert!(
            matches!(result, Err(ProbeFailure::Status(404))),
            "{result:?}"
        );

        // A plain HTTP server behind an SSL target.
        let (addr, _) = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        let result = probe(&HealthTarget::Ssl { port: addr.port() }, addr, SHORT).await;
        assert!(matches!(result, Err(ProbeFailure::Tls(_))), "{result:?}");
        // The cause is kept: the rustls error, inside the I/O error tokio-rustls returns.
        let failure = result.unwrap_err();
        let cause = std::error::Error::source(&failure).and_then(|e| e.downcast_ref::<io::Error>());
        let tls = cause.and_then(io::Error::get_ref);
        assert!(tls.is_some_and(|e| e.is::<rustls::Error>()), "{failure:?}");
    }
}
