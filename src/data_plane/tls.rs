//! TLS termination for HTTPS listeners: certificates, SNI, ELB security policies, reloadable acceptors.
//!
//! An HTTPS listener has an ordered list of certificates. The first is the default; the others are picked by SNI
//! against each certificate's DNS subject alternative names (exact names and one-label `*.` wildcards, compared
//! without regard to ASCII case). ELB Classic had one certificate per listener and no SNI (ELB-SPEC §12); elbe
//! departs from it on purpose, and a one-certificate listener behaves exactly like ELB's.
//!
//! The listener's `ssl_policy` takes ELB's predefined policy names (ELB-SPEC §12). rustls speaks only TLS 1.2 and
//! 1.3 with AEAD suites, so each policy is served with the part of it rustls can do: SSLv3, TLS 1.0/1.1, RC4,
//! 3DES, CBC, DHE and static-RSA suites do not exist here. What is left of every ELB policy is the same four
//! ECDHE AES-GCM suites, in ELB's order; the policies still differ in whether the server's cipher order wins
//! (`Server-Defined-Cipher-Order`). Every policy also offers TLS 1.3, which ELB Classic never had: it is strictly
//! stronger than what the policy allowed, and clients that cannot speak it fall back to TLS 1.2. See [`POLICIES`].
//!
//! Trade-offs taken:
//! - Certificates are checked when loaded (key matches certificate, inside its validity period) so that a bad file
//!   fails `elbe check` and a reload, instead of failing handshakes later. A certificate that expires within 30
//!   days is served with a warning.
//! - The acceptor's `rustls::ServerConfig` sits behind an `ArcSwap`: a handshake loads it once, and a reload swaps
//!   it without touching open connections. After the handshake, nothing here is on the request path.
//! - Session resumption is on (stateless tickets and a server-side cache), but each reload starts with a new ticket
//!   key and an empty cache, so no session made under the old certificates or policy is resumed after a reload.
//!   Reloads are rare; a full handshake per client after one is cheap.
//! - No 0-RTT (early data): a proxy cannot know whether a replayed request is safe.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::crypto::aws_lc_rs;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, ProtocolVersion, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

/// The policy an HTTPS listener gets when its `ssl_policy` is not set (ELB's last predefined default).
pub const DEFAULT_POLICY: &str = "ELBSecurityPolicy-TLS-1-2-2017-01";

/// ALPN protocols offered to clients, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Server-side TLS session cache size per listener (sessions resumed by ID rather than by ticket).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// A certificate closer than this to its `not_after` is loaded with a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Why certificates or a policy could not be loaded. Every variant names the file (or the policy) and the reason;
/// the underlying error, when there is one, is the `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("an HTTPS listener needs at least one certificate")]
    NoCertificates,
    #[error("{}: file not found", path.display())]
    FileNotFound {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot read the file", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: malformed PEM", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: no certificate (no `BEGIN CERTIFICATE` PEM block) in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: the certificate is not valid X.509", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: x509_parser::error::X509Error,
    },
    #[error("{}: no private key (no PKCS#8, PKCS#1 or SEC1 PEM block) in the file", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unsupported private key", path.display())]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: the certificate expired on {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("{}: the certificate is not valid before {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("unknown ssl_policy {name:?}; known policies: {known}")]
    UnknownPolicy { name: String, known: String },
    #[error("ssl_policy {name}: rustls refused the policy's protocol versions or cipher suites")]
    Policy {
        name: &'static str,
        #[source]
        source: rustls::Error,
    },
}

/// Where one certificate and its key live (the config module resolves relative paths).
pub use crate::config::CertificatePaths;

// ---------------------------------------------------------------------------------------------------------------
// Security policies
// ---------------------------------------------------------------------------------------------------------------

