//! `elbe healthcheck`: asks a running elbe's admin listener for `/healthz`, for probes that cannot run curl.
//!
//! Rule: readiness (the default) succeeds only on `200` (every load balancer has an InService instance and every
//! listener accepts, as `/healthz` says); liveness (`--live`) succeeds on any HTTP answer, `503` included,
//! because an elbe whose instances are all down is alive and must not be restarted for it (ELB stays up and
//! answers 503 in that case). Either way, no answer within the timeout is a failure.
//!
//! Trade-off: a blocking HTTP/1.1 GET on std's `TcpStream`, not an HTTP client: the distroless image has no curl
//! or shell, a probe runs once and exits, and the only thing read is the status line.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Why the probe got no status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{address}: {source}")]
    Exchange {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{address} answered something that is not an HTTP status line: {line:?}")]
    NotHttp { address: SocketAddr, line: String },
}

/// Runs the probe: exit 0 when healthy (or, with `live`, when elbe answered at all), 1 otherwise.
pub(crate) fn healthcheck(admin: SocketAddr, live: bool, timeout: Duration) -> ExitCode {
    let address = reachable(admin);
    match status(address, timeout) {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok((code, _)) if live => {
            println!("alive ({address} answered {code})");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprintln!("not ready: {address} answered {code}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("elbe healthcheck: {error}");
            ExitCode::FAILURE
        }
    }
}

/// An admin listener on an unspecified address (0.0.0.0 or [::], as in a container) is reached on loopback.
fn reachable(admin: SocketAddr) -> SocketAddr {
    match admin.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), admin.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), admin.port())
        }
        _ => admin,
    }
}

/// `GET /healthz`: the status code and the body, within `timeout` overall. A blocking client with no runtime, so
/// it reads the real clock.
#[allow(clippy::disallowed_methods)]
fn status(address: SocketAddr, timeout: Duration) -> Result<(u16, String), ProbeError> {
    let deadline = Instant::now() + timeout;
    let exchange = |source| ProbeError::Exchange { address, source };
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|source| ProbeError::Connect { address, source })?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).map_err(exchange)?;
    stream.set_write_timeout(Some(left)).map_err(exchange)?;
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nUser-Agent: elbe-healthcheck\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(exchange)?;
    // The admin listener closes after `Connection: close`; /healthz answers are a few bytes.
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(exchange)?;
    parse(&String::from_utf8_lossy(&answer)).ok_or_else(|| ProbeError::NotHttp {
        address,
        line: String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
    })
}

/// The status code of `HTTP/1.x NNN ...` and the body after the head.
fn parse(answer: &str) -> Option<(u16, String)> {
    let status_line = answer.lines().next()?;
    let mut parts = status_line.split(' ');
    let version = parts.next()?;
    let code = parts.next()?.parse().ok()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Some((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_and_garbage_is_not() {
        assert_eq!(
            parse("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nno\n"),
            Some((503, "no\n".to_owned()))
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\n\r\nok\n"),
            Some((200, "ok\n".to_owned()))
        );
        assert_eq!(parse("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn an_unspecified_admin_address_is_probed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9900".parse().unwrap();
        assert_eq!(reachable(any), "127.0.0.1:9900".parse().unwrap());
        let any6: SocketAddr = "[::]:9900".parse().unwrap();
        assert_eq!(reachable(any6), "[::1]:9900".parse().unwrap());
        let given: SocketAddr = "10.0.0.5:9900".parse().unwrap();
        assert_eq!(reachable(given), given);
    }

    #[test]
    fn nobody_listening_is_a_connect_error() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = free.local_addr().unwrap();
        drop(free);
        let error = status(address, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(error, ProbeError::Connect { .. }), "{error}");
    }
}
