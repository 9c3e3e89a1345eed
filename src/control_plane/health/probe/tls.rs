//! The TLS client of SSL and HTTPS probes: one configuration for the whole process, certificates unverified.
//!
//! The rule is ELB-SPEC §2.1: ELB does not validate an instance's certificate, and sends no SNI. Trade-offs: one
//! rustls `ClientConfig`, built on first use, serves every probe, so sessions resume across checks of an instance;
//! rustls speaks TLS 1.2 and 1.3 only, so an instance offering nothing newer than TLS 1.0/1.1 fails its SSL check
//! here although ELB would pass it. The handshake signature is still checked against the presented key, which costs
//! nothing and proves the instance holds that key.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// The one TLS client configuration of every SSL/HTTPS probe in the process, or why it cannot be built.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    // A OnceLock, not a lock: built once, then only read. A failure is kept too: it cannot change on a retry.
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnverifiedCertificate(provider)))
        .with_no_client_auth();
    config.enable_sni = false;
    Ok(Arc::new(config))
}

/// ELB does not validate instance certificates (ELB-SPEC §2.1): any chain is accepted. The handshake signature is
/// still checked against the presented key, which costs nothing and proves the instance holds that key.
#[derive(Debug)]
struct UnverifiedCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for UnverifiedCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