/// An ELB predefined SSL negotiation policy, as rustls serves it: the TLS 1.2 and 1.3 part of it, with AEAD suites
/// only. SSLv3, TLS 1.0/1.1, RC4, 3DES, CBC, DHE and static-RSA suites do not exist in rustls; a policy that
/// allowed them is served with its rustls subset. See [`POLICIES`] for the table.
#[derive(Debug)]
pub struct SecurityPolicy {
    /// ELB's name for the policy.
    pub name: &'static str,
    /// Other names ELB accepted for the same policy.
    aliases: &'static [&'static str],
    versions: &'static [&'static SupportedProtocolVersion],
    /// Cipher suites in the server's order of preference.
    suites: &'static [CipherSuite],
    /// ELB's `Server-Defined-Cipher-Order`: the server's order wins over the client's.
    server_order: bool,
    /// ELB allowed no protocol rustls speaks (only SSLv3/TLS 1.0): served as TLS 1.2+, with a warning.
    floor_raised: bool,
}

impl SecurityPolicy {
    /// The protocol versions served, as ELB's access log writes them ("TLSv1.3", "TLSv1.2").
    pub fn protocols(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.versions.iter().map(|v| protocol_name(v.version))
    }

    /// The cipher suites served, by OpenSSL name, in the server's order of preference.
    pub fn ciphers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.suites.iter().map(|s| cipher_name(*s))
    }

    /// Whether the server's cipher order wins over the client's (ELB's `Server-Defined-Cipher-Order`).
    pub fn server_order(&self) -> bool {
        self.server_order
    }

    /// The crypto provider restricted to this policy's suites, in the policy's order.
    fn provider(&self) -> CryptoProvider {
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
pub static POLICIES: &[SecurityPolicy] = &[
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
pub fn security_policy(name: Option<&str>) -> Result<&'static SecurityPolicy, TlsError> {
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

// ---------------------------------------------------------------------------------------------------------------
// Certificates and SNI
// ---------------------------------------------------------------------------------------------------------------

/// One HTTPS listener's certificates: the first is the default; others are chosen by SNI, matching exact DNS names
/// and `*.example.com` wildcards (one label) from each certificate's SAN entries, case-insensitively. No SNI or no
/// match gets the default. When two certificates claim a name, the earlier one in the list wins.
///
/// Immutable once built; [`ResolvesServerCert::resolve`] does two hash lookups and takes no lock.
#[derive(Debug)]
pub struct CertificateSet {
    /// In configuration order; `keys[0]` is the default. Never empty.
    keys: Vec<Arc<CertifiedKey>>,
    /// Lower-case DNS name -> index into `keys`.
    exact: HashMap<Box<str>, usize>,
    /// `*.example.com` is stored as `example.com` -> index into `keys`.
    wildcard: HashMap<Box<str>, usize>,
}

impl CertificateSet {
    /// The certificate for a client that sent `sni` (or none).
    fn select(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let index = sni.and_then(|sni| {
            let sni = sni.trim_end_matches('.');
            let sni = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(sni.to_ascii_lowercase())
            } else {
                Cow::Borrowed(sni)
            };
            self.exact.get(&*sni).copied().or_else(|| {
                let (label, parent) = sni.split_once('.')?;
                if label.is_empty() {
                    return None;
                }
                self.wildcard.get(parent).copied()
            })
        });
        &self.keys[index.unwrap_or(0)]
    }
}

impl ResolvesServerCert for CertificateSet {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.select(client_hello.server_name())))
    }
}

/// Reads and checks every certificate and key: PEM syntax, key type, key matches certificate, validity period.
/// Logs a warning for a certificate that expires within 30 days.
pub fn load_certificates(paths: &[CertificatePaths]) -> Result<CertificateSet, TlsError> {
    if paths.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    let provider = aws_lc_rs::default_provider();
    let now = unix_now();
    let mut set = CertificateSet {
        keys: Vec::with_capacity(paths.len()),
        exact: HashMap::new(),
        wildcard: HashMap::new(),
    };
    for (index, p) in paths.iter().enumerate() {
        let loaded = load_one(p, &provider, now)?;
        for name in loaded.dns_names {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) if !parent.is_empty() && !parent.contains('*') => {
                    set.wildcard.entry(parent.into()).or_insert(index);
                }
                // A partial wildcard (`f*.example.com`) or a bare `*`: clients reject these; so do we.
                _ if name.contains('*') => {
                    tracing::debug!(path = %p.cert.display(), %name, "ignoring unsupported wildcard SAN");
                }
                _ => {
                    set.exact.entry(name.into()).or_insert(index);
                }
            }
        }
        set.keys.push(Arc::new(loaded.key));
    }
    Ok(set)
}

