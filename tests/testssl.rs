//! testssl.sh (the Debian package `testssl.sh`, command `testssl`) against an HTTPS listener (issue 12 §3): its
//! full default run, parsed from `--jsonfile`, has no HIGH or CRITICAL finding. The summary of a run is in
//! docs/hardening.md. It takes a minute or two; the test fails, saying so, when testssl or openssl is missing.
//!
//! The certificate is made for the run by the development CA, shaped as a production one is: 90 days, with CRL
//! and OCSP addresses. The development certificates themselves (certs/, ten years, no revocation information)
//! draw two HIGH findings that are about the certificate, not about elbe (`cert_validityPeriod`,
//! `cert_revocation`); an operator's real certificate has neither.
mod common;
mod elbe_process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bounded, instance, Backend, Behaviour, ConfigBuilder};
use elbe::config::Protocol;
use elbe_process::machine;

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

/// One finding of testssl's flat JSON output.
#[derive(Debug, serde::Deserialize)]
struct Finding {
    id: String,
    severity: String,
    finding: String,
}

/// Runs `openssl` with `args`, failing the test with its output if it fails.
fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test runs the openssl command line tool: {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A certificate for localhost (RSA 2048, 90 days, CRL and OCSP addresses) signed by the development CA, and its
/// key, written in `dir`.
fn production_shaped_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, csr, crt, ext) = (
        dir.join("leaf.key"),
        dir.join("leaf.csr"),
        dir.join("leaf.crt"),
        dir.join("leaf.ext"),
    );
    std::fs::write(
        &ext,
        "basicConstraints = critical, CA:false\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost\n\
         crlDistributionPoints = URI:http://127.0.0.1:9/dev-ca.crl\n\
         authorityInfoAccess = OCSP;URI:http://127.0.0.1:9/ocsp\n",
    )
    .unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path(&key),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &path(&key),
        "-subj",
        "/O=elbe test/CN=localhost",
        "-out",
        &path(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path(&csr),
        "-CA",
        &format!("{CERTS}/dev-ca.crt"),
        "-CAkey",
        &format!("{CERTS}/dev-ca.key"),
        "-CAcreateserial",
        "-CAserial",
        &path(&dir.join("serial")),
        "-sha256",
        "-days",
        "90",
        "-extfile",
        &path(&ext),
        "-out",
        &path(&crt),
    ]);
    (crt, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_high_or_critical_on_an_https_listener() {
    let _machine = machine().await;
    bounded(Duration::from_secs(900), async {
        let dir = std::env::temp_dir().join(format!("elbe-testssl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = production_shaped_certificate(&dir);
        let backend = Backend::start(Behaviour::Echo).await;
        let mut builder = ConfigBuilder::new().instance(instance("i-1", "zone-a", &backend));
        builder.listeners.push(format!(
            "[[load_balancer.listener]]\nprotocol = \"HTTPS\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\n\
             instance_port = 80\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
            cert.display(),
            key.display()
        ));
        let elbe = builder.start().await;
        let address = elbe.node_for("zone-a", Protocol::Https);
        let json = dir.join("testssl.json");
        let _ = std::fs::remove_file(&json);
        let started = tokio::time::Instant::now();
        let output = tokio::process::Command::new("testssl")
            .args(["--quiet", "--color", "0", "--warnings", "batch"])
            // The development CA signed the certificates; the name is the certificate's, the address elbe's.
            .arg("--add-ca")
            .arg(format!("{CERTS}/dev-ca.crt"))
            .args(["--ip", &address.ip().to_string()])
            .arg("--jsonfile")
            .arg(&json)
            .arg(format!("localhost:{}", address.port()))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!("this test runs `testssl` (Debian package testssl.sh; apt-get install testssl.sh): {e}")
            });
        let took = started.elapsed();
        let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
            panic!(
                "testssl wrote no JSON ({e}); it exited {}:\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let findings: Vec<Finding> = serde_json::from_str(&text).expect("testssl's JSON");
        let _ = std::fs::remove_dir_all(&dir);

        let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
        for finding in &findings {
            *by_severity.entry(finding.severity.as_str()).or_default() += 1;
        }
        println!(
            "testssl: {} findings in {took:?}: {by_severity:?}",
            findings.len()
        );
        for finding in findings
            .iter()
            .filter(|f| !matches!(f.severity.as_str(), "OK" | "INFO"))
        {
            println!("  {} {}: {}", finding.severity, finding.id, finding.finding);
        }
        // The run really tested the listener: protocols and ciphers were probed.
        for id in ["TLS1_2", "TLS1_3", "SSLv3", "heartbleed", "ROBOT"] {
            assert!(
                findings.iter().any(|f| f.id == id),
                "testssl reported nothing for {id}: did it reach {address}?\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        let severe: Vec<&Finding> = findings
            .iter()
            .filter(|f| matches!(f.severity.as_str(), "HIGH" | "CRITICAL"))
            .collect();
        assert!(severe.is_empty(), "HIGH or CRITICAL findings: {severe:#?}");
    })
    .await;
}
