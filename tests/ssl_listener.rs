//! SSL listeners (ELB-SPEC §1, §12; DESIGN.md "TCP and SSL listeners") over real sockets: TLS is terminated with
//! the HTTPS listeners' certificates and SNI, and the bytes inside go to a plain TCP instance (SSL -> TCP) or over
//! a new TLS connection that sends no SNI and carries no PROXY line (SSL -> SSL), with a rustls client and with
//! `openssl s_client`.
mod common;
mod tcp_support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tcp_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client that trusts only the development CA.
fn client_config() -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(format!("{CERTS}/dev-ca.crt")).unwrap();
    roots.add(ca).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Offered as browsers offer them: an SSL listener must choose neither (the instance reads the bytes).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn tls_connect(
    address: std::net::SocketAddr,
    name: &'static str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config());
    connector
        .connect(ServerName::try_from(name).unwrap(), tcp)
        .await
        .expect("the handshake with elbe succeeds and its certificate verifies")
}

/// A TLS echo instance (the development `example` certificate); each connection first sends `sni=<name>` or
/// `sni=-` for the server name the client sent, then echoes.
async fn tls_echo_instance() -> Instance {
    let certs = CertificateDer::pem_file_iter(format!("{CERTS}/example.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{CERTS}/example.key")).unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    Instance::start(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            // Health checks connect and close without a handshake.
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
            if tls
                .write_all(format!("sni={sni};").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = tls.shutdown().await;
        }
    })
    .await
}

fn builder(instance_protocol: &str, instance: &Instance, extra_tables: &str) -> ConfigBuilder {
    let mut builder = ConfigBuilder::new();
    builder.listeners = vec![format!(
        "{}{extra_tables}",
        listener("SSL", instance_protocol, "")
    )];
    builder.instance(InstanceSpec {
        id: "i-1".into(),
        zone: "zone-a".into(),
        address: instance.address,
    })
}

#[tokio::test]
async fn ssl_to_tcp_terminates_tls_and_passes_the_plaintext() {
    let echo = Instance::echo().await;
    let elbe = builder("TCP", &echo, "").start().await;
    let node = elbe.node("zone-a");
    // SNI picks the second certificate, as on HTTPS listeners; the client verifies it against the name.
    for name in ["localhost", "www.example.test"] {
        let mut tls = tls_connect(node, name).await;
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            None,
            "an SSL listener chose ALPN"
        );
        tls.write_all(b"\x00\x01 not HTTP \r\n").await.unwrap();
        assert_eq!(read_n(&mut tls, 14).await, b"\x00\x01 not HTTP \r\n");
        tls.shutdown().await.unwrap();
        assert!(read_to_end(&mut tls, Duration::from_secs(5))
            .await
            .is_empty());
    }
    let metrics = elbe.server().metrics().encode();
    assert_eq!(
        metric(&metrics, "elbe_tls_handshakes_total"),
        2.0,
        "{metrics}"
    );
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn ssl_to_tcp_with_openssl_s_client() {
    let echo = Instance::echo().await;
    let elbe = builder("TCP", &echo, "").start().await;
    let connect_to = elbe.node("zone-a").to_string();
    let ca = format!("{CERTS}/dev-ca.crt");
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect_to,
            "-servername",
            "localhost",
        ])
        .args(["-CAfile", &ca, "-verify_return_error", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed (apt-get install openssl)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello through s_client\n").await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    assert_eq!(read_n(&mut stdout, 23).await, b"hello through s_client\n");
    drop(stdin);
    child.kill().await.unwrap();
    assert!(elbe.shutdown().await);
}

#[tokio::test]
async fn ssl_to_ssl_opens_tls_to_the_instance_without_sni_or_proxy_protocol() {
    let instance = tls_echo_instance().await;
    // A Proxy Protocol policy on the instance port: SSL -> SSL still sends no PROXY line (ELB-SPEC §7), or the
    // instance's handshake would fail on it.
    let pp = "\n[[load_balancer.policy]]\nname = \"pp\"\ntype = \"ProxyProtocolPolicyType\"\nproxy_protocol = true\n\n\
              [[load_balancer.backend_server]]\ninstance_port = 80\npolicy_names = [\"pp\"]\n";
    let mut builder = builder("SSL", &instance, pp);
    builder.health_check = "[load_balancer.health_check]\ntarget = \"SSL:80\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n".into();
    let elbe = builder.start().await;
    wait_for_health(&elbe, "i-1", "InService", "N/A").await;
    let mut tls = tls_connect(elbe.node("zone-a"), "localhost").await;
    assert_eq!(
        read_n(&mut tls, 6).await,
        b"sni=-;",
        "ELB sends no SNI to instances"
    );
    tls.write_all(b"end to end").await.unwrap();
    assert_eq!(read_n(&mut tls, 10).await, b"end to end");
    drop(tls);
    assert!(elbe.shutdown().await);
}
