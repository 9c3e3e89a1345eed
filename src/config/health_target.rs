//! A health check's target, `PROTOCOL:port[/path]`: what is probed, on which port, and (for HTTP/HTTPS) which path.
//!
//! Rule: ELB-SPEC §2.1. TCP and SSL targets take no path, HTTP and HTTPS targets need one starting with `/`, the
//! port is 1–65535 and the whole target at most 1,024 characters; a target that does not begin with a known
//! protocol gets moto's wording, the closest known to ELB's `ValidationError`.
//!
//! Trade-off: the path is kept verbatim (no percent-decoding or normalising), since it goes into the probe's
//! request line as written; only whitespace and control characters, which would break that line, are refused.

use std::fmt;
use std::str::FromStr;

use crate::config::defaults;
use crate::config::names::parse_port;
use crate::config::protocol::Protocol;

/// A health-check target, `PROTOCOL:port[/path]` (ELB-SPEC §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HealthTarget {
    /// `TCP:port`: healthy when a TCP connect succeeds.
    Tcp {
        /// The instance port probed, 1–65535.
        port: u16,
    },
    /// `SSL:port`: healthy when a TLS handshake succeeds.
    Ssl {
        /// The instance port probed, 1–65535.
        port: u16,
    },
    /// `HTTP:port/path`: healthy when a GET of the path answers 200 within the timeout.
    Http {
        /// The instance port probed, 1–65535.
        port: u16,
        /// The request path, starting with `/`, sent as written.
        path: String,
    },
    /// `HTTPS:port/path`: as `Http`, over TLS.
    Https {
        /// The instance port probed, 1–65535.
        port: u16,
        /// The request path, starting with `/`, sent as written.
        path: String,
    },
}

impl HealthTarget {
    /// The instance port probed.
    pub fn port(&self) -> u16 {
        match self {
            HealthTarget::Tcp { port }
            | HealthTarget::Ssl { port }
            | HealthTarget::Http { port, .. }
            | HealthTarget::Https { port, .. } => *port,
        }
    }

    /// The request path for HTTP/HTTPS targets.
    pub fn path(&self) -> Option<&str> {
        match self {
            HealthTarget::Http { path, .. } | HealthTarget::Https { path, .. } => Some(path),
            HealthTarget::Tcp { .. } | HealthTarget::Ssl { .. } => None,
        }
    }
}

impl fmt::Display for HealthTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthTarget::Tcp { port } => write!(f, "TCP:{port}"),
            HealthTarget::Ssl { port } => write!(f, "SSL:{port}"),
            HealthTarget::Http { port, path } => write!(f, "HTTP:{port}{path}"),
            HealthTarget::Https { port, path } => write!(f, "HTTPS:{port}{path}"),
        }
    }
}

impl FromStr for HealthTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() > defaults::MAX_HEALTH_TARGET_LEN {
            return Err(format!(
                "a health check target is at most {} characters, this one has {}",
                defaults::MAX_HEALTH_TARGET_LEN,
                s.len()
            ));
        }
        let shape = || format!("{s:?} is not PROTOCOL:port[/path] (e.g. TCP:80 or HTTP:80/health)");
        let (protocol, rest) = s.split_once(':').ok_or_else(shape)?;
        // moto's wording, the closest known to ELB's ValidationError (ELB-SPEC §2.1).
        let protocol: Protocol = protocol
            .parse()
            .map_err(|_| format!("target {s:?} must begin with one of HTTP, TCP, HTTPS, SSL"))?;
        let (port, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], Some(&rest[slash..])),
            None => (rest, None),
        };
        let port = parse_port(port).map_err(|why| format!("target {s:?}: {why}"))?;
        match (protocol, path) {
            (Protocol::Tcp, None) => Ok(HealthTarget::Tcp { port }),
            (Protocol::Ssl, None) => Ok(HealthTarget::Ssl { port }),
            (Protocol::Tcp | Protocol::Ssl, Some(_)) => {
                Err(format!("a {protocol} target takes no path: write {protocol}:{port}"))
            }
            (Protocol::Http | Protocol::Https, None) => {
                Err(format!("an {protocol} target needs a path starting with '/', e.g. {protocol}:{port}/health"))
            }
            (Protocol::Http | Protocol::Https, Some(path)) => {
                // The path goes into the request line verbatim; whitespace or control bytes would break it.
                if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!("the path in {s:?} must not contain spaces or control characters"));
                }
                let path = path.to_owned();
                Ok(match protocol {
                    Protocol::Http => HealthTarget::Http { port, path },
                    _ => HealthTarget::Https { port, path },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_targets() {
        for text in [
            "TCP:5000",
            "SSL:443",
            "HTTP:80/index.html",
            "HTTPS:443/health?full=1",
            "HTTP:1/",
            "TCP:65535",
        ] {
            let target: HealthTarget = text.parse().unwrap();
            assert_eq!(target.to_string(), text);
        }
        assert_eq!(
            "http:80/x".parse(),
            Ok(HealthTarget::Http {
                port: 80,
                path: "/x".into()
            })
        );
        let target: HealthTarget = "HTTPS:8443/a".parse().unwrap();
        assert_eq!((target.port(), target.path()), (8443, Some("/a")));
        let long = format!("HTTP:80/{}", "a".repeat(1017));
        assert_eq!(long.len(), 1025);
        let bad = [
            ("TCP", "PROTOCOL:port"),
            ("UDP:53", "must begin with one of"),
            ("TCP:0", "1 to 65535"),
            ("TCP:65536", "1 to 65535"),
            ("TCP:+80", "1 to 65535"),
            ("TCP:", "1 to 65535"),
            ("HTTP:/x", "1 to 65535"),
            ("TCP:80/x", "takes no path"),
            ("SSL:443/", "takes no path"),
            ("HTTP:80", "needs a path"),
            ("HTTPS:443", "needs a path"),
            ("HTTP:80/a b", "spaces"),
            (long.as_str(), "at most 1024"),
        ];
        for (text, needle) in bad {
            match text.parse::<HealthTarget>() {
                Ok(t) => panic!("{text:?} parsed as {t:?}"),
                Err(why) => assert!(why.contains(needle), "{text:?}: {why:?} lacks {needle:?}"),
            }
        }
        assert!(long[..1024].parse::<HealthTarget>().is_ok());
    }
}
