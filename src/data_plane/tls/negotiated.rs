//! What a finished handshake agreed on, in the words ELB's access log uses (ELB-SPEC §11, `ssl_cipher` and
//! `ssl_protocol`).
//!
//! rustls names suites by IANA (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`); ELB's access log, and everyone who
//! reads it, uses OpenSSL's names (`ECDHE-RSA-AES128-GCM-SHA256`) and `TLSv1.2`-style protocol names. The
//! translation is a fixed table of the suites rustls can negotiate; [`super::policy`] uses it too, to describe a
//! policy in the same words.
//!
//! Trade-off: the table is written out rather than derived, since OpenSSL's names follow no rule; a suite missing
//! from it falls back to its IANA name, which is still readable.

use std::fmt;

use rustls::{CipherSuite, ProtocolVersion};

/// What one connection negotiated, for the access log (`ssl_cipher`, `ssl_protocol`) and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandshakeInfo {
    /// The client chose HTTP/2 by ALPN.
    pub alpn_h2: bool,
    /// The suite and version, named as ELB's access log writes them ([`Negotiated::names`]: OpenSSL's suite
    /// names, the IANA one for TLS 1.3; "TLSv1.2"-style versions; "-" before the handshake).
    pub negotiated: Negotiated,
    /// The server name the client sent, if any.
    pub sni: Option<String>,
}

impl fmt::Display for HandshakeInfo {
    /// `<cipher> <protocol>`, the two access log fields in ELB's order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cipher, protocol) = self.negotiated.names();
        write!(f, "{cipher} {protocol}")
    }
}

/// What a connection's handshake agreed on, kept as rustls's ids and named when a line is logged: every HTTPS
/// connection's proxy stack carries one, idle or not, in 8 bytes where the two names took 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    suite: Option<CipherSuite>,
    version: Option<ProtocolVersion>,
}

impl Negotiated {
    /// What `conn`, whose handshake has finished, negotiated.
    pub(crate) fn of(conn: &rustls::ServerConnection) -> Self {
        Negotiated {
            suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            version: conn.protocol_version(),
        }
    }

    /// (cipher, protocol) as ELB's access log writes them ("-" for what is not known).
    pub(crate) fn names(self) -> (&'static str, &'static str) {
        (
            self.suite.map_or("-", cipher_name),
            self.version.map_or("-", protocol_name),
        )
    }
}

/// Reads the negotiated details of a connection whose handshake has finished.
pub(crate) fn handshake_info(conn: &rustls::ServerConnection) -> HandshakeInfo {
    HandshakeInfo {
        alpn_h2: conn.alpn_protocol() == Some(b"h2"),
        negotiated: Negotiated::of(conn),
        sni: conn.server_name().map(str::to_owned),
    }
}

pub(super) fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1",
        ProtocolVersion::SSLv3 => "SSLv3",
        _ => "-",
    }
}

pub(super) fn cipher_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        // Not reachable with the suites above; the IANA name is the best remaining answer.
        other => other.as_str().unwrap_or("-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_the_access_log_writes_them() {
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_0), "TLSv1");
        assert_eq!(
            cipher_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "ECDHE-RSA-AES128-GCM-SHA256"
        );
        assert_eq!(
            cipher_name(CipherSuite::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        let info = HandshakeInfo {
            alpn_h2: false,
            negotiated: Negotiated {
                suite: Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
                version: Some(ProtocolVersion::TLSv1_2),
            },
            sni: None,
        };
        assert_eq!(info.to_string(), "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2");
    }
}
