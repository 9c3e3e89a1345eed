//! ELB's predefined SSL negotiation policies (ELB-SPEC §12), mapped to what rustls can serve.
//!
//! A listener's `ssl_policy` names one of ELB's predefined policies; [`security_policy`] looks it up, exactly and
//! case-sensitively as ELB's API does, and [`POLICIES`] is the table. rustls speaks only TLS 1.2 and 1.3 with AEAD
//! suites, so every ELB policy is served as its rustls subset: the same four ECDHE AES-GCM suites for TLS 1.2, in
//! ELB's order, plus TLS 1.3. What still tells the policies apart is whether the server's cipher order wins.
//!
//! Trade-off: a policy that allowed only protocols rustls does not speak (SSLv3, TLS 1.0) is served as TLS 1.2+
//! with a warning instead of being refused, so configurations that name it keep working, more safely than ELB did.

use rustls::crypto::aws_lc_rs;
use rustls::crypto::CryptoProvider;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, SupportedProtocolVersion};

#[cfg(test)]
use super::negotiated::{cipher_name, protocol_name};
use super::TlsError;

/// The policy an HTTPS listener gets when its `ssl_policy` is not set (ELB's last predefined default).
pub(crate) const DEFAULT_POLICY: &str = "ELBSecurityPolicy-TLS-1-2-2017-01";

/// An ELB predefined SSL negotiation policy, as rustls serves it: the TLS 1.2 and 1.3 part of it, with AEAD suites
/// only. SSLv3, TLS 1.0/1.1, RC4, 3DES, CBC, DHE and static-RSA suites do not exist in rustls; a policy that
/// allowed them is served with its rustls subset. See [`POLICIES`] for the table.
#[derive(Debug)]
pub(crate) struct SecurityPolicy {
    /// ELB's name for the policy.
    pub name: &'static str,
    /// Other names ELB accepted for the same policy.
    aliases: &'static [&'static str],
    /// Protocol versions served, newest first (the acceptor builds its configuration with them).
    pub(super) versions: &'static [&'static SupportedProtocolVersion],
    /// Cipher suites in the server's order of preference.
    suites: &'static [CipherSuite],
    /// ELB's `Server-Defined-Cipher-Order`: the server's order wins over the client's.
    server_order: bool,
    /// ELB allowed no protocol rustls speaks (only SSLv3/TLS 1.0): served as TLS 1.2+, with a warning.
    pub(super) floor_raised: bool,
}

impl SecurityPolicy {
    /// The protocol versions served, as ELB's access log writes them ("TLSv1.3", "TLSv1.2").
    #[cfg(test)]
    pub(crate) fn protocols(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.versions.iter().map(|v| protocol_name(v.version))
    }

    /// The cipher suites served, by OpenSSL name, in the server's order of preference.
    #[cfg(test)]
    pub(crate) fn ciphers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.suites.iter().map(|s| cipher_name(*s))
    }

    /// Whether the server's cipher order wins over the client's (ELB's `Server-Defined-Cipher-Order`).
    pub(crate) fn server_order(&self) -> bool {
        self.server_order
    }

    /// The crypto provider restricted to this policy's suites, in the policy's order.
    pub(super) fn provider(&self) -> CryptoProvider {
        let base = aws_lc_rs::default_provider();
        let cipher_suites = self
            .suites
            .iter()
            .filter_map(|id| {
                base.cipher_suites
                    .iter()
                    .find(|s| s.suite() == *id)
                    .copied()
            })
            .collect();
        CryptoProvider {
            cipher_suites,
            ..base
        }
    }
}

const TLS12_AND_13: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];
const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&TLS13];

/// TLS 1.3 suites, in AWS's order (its TLS13 policies for ALB/NLB list them so).
const TLS13_SUITES: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// The rustls subset of every ELB policy: TLS 1.3, then ELB's ECDHE AES-GCM suites in ELB's order. No ELB Classic
/// policy had ChaCha20-Poly1305 for TLS 1.2, so it is not offered there.
const ELB_AEAD: &[CipherSuite] = &[
    TLS13_SUITES[0],
    TLS13_SUITES[1],
    TLS13_SUITES[2],
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

const fn elb(
    name: &'static str,
    aliases: &'static [&'static str],
    server_order: bool,
    floor_raised: bool,
) -> SecurityPolicy {
    SecurityPolicy {
        name,
        aliases,
        versions: TLS12_AND_13,
        suites: ELB_AEAD,
        server_order,
        floor_raised,
    }
}

