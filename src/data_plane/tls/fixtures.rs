//! Test fixtures shared by the TLS modules' tests: the development certificates in `certs/` (see
//! `certs/README.md`; `dev-ca` signs `localhost`, `example`, `expired` and `not-yet-valid`) and scratch files
//! for contents no committed file should hold.

use std::path::{Path, PathBuf};

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
/// A scratch file with the given contents, removed when dropped.
/// The second field is never read: it is held so that the file is removed when the scratch is dropped.
pub(super) struct Scratch(pub(super) PathBuf, #[allow(dead_code)] tempfile::TempPath);

impl Scratch {
    pub(super) fn new(contents: &[u8]) -> Scratch {
        let file = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
        std::fs::write(file.path(), contents).unwrap();
        let path = file.into_temp_path();
        Scratch(path.to_path_buf(), path)
    }
}
