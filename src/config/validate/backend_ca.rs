//! `backend_ca` on a `[[load_balancer.backend_server]]`: the CA an instance port's HTTPS/SSL instances are verified
//! against (DESIGN.md "TCP and SSL listeners").
//!
//! Rule: ELB attached back-end authentication to an instance port (a BackendServerAuthenticationPolicyType through
//! SetLoadBalancerPoliciesForBackendServer, ELB-SPEC §12), so elbe takes it there too, and only where a listener
//! speaks HTTPS or SSL to that port: on a plain port it would verify nothing, a mistake better refused. The file
//! is read here, not at start: a missing file, one without a certificate, or a certificate that cannot be a trust
//! anchor is refused with its key and path by `elbe check`, start and reload alike, and the configuration
//! carries the certificates, so a reload sees a changed file as a changed configuration.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::error::ConfigError;
use crate::config::model::{BackendCa, Listener};
use crate::config::validate::context::Cx;

impl Cx<'_> {
    /// `backend_ca` of the backend server at `bkey` on `instance_port`: a PEM file of CA certificates, resolved
    /// against the file's folder, on a port some listener speaks HTTPS or SSL to.
    pub(super) fn backend_ca(
        &self,
        bkey: &str,
        instance_port: u16,
        given: &Path,
        listeners: &[Listener],
    ) -> Result<BackendCa, ConfigError> {
        let key = format!("{bkey}.backend_ca");
        if given.as_os_str().is_empty() {
            return Err(self.err(key, "must be a file path, not empty"));
        }
        let secure = listeners
            .iter()
            .any(|l| l.instance_port == instance_port && l.instance_protocol.is_secure());
        if !secure {
            return Err(self.err(
                key,
                format!(
                    "no listener speaks HTTPS or SSL to instance_port {instance_port}, so there is no instance \
                     certificate to verify (set instance_protocol = \"HTTPS\" or \"SSL\" on its listener)"
                ),
            ));
        }
        let path = self.base.join(given);
        let certificates =
            read_ca(&path).map_err(|why| self.err(&key, format!("{}: {why}", path.display())))?;
        Ok(BackendCa { path, certificates })
    }
}

/// The certificates of a PEM file, each one a usable trust anchor; or why not, in plain words.
fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ if path.is_dir() => "it is a directory, not a file".to_owned(),
        _ => format!("cannot read the file: {e}"),
    })?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("no certificate (no `BEGIN CERTIFICATE` PEM block) in the file".to_owned());
    }
    let mut roots = rustls::RootCertStore::empty();
    for (n, certificate) in certificates.iter().enumerate() {
        roots
            .add(certificate.clone())
            .map_err(|e| format!("certificate {} cannot be a trust anchor: {e}", n + 1))?;
    }
    Ok(certificates)
}