struct Loaded {
    key: CertifiedKey,
    dns_names: Vec<String>,
}

fn load_one(
    paths: &CertificatePaths,
    provider: &CryptoProvider,
    now: i64,
) -> Result<Loaded, TlsError> {
    let cert_pem = read(&paths.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: paths.cert.clone(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: paths.cert.clone(),
        });
    };
    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::BadCertificate {
            path: paths.cert.clone(),
            source: e.into(),
        })?;
    let validity = x509.validity();
    check_validity(&paths.cert, validity.not_before, validity.not_after, now)?;
    let dns_names = match x509.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(source) => {
            return Err(TlsError::BadCertificate {
                path: paths.cert.clone(),
                source,
            })
        }
    };

    let key_pem = read(&paths.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: paths.key.clone(),
        },
        source => TlsError::Pem {
            path: paths.key.clone(),
            source,
        },
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: paths.key.clone(),
            source,
        })?;
    let key = CertifiedKey::new(chain, signing_key);
    key.keys_match().map_err(|source| TlsError::KeyMismatch {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        source,
    })?;
    Ok(Loaded { key, dns_names })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::FileNotFound {
            path: path.to_owned(),
            source,
        },
        _ => TlsError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

/// Refuses a certificate outside its validity period at `now` (Unix seconds); warns when it ends within 30 days.
fn check_validity(
    path: &Path,
    not_before: ASN1Time,
    not_after: ASN1Time,
    now: i64,
) -> Result<(), TlsError> {
    if now < not_before.timestamp() {
        return Err(TlsError::NotYetValid {
            path: path.to_owned(),
            not_before: not_before.to_string(),
        });
    }
    if now > not_after.timestamp() {
        return Err(TlsError::Expired {
            path: path.to_owned(),
            not_after: not_after.to_string(),
        });
    }
    let left = not_after.timestamp() - now;
    if left < EXPIRY_WARNING.as_secs() as i64 {
        tracing::warn!(
            path = %path.display(),
            not_after = %not_after,
            days_left = left / 86_400,
            "certificate expires soon"
        );
    }
    Ok(())
}

fn unix_now() -> i64 {
    // A clock before 1970 is a broken host; treating it as 1970 makes every certificate "not yet valid", which
    // says what is wrong.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// ---------------------------------------------------------------------------------------------------------------
// The acceptor
// ---------------------------------------------------------------------------------------------------------------

/// A listener's TLS acceptor. Its configuration can be swapped at run time ([`TlsAcceptor::reload`]) without
/// dropping open connections: a connection keeps the configuration it was accepted with.
///
/// ALPN offers `h2` then `http/1.1`. Session resumption: stateless tickets (rustls' rotating ticketer, 6-hour keys)
/// and a server-side cache of 4096 sessions.
#[derive(Debug)]
pub struct TlsAcceptor {
    config: ArcSwap<ServerConfig>,
}

/// A handshake that did not complete. Always the client's side of the connection (or the network): there is
/// nothing to retry; the caller closes the connection and counts it.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed")]
    Failed(#[source] io::Error),
}

impl HandshakeError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, HandshakeError::Timeout(_))
    }
}

impl TlsAcceptor {
    /// Loads the certificates and builds the configuration for `policy` (`None`: [`DEFAULT_POLICY`]).
    pub fn new(paths: &[CertificatePaths], policy: Option<&str>) -> Result<Self, TlsError> {
        Ok(TlsAcceptor {
            config: ArcSwap::new(server_config(paths, policy)?),
        })
    }

    /// Re-reads the files and swaps in the new configuration for the handshakes that follow. On any error the
    /// current configuration stays and the error is returned (the caller logs it). Open connections are untouched.
    pub fn reload(&self, paths: &[CertificatePaths], policy: Option<&str>) -> Result<(), TlsError> {
        self.config.store(server_config(paths, policy)?);
        Ok(())
    }

