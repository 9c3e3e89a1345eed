//! The TLS clients elbe speaks to instances with: `instance_protocol = "HTTPS"` on HTTP/HTTPS listeners and
//! `"SSL"` on SSL listeners (ELB-SPEC §1, §12), and the HTTPS/SSL health checks.
//!
//! The rule is ELB's: no SNI is sent to an instance, and by default no certificate is verified (ELB without
//! back-end authentication, ELB-SPEC §2.1, §12). [`unverified`] is that client, one for the whole process, so TLS
//! sessions resume across connections and checks of an instance. With `backend_ca` on the instance port's
//! `[[load_balancer.backend_server]]`, [`verifying`] builds a client that accepts only a chain to that CA, valid
//! now (DESIGN.md "TCP and SSL listeners").
//!
//! Trade-offs: rustls speaks TLS 1.2 and 1.3 only, so an instance offering nothing newer than TLS 1.0/1.1 fails
//! here although ELB would reach it. Every client checks the handshake signature against the presented key, which
//! costs nothing and proves the instance holds that key. The name in the certificate is never checked, with or
//! without `backend_ca` ([`ChainToCa`] says why).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The one unverified TLS client of the process (instances without `backend_ca`, every SSL/HTTPS health check),
/// or why rustls refused to build it.
pub(crate) fn unverified() -> Result<Arc<ClientConfig>, rustls::Error> {
    // A OnceLock, not a lock: built once, then only read. A failure is kept too: it cannot change on a retry.
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            build(Arc::new(AnyCertificate(provider.clone())), provider)
        })
        .clone()
}

/// A TLS client that accepts only instances whose chain leads to one of `ca` (a `backend_ca` file's
/// certificates, already checked by the configuration), valid now.
pub(crate) fn verifying(
    ca: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for certificate in ca {
        roots.add(certificate.clone())?;
    }
    let provider = provider();
    let verifier = ChainToCa {
        roots: Arc::new(roots),
        provider: provider.clone(),
    };
    build(Arc::new(verifier), provider)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn build(
    verifier: Arc<dyn ServerCertVerifier>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // ELB sends no SNI to instances (ELB-SPEC §12).
    config.enable_sni = false;
    Ok(Arc::new(config))
}

/// ELB without back-end authentication (ELB-SPEC §2.1, §12): any chain is accepted.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `backend_ca`: the instance's chain must lead to the CA and be valid now; the name in it is not checked.
///
/// Why not the name: ELB sends no SNI and asks for no name (ELB-SPEC §12), and its own back-end authentication
/// compared the certificate's public key, never a name. Instances are registered by address, and an instance's
/// certificate rarely names its private IP (which changes whenever the instance is replaced), so checking the IP
/// as the name would refuse most real instances while adding little: with a private CA, holding a certificate the
/// CA signed is the authentication. Revocation is not checked either (ELB did not).
#[derive(Debug)]
struct ChainToCa {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainToCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let certificate = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &certificate,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls12_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn tls13_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::CertificateError;

    const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

    fn pem(name: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(format!("{CERTS}/{name}.crt"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Verifies the development certificate `leaf` against `ca` as `backend_ca` would, reached at 127.0.0.1.
    fn verify(ca: &str, leaf: &str) -> Result<ServerCertVerified, rustls::Error> {
        let mut roots = RootCertStore::empty();
        for certificate in pem(ca) {
            roots.add(certificate).unwrap();
        }
        let verifier = ChainToCa {
            roots: Arc::new(roots),
            provider: provider(),
        };
        let chain = pem(leaf);
        let address = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        verifier.verify_server_cert(&chain[0], &chain[1..], &address, &[], UnixTime::now())
    }

    #[test]
    fn backend_ca_accepts_a_chain_to_the_ca_whatever_name_it_carries() {
        // `example` names *.example.test, never 127.0.0.1.
        assert!(verify("dev-ca", "example").is_ok());
    }

    #[test]
    fn backend_ca_refuses_an_expired_certificate_and_one_from_another_issuer() {
        let expired = verify("dev-ca", "expired").unwrap_err();
        assert!(
            matches!(
                expired,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{expired:?}"
        );
        // `localhost` is a leaf, not the CA that signed `example`.
        let stranger = verify("localhost", "example").unwrap_err();
        assert!(
            matches!(
                stranger,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            ),
            "{stranger:?}"
        );
    }

    #[test]
    fn both_clients_send_no_sni() {
        assert!(!unverified().unwrap().enable_sni);
        assert!(!verifying(&pem("dev-ca")).unwrap().enable_sni);
    }
}
