//! A listener's protocol: HTTP, HTTPS, TCP or SSL, and the two questions the rest of elbe asks of it.
//!
//! Rule: ELB-SPEC §1. The API spells protocols upper-case; the file accepts any case (`http`, `Tcp`) because a
//! case mistake is not worth a refused reload, and elbe always displays them upper-case, as ELB does.
//!
//! Trade-off: `FromStr` fails with a `String`, not a typed error: the text is the whole value of the error (it
//! becomes a `ConfigError`'s reason), and nothing branches on it.

use std::fmt;
use std::str::FromStr;

/// A listener protocol. The file accepts any case; it displays upper-case, as ELB's API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// `HTTP`: Layer 7, plain text.
    Http,
    /// `HTTPS`: Layer 7 over TLS, which the node terminates (ELB-SPEC §12).
    Https,
    /// `TCP`: Layer 4, bytes passed through (ELB-SPEC §1.3).
    Tcp,
    /// `SSL`: Layer 4 over TLS, which the node terminates (ELB-SPEC §1.3, §12).
    Ssl,
}

impl Protocol {
    /// HTTPS and SSL terminate TLS.
    pub fn is_secure(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Ssl)
    }

    /// HTTP and HTTPS are Layer 7 (headers, stickiness); TCP and SSL pass bytes through.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    /// The name as ELB's API spells it: `HTTP`, `HTTPS`, `TCP`, `SSL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tcp => "TCP",
            Protocol::Ssl => "SSL",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "HTTP" => Ok(Protocol::Http),
            "HTTPS" => Ok(Protocol::Https),
            "TCP" => Ok(Protocol::Tcp),
            "SSL" => Ok(Protocol::Ssl),
            _ => Err(format!(
                "unknown protocol {s:?} (expected HTTP, HTTPS, TCP or SSL)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        for (text, protocol, secure, http) in [
            ("HTTP", Protocol::Http, false, true),
            ("https", Protocol::Https, true, true),
            ("Tcp", Protocol::Tcp, false, false),
            ("SSL", Protocol::Ssl, true, false),
        ] {
            assert_eq!(text.parse(), Ok(protocol));
            assert_eq!(protocol.to_string(), text.to_ascii_uppercase());
            assert_eq!((protocol.is_secure(), protocol.is_http()), (secure, http));
        }
        assert!("TLS".parse::<Protocol>().is_err());
    }
}
