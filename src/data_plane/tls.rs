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
pub(crate) use negotiated::{handshake_info, Negotiated};

/// Why certificates or a policy could not be loaded. Every variant names the file (or the policy) and the reason;
/// the underlying error, when there is one, is the `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// An HTTPS or SSL listener with no `certificates`.
    #[error("an HTTPS listener needs at least one certificate")]
    NoCertificates,
    /// A certificate or key file that does not exist.
    #[error("{}: file not found", path.display())]
    FileNotFound {
        /// The file named in the configuration, resolved against its folder.
        path: PathBuf,
        #[source]
        /// The `open(2)` error.
        source: io::Error,
    },
    /// A certificate or key file that exists but cannot be read (permissions, a folder).
    #[error("{}: cannot read the file", path.display())]
    Read {
        /// The file named in the configuration, resolved against its folder.
        path: PathBuf,
        #[source]
        /// The read error.
        source: io::Error,
    },
    /// A file that is not PEM.
    #[error("{}: malformed PEM", path.display())]
    Pem {
        /// The file named in the configuration, resolved against its folder.
        path: PathBuf,
        #[source]
        /// The PEM parser's error.
        source: pem::Error,
    },
    /// A certificate file with no certificate in it.
    #[error("{}: no certificate (no `BEGIN CERTIFICATE` PEM block) in the file", path.display())]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// A certificate that does not parse as X.509.
    #[error("{}: the certificate is not valid X.509", path.display())]
    BadCertificate {
        /// The certificate file.
        path: PathBuf,
        #[source]
        /// The X.509 parser's error.
        source: x509_parser::error::X509Error,
    },
    /// A key file with no private key in it.
    #[error("{}: no private key (no PKCS#8, PKCS#1 or SEC1 PEM block) in the file", path.display())]
    NoKey {
        /// The key file.
        path: PathBuf,
    },
    /// A private key rustls cannot sign with (an unsupported algorithm or curve).
    #[error("{}: unsupported private key", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        #[source]
        /// Why rustls refused the key.
        source: rustls::Error,
    },
    /// A private key that does not belong to the certificate, caught at load rather than at the first handshake.
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        #[source]
        /// Why rustls found them unmatched.
        source: rustls::Error,
    },
    /// A certificate past its `notAfter`: refused at load rather than served to clients who would reject it.
    #[error("{}: the certificate expired on {not_after}", path.display())]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// When it expired, as X.509 writes it.
        not_after: String,
    },
    /// A certificate before its `notBefore`.
    #[error("{}: the certificate is not valid before {not_before}", path.display())]
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// When it becomes valid, as X.509 writes it.
        not_before: String,
    },
    /// An `ssl_policy` that is not one of ELB's predefined policies (ELB-SPEC §12).
    #[error("unknown ssl_policy {name:?}; known policies: {known}")]
    UnknownPolicy {
        /// The name as the configuration spells it.
        name: String,
        /// The policies elbe knows, listed for the message.
        known: String,
    },
    /// A predefined policy rustls cannot build.
    #[error("ssl_policy {name}: rustls refused the policy's protocol versions or cipher suites")]
    Policy {
        /// The policy's name, e.g. `ELBSecurityPolicy-TLS-1-2-2017-01`.
        name: &'static str,
        #[source]
        /// Why rustls refused its versions or suites.
        source: rustls::Error,
    },
}