/// The policies elbe knows, in ELB's order (ELB-SPEC §12). "ELB allowed" is what ELB's policy had (the older ones
/// are unverified); "served" is what rustls does with it.
///
/// | policy | ELB allowed | served by elbe | server order |
/// |---|---|---|---|
/// | `ELBSample-ELBDefaultNegotiationPolicy` (alias `ELBSample-ELBDefaultCipherPolicy`) | SSLv3, TLSv1 | TLS 1.2 + 1.3, ECDHE AES-GCM (floor raised, warns) | no |
/// | `ELBSample-OpenSSLDefaultNegotiationPolicy` (alias `ELBSample-OpenSSLDefaultCipherPolicy`) | OpenSSL's defaults of the time | TLS 1.2 + 1.3, ECDHE AES-GCM | no |
/// | `ELBSecurityPolicy-2011-08` | SSLv3, TLSv1, RC4, 3DES | TLS 1.2 + 1.3, ECDHE AES-GCM (floor raised, warns) | no |
/// | `ELBSecurityPolicy-2014-01` | SSLv3, TLSv1-1.2, RC4, 3DES, GCM | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-2014-10` | TLSv1-1.2 (no SSLv3), RC4, 3DES, GCM | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-2015-02` | TLSv1-1.2, no RC4 | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-2015-03` | TLSv1-1.2, DHE, 3DES | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-2015-05` | TLSv1-1.2, ECDHE/AES-GCM first, DES-CBC3-SHA | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-2016-08` | as 2015-05 minus DES-CBC3-SHA | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-TLS-1-1-2017-01` | TLSv1.1-1.2 | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-TLS-1-2-2017-01` (default) | TLSv1.2 | TLS 1.2 + 1.3, ECDHE AES-GCM | yes |
/// | `ELBSecurityPolicy-TLS13-1-3-2021-06` (elbe extension: AWS's ALB/NLB name, never in ELB Classic) | TLSv1.3 | TLS 1.3 only | yes |
///
/// "ECDHE AES-GCM" is, for TLS 1.2, `ECDHE-ECDSA-AES128-GCM-SHA256`, `ECDHE-RSA-AES128-GCM-SHA256`,
/// `ECDHE-ECDSA-AES256-GCM-SHA384`, `ECDHE-RSA-AES256-GCM-SHA384`; TLS 1.3 always offers `TLS_AES_128_GCM_SHA256`,
/// `TLS_AES_256_GCM_SHA384`, `TLS_CHACHA20_POLY1305_SHA256`. "Floor raised": the policy allowed no protocol rustls
/// speaks; refusing it would break configurations that name it, so it is served as TLS 1.2+ and a warning is logged.
pub(crate) static POLICIES: &[SecurityPolicy] = &[
    elb(
        "ELBSample-ELBDefaultNegotiationPolicy",
        &["ELBSample-ELBDefaultCipherPolicy"],
        false,
        true,
    ),
    elb(
        "ELBSample-OpenSSLDefaultNegotiationPolicy",
        &["ELBSample-OpenSSLDefaultCipherPolicy"],
        false,
        false,
    ),
    elb("ELBSecurityPolicy-2011-08", &[], false, true),
    elb("ELBSecurityPolicy-2014-01", &[], true, false),
    elb("ELBSecurityPolicy-2014-10", &[], true, false),
    elb("ELBSecurityPolicy-2015-02", &[], true, false),
    elb("ELBSecurityPolicy-2015-03", &[], true, false),
    elb("ELBSecurityPolicy-2015-05", &[], true, false),
    elb("ELBSecurityPolicy-2016-08", &[], true, false),
    elb("ELBSecurityPolicy-TLS-1-1-2017-01", &[], true, false),
    elb(DEFAULT_POLICY, &[], true, false),
    SecurityPolicy {
        name: "ELBSecurityPolicy-TLS13-1-3-2021-06",
        aliases: &[],
        versions: TLS13_ONLY,
        suites: &TLS13_SUITES,
        server_order: true,
        floor_raised: false,
    },
];

/// Looks up a policy by ELB name (exact, case-sensitive, as ELB's API is); `None` is [`DEFAULT_POLICY`].
pub(crate) fn security_policy(name: Option<&str>) -> Result<&'static SecurityPolicy, TlsError> {
    let name = name.unwrap_or(DEFAULT_POLICY);
    POLICIES
        .iter()
        .find(|p| p.name == name || p.aliases.contains(&name))
        .ok_or_else(|| TlsError::UnknownPolicy {
            name: name.to_owned(),
            known: POLICIES
                .iter()
                .flat_map(|p| std::iter::once(&p.name).chain(p.aliases))
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_default_and_aliases() {
        assert_eq!(security_policy(None).unwrap().name, DEFAULT_POLICY);
        assert_eq!(
            security_policy(Some("ELBSample-ELBDefaultCipherPolicy"))
                .unwrap()
                .name,
            "ELBSample-ELBDefaultNegotiationPolicy"
        );
        let default = security_policy(Some(DEFAULT_POLICY)).unwrap();
        assert_eq!(
            default.protocols().collect::<Vec<_>>(),
            ["TLSv1.3", "TLSv1.2"]
        );
        assert!(default
            .ciphers()
            .any(|c| c == "ECDHE-RSA-AES128-GCM-SHA256"));
        assert!(default.server_order());
    }

    #[test]
    fn unknown_policy_lists_known_names() {
        let err = security_policy(Some("ELBSecurityPolicy-1999-01")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ELBSecurityPolicy-1999-01"), "{text}");
        assert!(text.contains(DEFAULT_POLICY), "{text}");
        assert!(
            text.contains("ELBSample-OpenSSLDefaultCipherPolicy"),
            "{text}"
        );
    }
}
