//! Where an instance is reached: an IP (the listener's `instance_port` applies), an IP and port, or a host name
//! and port that DNS discovery resolves.
//!
//! Rule: DESIGN.md "Health-check port": an address with its own port uses it for every listener and for health
//! checks. A host name always needs a port, so that `backend` alone is reported as a missing port rather than
//! resolved and probed on a port nobody chose.
//!
//! Trade-off: text that parses as an IP is an IP, so `127.0.0.256` is refused as a bad address instead of being
//! looked up as a host name (see `names::is_host_name`); a host whose last label is all digits cannot be used.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::config::names::{is_host_name, parse_port};

/// Where an instance is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceAddress {
    /// The listener's `instance_port` (and the health check's port) are used.
    Ip(IpAddr),
    /// This port is used for every listener and for health checks (DESIGN.md "Health-check port").
    Socket(SocketAddr),
    /// Resolved by DNS and re-resolved at its TTL; the port is used as for `Socket`.
    Host {
        /// A DNS name.
        host: String,
        /// The instance's port, 1–65535.
        port: u16,
    },
}

impl InstanceAddress {
    /// The instance's own port, if it has one.
    pub fn port(&self) -> Option<u16> {
        match self {
            InstanceAddress::Ip(_) => None,
            InstanceAddress::Socket(addr) => Some(addr.port()),
            InstanceAddress::Host { port, .. } => Some(*port),
        }
    }
}

impl fmt::Display for InstanceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceAddress::Ip(ip) => write!(f, "{ip}"),
            InstanceAddress::Socket(addr) => write!(f, "{addr}"),
            InstanceAddress::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for InstanceAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(InstanceAddress::Ip(ip));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(format!("{s:?}: port must be 1-65535"));
            }
            return Ok(InstanceAddress::Socket(addr));
        }
        if s.starts_with('[') {
            return Err(format!("{s:?} is not an IPv6 address and port (write e.g. [::1]:8000, or ::1 without a port)"));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            if is_host_name(s) {
                return Err(format!("host name {s:?} needs a port, e.g. \"{s}:8000\""));
            }
            return Err(format!("{s:?} is not an IP address, IP:port or host:port"));
        };
        if !is_host_name(host) {
            return Err(format!("{s:?} is not an IP address, IP:port or host:port"));
        }
        let port = parse_port(port).map_err(|why| format!("{s:?}: {why}"))?;
        Ok(InstanceAddress::Host {
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn instance_addresses() {
        for text in [
            "127.0.0.21",
            "127.0.0.21:8000",
            "[::1]:8000",
            "::1",
            "backend.local:8000",
            "web_1.svc:80",
            "localhost:1",
        ] {
            let address: InstanceAddress = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
        assert_eq!(
            "::1".parse(),
            Ok(InstanceAddress::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
        );
        assert_eq!(
            "[::1]:8000".parse(),
            Ok(InstanceAddress::Socket(SocketAddr::from((
                Ipv6Addr::LOCALHOST,
                8000
            ))))
        );
        assert_eq!(
            "127.0.0.21:8000"
                .parse::<InstanceAddress>()
                .map(|a| a.port()),
            Ok(Some(8000))
        );
        assert_eq!(
            "127.0.0.21".parse::<InstanceAddress>().map(|a| a.port()),
            Ok(None)
        );
        let bad = [
            ("backend.local", "needs a port"),
            ("localhost", "needs a port"),
            ("127.0.0.1:0", "1-65535"),
            ("backend:0", "1 to 65535"),
            ("backend:http", "1 to 65535"),
            ("[::1]", "IPv6"),
            ("127.0.0.256", "not an IP address"),
            ("127.0.0.256:80", "not an IP address"),
            ("", "not an IP address"),
            ("-bad.host:80", "not an IP address"),
            ("a b:80", "not an IP address"),
            ("::zz", "not an IP address"),
        ];
        for (text, needle) in bad {
            match text.parse::<InstanceAddress>() {
                Ok(a) => panic!("{text:?} parsed as {a:?}"),
                Err(why) => assert!(why.contains(needle), "{text:?}: {why:?} lacks {needle:?}"),
            }
        }
    }
}
