//! A listener's certificates: PEM files read and checked, then one picked per handshake by SNI.
//!
//! [`load_certificates`] reads each certificate chain and its key, and refuses what would fail handshakes later:
//! malformed PEM, a key rustls cannot use, a key that does not match its certificate, a certificate outside its
//! validity period. [`CertificateSet`] then answers rustls's "which certificate for this client?": the first
//! certificate is the default, the others are chosen by the DNS names in their subject alternative names. ELB
//! Classic had one certificate and no SNI (ELB-SPEC §12); a one-certificate set behaves exactly like it.
//!
//! Trade-offs: names are matched the way browsers and curl match them (exact names and one-label `*.` wildcards,
//! ASCII case ignored); a partial wildcard (`f*.example.com`) is skipped rather than refused, since clients reject
//! it anyway and the certificate that carries it is otherwise fine. Checks read the clock once per load: a
//! certificate that expires while served is not noticed until the next reload (loading warns 30 days ahead).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::aws_lc_rs;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::TlsError;
use crate::config::CertificatePaths;

/// A certificate closer than this to its `not_after` is loaded with a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// One HTTPS listener's certificates: the first is the default; others are chosen by SNI, matching exact DNS names
/// and `*.example.com` wildcards (one label) from each certificate's SAN entries, case-insensitively. No SNI or no
/// match gets the default. When two certificates claim a name, the earlier one in the list wins.
///
/// Immutable once built; [`ResolvesServerCert::resolve`] does two hash lookups and takes no lock.
#[derive(Debug)]
pub(crate) struct CertificateSet {
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
pub(crate) fn load_certificates(paths: &[CertificatePaths]) -> Result<CertificateSet, TlsError> {
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
    for p in paths {
        let loaded = load_one(p, &provider, now)?;
        set.push(loaded, &p.cert);
    }
    Ok(set)
}

impl CertificateSet {
    /// Appends a certificate and indexes its names. A name already claimed keeps its earlier certificate, so the
    /// configuration's order decides between overlapping certificates.
    fn push(&mut self, loaded: Loaded, path: &Path) {
        let index = self.keys.len();
        for name in loaded.dns_names {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) if !parent.is_empty() && !parent.contains('*') => {
                    self.wildcard.entry(parent.into()).or_insert(index);
                }
                // A partial wildcard (`f*.example.com`) or a bare `*`: clients reject these; so do we.
                _ if name.contains('*') => {
                    tracing::debug!(path = %path.display(), %name, "ignoring unsupported wildcard SAN");
                }
                _ => {
                    self.exact.entry(name.into()).or_insert(index);
                }
            }
        }
        self.keys.push(Arc::new(loaded.key));
    }
}

/// One checked certificate and key, with the DNS names SNI can select it by.
struct Loaded {
    key: CertifiedKey,
    dns_names: Vec<String>,
}

/// Loads one certificate and its key, certificate first, so that the first problem found is the one reported.
fn load_one(
    paths: &CertificatePaths,
    provider: &CryptoProvider,
    now: i64,
) -> Result<Loaded, TlsError> {
    let (chain, dns_names) = load_chain(&paths.cert, now)?;
    let signing_key = load_key(&paths.key, provider)?;
    let key = CertifiedKey::new(chain, signing_key);
    key.keys_match().map_err(|source| TlsError::KeyMismatch {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        source,
    })?;
    Ok(Loaded { key, dns_names })
}

/// Reads a PEM certificate chain, checks its leaf's validity period at `now` and returns the chain with the
/// leaf's DNS names. Only the leaf is parsed: the chain above it is the client's to verify.
fn load_chain(
    path: &Path,
    now: i64,
) -> Result<(Vec<CertificateDer<'static>>, Vec<String>), TlsError> {
    let cert_pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    };
    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            source: e.into(),
        })?;
    let validity = x509.validity();
    check_validity(path, validity.not_before, validity.not_after, now)?;
    let dns_names = dns_names(path, &x509)?;
    Ok((chain, dns_names))
}

/// The DNS names among a certificate's subject alternative names (IP addresses and others are not SNI names).
fn dns_names(path: &Path, x509: &X509Certificate<'_>) -> Result<Vec<String>, TlsError> {
    match x509.subject_alternative_name() {
        Ok(Some(san)) => Ok(san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect()),
        Ok(None) => Ok(Vec::new()),
        Err(source) => Err(TlsError::BadCertificate {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1) and makes it a signing key of `provider`.
fn load_key(path: &Path, provider: &CryptoProvider) -> Result<Arc<dyn SigningKey>, TlsError> {
    let key_pem = read(path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })?;
    provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: path.to_owned(),
            source,
        })
}

/// Reads a whole file. A missing file gets its own error: it is the commonest mistake in a configuration.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::tls::fixtures::{file, pair, Scratch};

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
}