    /// Takes over the configuration of `loaded` (built and checked beforehand), so a reload of several
    /// listeners can load everything first and then swap all of them, without reading any file twice.
    pub fn replace_with(&self, loaded: TlsAcceptor) {
        self.config.store(loaded.config.load_full());
    }

    /// Runs the server handshake on `io`, giving up after `timeout` (the connection is then dropped, which closes
    /// it). The configuration is loaded once, here; the returned stream takes no lock.
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> Result<tokio_rustls::server::TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        match tokio::time::timeout(timeout, acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::Timeout(timeout)),
        }
    }
}

fn server_config(
    paths: &[CertificatePaths],
    policy: Option<&str>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let policy = security_policy(policy)?;
    let certificates = load_certificates(paths)?;
    if policy.floor_raised {
        tracing::warn!(
            ssl_policy = policy.name,
            "the policy allows only SSLv3/TLSv1, which elbe does not speak; serving TLS 1.2 and 1.3"
        );
    }
    let provider = policy.provider();
    let ticketer = aws_lc_rs::Ticketer::new().map_err(|source| TlsError::Policy {
        name: policy.name,
        source,
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(policy.versions)
        .map_err(|source| TlsError::Policy {
            name: policy.name,
            source,
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certificates));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = policy.server_order;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.ticketer = ticketer;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------------------------------------------
// What was negotiated
// ---------------------------------------------------------------------------------------------------------------

/// What one connection negotiated, for the access log (`ssl_cipher`, `ssl_protocol`) and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// The client chose HTTP/2 by ALPN.
    pub alpn_h2: bool,
    /// As ELB's access log writes it: "TLSv1.2", "TLSv1.3" ("-" before the handshake).
    pub protocol: &'static str,
    /// OpenSSL's name for the suite ("ECDHE-RSA-AES128-GCM-SHA256"; for TLS 1.3 the IANA name,
    /// "TLS_AES_128_GCM_SHA256"), "-" before the handshake.
    pub cipher: &'static str,
    /// The server name the client sent, if any.
    pub sni: Option<String>,
}

impl fmt::Display for HandshakeInfo {
    /// `<cipher> <protocol>`, the two access log fields in ELB's order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.cipher, self.protocol)
    }
}

/// Reads the negotiated details of a connection whose handshake has finished.
pub fn handshake_info(conn: &rustls::ServerConnection) -> HandshakeInfo {
    HandshakeInfo {
        alpn_h2: conn.alpn_protocol() == Some(b"h2"),
        protocol: conn.protocol_version().map_or("-", protocol_name),
        cipher: conn
            .negotiated_cipher_suite()
            .map_or("-", |s| cipher_name(s.suite())),
        sni: conn.server_name().map(str::to_owned),
    }
}

fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1",
        ProtocolVersion::SSLv3 => "SSLv3",
        _ => "-",
    }
}

