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
//! stronger than what the policy allowed, and clients that cannot speak it fall back to TLS 1.2. See [`policy::POLICIES`].
//!
//! # Layout
//!
//! In the order a listener uses them:
//!
//! - [`policy`]: ELB's predefined policies ([`policy::POLICIES`]) and what rustls serves of each.
//! - [`certificates`]: PEM files loaded and checked; [`certificates::CertificateSet`] picks one by SNI.
//! - [`acceptor`]: [`TlsAcceptor`], the policy and certificates as a rustls configuration, its handshake with a
//!   timeout, and its swap on reload.
//! - [`negotiated`]: what a finished handshake agreed on ([`handshake_info`]), named as OpenSSL and ELB's access
//!   log name it.
//!
//! This file holds the error type every part returns while loading, [`TlsError`].
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

pub(crate) mod acceptor;
pub(crate) mod certificates;
#[cfg(test)]
mod fixtures;
pub(crate) mod negotiated;
pub(crate) mod policy;

use std::io;
use std::path::PathBuf;

use rustls_pki_types::pem;

pub(crate) use acceptor::TlsAcceptor;
pub(crate) use negotiated::handshake_info;

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
