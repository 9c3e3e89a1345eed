//! Test fixtures shared by the TLS modules' tests: the development certificates in `certs/` (see
//! `certs/README.md`; `dev-ca` signs `localhost`, `example`, `expired` and `not-yet-valid`) and scratch files
//! for contents no committed file should hold.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::CertificatePaths;

/// The committed development certificates.
const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

/// A file in `certs/`, by name.
pub(super) fn file(name: &str) -> PathBuf {
    Path::new(CERTS).join(name)
}

/// The certificate `name.crt` and its key `name.key`.
pub(super) fn pair(name: &str) -> CertificatePaths {
    CertificatePaths {
        cert: file(&format!("{name}.crt")),
        key: file(&format!("{name}.key")),
    }
}

/// The certificate in `name.crt`, as a client sees it served.
pub(super) fn leaf(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(file(&format!("{name}.crt"))).unwrap()
}

/// A file with `contents` in the temporary folder, removed when dropped.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(contents: &[u8]) -> Scratch {
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