fn cipher_name(suite: CipherSuite) -> &'static str {
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
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, HandshakeKind, RootCertStore};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{client, TlsConnector};

    const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    const SLOW: Duration = Duration::from_secs(5);

    fn file(name: &str) -> PathBuf {
        Path::new(CERTS).join(name)
    }

    fn pair(name: &str) -> CertificatePaths {
        CertificatePaths {
            cert: file(&format!("{name}.crt")),
            key: file(&format!("{name}.key")),
        }
    }

    fn leaf(name: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(file(&format!("{name}.crt"))).unwrap()
    }

    /// A file with `contents` in the temporary folder, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(contents: &[u8]) -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "elbe-tls-test-{}-{}.pem",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn client_config(
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(leaf("dev-ca")).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    fn default_client() -> Arc<ClientConfig> {
        client_config(&[&TLS13, &TLS12], &[b"http/1.1"])
    }

    /// Serves `acceptor` on a loopback port: each connection gets one line describing its handshake
    /// (`protocol cipher alpn_h2 sni`), then an echo of what it sends.
    async fn serve(acceptor: Arc<TlsAcceptor>, timeout: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = Arc::clone(&acceptor);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp, timeout).await else {
                        return;
                    };
                    let info = handshake_info(tls.get_ref().1);
                    let line = format!(
                        "{} {} {} {}\n",
                        info.protocol,
                        info.cipher,
                        info.alpn_h2,
                        info.sni.as_deref().unwrap_or("-")
                    );
                    if tls.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    struct Client {
        stream: client::TlsStream<TcpStream>,
        /// The server's handshake line.
        info: String,
    }

    impl Client {
        fn served(&self) -> CertificateDer<'static> {
            self.stream.get_ref().1.peer_certificates().unwrap()[0]
                .clone()
                .into_owned()
        }

        fn kind(&self) -> Option<HandshakeKind> {
            self.stream.get_ref().1.handshake_kind()
        }

        async fn echo(&mut self, text: &str) -> String {
            self.stream.write_all(text.as_bytes()).await.unwrap();
            let mut buf = vec![0; text.len()];
            self.stream.read_exact(&mut buf).await.unwrap();
            String::from_utf8(buf).unwrap()
        }
    }

    async fn connect(
        addr: SocketAddr,
        config: &Arc<ClientConfig>,
        name: &str,
    ) -> io::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut stream = TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await?;
        let mut line = Vec::new();
        loop {
            let byte = stream.read_u8().await?;
            if byte == b'\n' {
                break;
            }
            line.push(byte);
        }
        Ok(Client {
            stream,
            info: String::from_utf8(line).unwrap(),
        })
    }

    async fn start(certs: &[&str], policy: Option<&str>) -> (Arc<TlsAcceptor>, SocketAddr) {
        let paths: Vec<_> = certs.iter().map(|c| pair(c)).collect();
        let acceptor = Arc::new(TlsAcceptor::new(&paths, policy).unwrap());
        let addr = serve(Arc::clone(&acceptor), SLOW).await;
        (acceptor, addr)
    }

    // --- policies ---

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

    #[test]
    fn every_policy_builds_a_server_config() {
        for policy in POLICIES {
            assert!(policy.ciphers().all(|c| c != "-"), "{}", policy.name);
            server_config(&[pair("localhost")], Some(policy.name))
                .unwrap_or_else(|e| panic!("{}: {e}", policy.name));
        }
    }

    // --- loading ---

    fn load_err(paths: CertificatePaths) -> TlsError {
        load_certificates(&[paths]).unwrap_err()
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_err(CertificatePaths {
            cert: file("nope.crt"),
            key: file("localhost.key"),
        });
        assert!(matches!(err, TlsError::FileNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.crt"), "{err}");
        let err = load_err(CertificatePaths {
            cert: file("localhost.crt"),
            key: file("nope.key"),
        });
        assert!(err.to_string().contains("nope.key"), "{err}");
    }

    #[test]
    fn key_not_matching_certificate_is_refused() {
        let err = load_err(CertificatePaths {
            cert: file("localhost.crt"),
            key: file("example.key"),
        });
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("example.key") && text.contains("localhost.crt"),
            "{text}"
        );
    }

    #[test]
    fn garbage_pem_is_refused() {
        let garbage = Scratch::new(b"this is not a certificate\n");
        let names =
            |err: &TlsError, file: &Scratch| err.to_string().contains(&*file.0.to_string_lossy());

        let err = load_err(CertificatePaths {
            cert: garbage.0.clone(),
            key: file("localhost.key"),
        });
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(names(&err, &garbage), "{err}");

        let err = load_err(CertificatePaths {
            cert: file("localhost.crt"),
            key: garbage.0.clone(),
        });
        assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
        assert!(names(&err, &garbage), "{err}");

        let broken =
            Scratch::new(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        let err = load_err(CertificatePaths {
            cert: broken.0.clone(),
            key: file("localhost.key"),
        });
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(names(&err, &broken), "{err}");

        let not_x509 =
            Scratch::new(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let err = load_err(CertificatePaths {
            cert: not_x509.0.clone(),
            key: file("localhost.key"),
        });
        assert!(matches!(err, TlsError::BadCertificate { .. }), "{err:?}");
        assert!(names(&err, &not_x509), "{err}");
    }

    #[test]
    fn no_certificates_is_refused() {
        assert!(matches!(
            load_certificates(&[]),
            Err(TlsError::NoCertificates)
        ));
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let err = load_err(pair("expired"));
        assert!(matches!(err, TlsError::Expired { .. }), "{err:?}");
        assert!(err.to_string().contains("expired.crt"), "{err}");
        assert!(err.to_string().contains("2021"), "{err}");
        let err = load_err(pair("not-yet-valid"));
        assert!(matches!(err, TlsError::NotYetValid { .. }), "{err:?}");
        assert!(err.to_string().contains("not-yet-valid.crt"), "{err}");
    }

    #[test]
    fn validity_edges() {
        let t = |s| ASN1Time::from_timestamp(s).unwrap();
        let path = Path::new("x.crt");
        assert!(check_validity(path, t(100), t(200), 100).is_ok());
        assert!(check_validity(path, t(100), t(200), 200).is_ok());
        assert!(matches!(
            check_validity(path, t(100), t(200), 99),
            Err(TlsError::NotYetValid { .. })
        ));
        assert!(matches!(
            check_validity(path, t(100), t(200), 201),
            Err(TlsError::Expired { .. })
        ));
    }

    #[test]
    fn sni_selection() {
        let set = load_certificates(&[pair("localhost"), pair("example")]).unwrap();
        let is = |sni: Option<&str>, index: usize| Arc::ptr_eq(set.select(sni), &set.keys[index]);
        assert!(is(None, 0));
        assert!(is(Some("localhost"), 0));
        assert!(is(Some("www.example.test"), 1));
        assert!(is(Some("WWW.Example.TEST"), 1));
        assert!(is(Some("api.example.test"), 1));
        assert!(is(Some("Api.Example.Test."), 1));
        // A wildcard covers exactly one label.
        assert!(is(Some("example.test"), 0));
        assert!(is(Some("a.b.example.test"), 0));
        assert!(is(Some("unknown.test"), 0));

        // The first certificate is the default whatever it is.
        let set = load_certificates(&[pair("example"), pair("localhost")]).unwrap();
        assert!(Arc::ptr_eq(set.select(None), &set.keys[0]));
        assert!(Arc::ptr_eq(set.select(Some("unknown.test")), &set.keys[0]));
        assert!(Arc::ptr_eq(set.select(Some("localhost")), &set.keys[1]));
    }

    // --- handshakes ---

    #[tokio::test]
    async fn tls13_and_tls12_under_the_default_policy() {
        let (_acceptor, addr) = start(&["localhost", "example"], None).await;
        let tls13 = connect(addr, &default_client(), "localhost").await.unwrap();
        assert_eq!(tls13.info, "TLSv1.3 TLS_AES_128_GCM_SHA256 false localhost");

        let only12 = client_config(&[&TLS12], &[]);
        let tls12 = connect(addr, &only12, "localhost").await.unwrap();
        assert_eq!(
            tls12.info,
            "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256 false localhost"
        );
        let tls12 = connect(addr, &only12, "www.example.test").await.unwrap();
        assert_eq!(
            tls12.info,
            "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 false www.example.test"
        );
    }

    #[tokio::test]
    async fn tls13_only_policy_refuses_a_tls12_client() {
        let (_acceptor, addr) =
            start(&["localhost"], Some("ELBSecurityPolicy-TLS13-1-3-2021-06")).await;
        let only12 = client_config(&[&TLS12], &[]);
        assert!(connect(addr, &only12, "localhost").await.is_err());
        let ok = connect(addr, &default_client(), "localhost").await.unwrap();
        assert!(ok.info.starts_with("TLSv1.3 "), "{}", ok.info);
    }

    #[tokio::test]
    async fn sni_picks_the_certificate() {
        let (_acceptor, addr) = start(&["localhost", "example"], None).await;
        let client = default_client();
        for (name, expected) in [
            ("localhost", "localhost"),
            ("www.example.test", "example"),
            ("api.example.test", "example"),
        ] {
            let c = connect(addr, &client, name).await.unwrap();
            assert_eq!(c.served(), leaf(expected), "{name}");
        }
        // An IP address is not sent as SNI: the default (localhost, which also names 127.0.0.1) answers.
        let c = connect(addr, &client, "127.0.0.1").await.unwrap();
        assert_eq!(c.served(), leaf("localhost"));
        assert!(c.info.ends_with(" -"), "{}", c.info);
    }

    #[tokio::test]
    async fn no_sni_gets_the_default_even_when_another_certificate_matches() {
        let (_acceptor, addr) = start(&["example", "localhost"], None).await;
        let mut config = (*client_config(&[&TLS13, &TLS12], &[])).clone();
        config.enable_sni = false;
        let c = connect(addr, &Arc::new(config), "www.example.test")
            .await
            .unwrap();
        assert_eq!(c.served(), leaf("example"));
    }

    #[tokio::test]
    async fn alpn_h2_when_offered() {
        let (_acceptor, addr) = start(&["localhost"], None).await;
        let h2 = client_config(&[&TLS13, &TLS12], &[b"h2", b"http/1.1"]);
        let c = connect(addr, &h2, "localhost").await.unwrap();
        assert_eq!(c.stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert!(c.info.contains(" true "), "{}", c.info);

        let h1 = connect(addr, &default_client(), "localhost").await.unwrap();
        assert_eq!(
            h1.stream.get_ref().1.alpn_protocol(),
            Some(&b"http/1.1"[..])
        );
        assert!(h1.info.contains(" false "), "{}", h1.info);
    }

    #[tokio::test]
    async fn reload_keeps_the_old_config_on_error_and_swaps_on_success() {
        let (acceptor, addr) = start(&["localhost"], None).await;
        let client = default_client();
        let mut before = connect(addr, &client, "localhost").await.unwrap();
        assert_eq!(before.served(), leaf("localhost"));

        let missing = CertificatePaths {
            cert: file("nope.crt"),
            key: file("localhost.key"),
        };
        let err = acceptor.reload(&[missing], None).unwrap_err();
        assert!(err.to_string().contains("nope.crt"), "{err}");
        let garbage = Scratch::new(b"garbage");
        let broken = CertificatePaths {
            cert: garbage.0.clone(),
            key: file("localhost.key"),
        };
        assert!(acceptor.reload(&[broken], None).is_err());
        let err = acceptor
            .reload(&[pair("example")], Some("nope"))
            .unwrap_err();
        assert!(matches!(err, TlsError::UnknownPolicy { .. }), "{err:?}");
        let still = connect(addr, &client, "localhost").await.unwrap();
        assert_eq!(still.served(), leaf("localhost"));

        acceptor.reload(&[pair("example")], None).unwrap();
        let after = connect(addr, &default_client(), "www.example.test")
            .await
            .unwrap();
        assert_eq!(after.served(), leaf("example"));
        // The connection opened before the reload still works.
        assert_eq!(before.echo("still here\n").await, "still here\n");
    }

    #[tokio::test]
    async fn handshake_timeout_closes_a_silent_client() {
        let timeout = Duration::from_millis(200);
        let acceptor = Arc::new(TlsAcceptor::new(&[pair("localhost")], None).unwrap());

        let (_client, server) = tokio::io::duplex(1024);
        let err = acceptor.accept(server, timeout).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");

        let addr = serve(acceptor, timeout).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = tokio::time::Instant::now();
        let mut buf = [0; 16];
        let read = tokio::time::timeout(SLOW, tcp.read(&mut buf)).await;
        let elapsed = started.elapsed();
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert!(
            elapsed >= timeout - Duration::from_millis(50),
            "{elapsed:?}"
        );
        assert!(elapsed < SLOW, "{elapsed:?}");
    }

    #[tokio::test]
    async fn sessions_resume() {
        let (_acceptor, addr) = start(&["localhost"], None).await;
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            let client = client_config(versions, &[]);
            let mut first = connect(addr, &client, "localhost").await.unwrap();
            // A round trip lets the client read the session tickets that follow the handshake.
            assert_eq!(first.echo("x").await, "x");
            assert_eq!(first.kind(), Some(HandshakeKind::Full));
            let second = connect(addr, &client, "localhost").await.unwrap();
            assert_eq!(
                second.kind(),
                Some(HandshakeKind::Resumed),
                "{}",
                second.info
            );
        }
    }
}
