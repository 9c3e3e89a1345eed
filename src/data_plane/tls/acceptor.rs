//! A listener's TLS acceptor: its policy and certificates as one rustls configuration, the server handshake with a
//! deadline, and the swap of that configuration on reload (SIGHUP).
//!
//! The configuration follows the listener's ELB policy (ELB-SPEC §12, see [`super::policy`]) and adds what ELB
//! Classic never had: ALPN (`h2` before `http/1.1`) and TLS 1.3. A handshake that does not finish within the
//! listener's `tls_handshake_timeout` is dropped, so a silent client holds a socket for a bounded time.
//!
//! Trade-offs: the configuration sits behind an `ArcSwap`, loaded once per handshake; a reload builds and checks
//! a whole new one first and swaps it only on success, so a bad file leaves the listener serving what it served.
//! Each configuration has its own ticket key and session cache, so sessions never outlive a reload (a full
//! handshake per client after a rare reload is cheap). No 0-RTT: a proxy cannot know whether a replay is safe.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::aws_lc_rs;
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};

use super::certificates::load_certificates;
use super::policy::security_policy;
use super::TlsError;
use crate::config::CertificatePaths;

/// ALPN protocols offered to clients, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Server-side TLS session cache size per listener (sessions resumed by ID rather than by ticket).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// A listener's TLS acceptor. Its configuration can be swapped at run time ([`TlsAcceptor::replace_with`] on SIGHUP) without
/// dropping open connections: a connection keeps the configuration it was accepted with.
///
/// ALPN offers `h2` then `http/1.1`. Session resumption: stateless tickets (rustls' rotating ticketer, 6-hour keys)
/// and a server-side cache of 4096 sessions.
#[derive(Debug)]
pub(crate) struct TlsAcceptor {
    config: ArcSwap<ServerConfig>,
}

/// A handshake that did not complete. Always the client's side of the connection (or the network): there is
/// nothing to retry; the caller closes the connection and counts it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed")]
    Failed(#[source] io::Error),
}

impl HandshakeError {
    /// The handshake ran out of time (a silent or slow client), as opposed to one that failed on what was sent.
    #[cfg(test)]
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, HandshakeError::Timeout(_))
    }
}

impl TlsAcceptor {
    /// Loads the certificates and builds the configuration for `policy` (`None`:
    /// [`DEFAULT_POLICY`](super::policy::DEFAULT_POLICY)).
    pub(crate) fn new(paths: &[CertificatePaths], policy: Option<&str>) -> Result<Self, TlsError> {
        Ok(TlsAcceptor {
            config: ArcSwap::new(server_config(paths, policy)?),
        })
    }

    /// The same for an SSL listener: no ALPN, since the bytes after the handshake go to the instance unread (an
    /// `h2` offered here would have an HTTP/2 client speak HTTP/2 to an HTTP/1 instance).
    pub(crate) fn without_alpn(
        paths: &[CertificatePaths],
        policy: Option<&str>,
    ) -> Result<Self, TlsError> {
        let mut config = server_config(paths, policy)?;
        Arc::make_mut(&mut config).alpn_protocols.clear();
        Ok(TlsAcceptor {
            config: ArcSwap::new(config),
        })
    }

    /// Re-reads the files and swaps in the new configuration for the handshakes that follow. On any error the
    /// current configuration stays and the error is returned (the caller logs it). Open connections are untouched.
    #[cfg(test)]
    pub(crate) fn reload(
        &self,
        paths: &[CertificatePaths],
        policy: Option<&str>,
    ) -> Result<(), TlsError> {
        self.config.store(server_config(paths, policy)?);
        Ok(())
    }

    /// Runs the server handshake on `io`, giving up after `timeout` (the connection is then dropped, which closes
    /// it). The configuration is loaded once, here; the returned stream takes no lock.
    pub(crate) async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> Result<tokio_rustls::server::TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        match tokio::time::timeout(timeout, acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::Timeout(timeout)),
        }
    }
}

/// Builds the whole rustls configuration for one listener from its files and policy name, checking everything
/// first: [`TlsAcceptor::new`] (start and reload alike) goes through here, so a reload cannot accept what a
/// start would refuse.
fn server_config(
    paths: &[CertificatePaths],
    policy: Option<&str>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let policy = security_policy(policy)?;
    let certificates = load_certificates(paths)?;
    if policy.floor_raised {
        tracing::warn!(
            ssl_policy = policy.name,
            "the policy allows only SSLv3/TLSv1, which elbe does not speak; serving TLS 1.2 and 1.3"
        );
    }
    let provider = policy.provider();
    let ticketer = aws_lc_rs::Ticketer::new().map_err(|source| TlsError::Policy {
        name: policy.name,
        source,
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(policy.versions)
        .map_err(|source| TlsError::Policy {
            name: policy.name,
            source,
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certificates));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = policy.server_order();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.ticketer = ticketer;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::tls::fixtures::{file, leaf, pair, Scratch};
    use crate::data_plane::tls::negotiated::handshake_info;
    use crate::data_plane::tls::policy::POLICIES;
    use rustls::pki_types::ServerName;
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConfig, HandshakeKind, RootCertStore, SupportedProtocolVersion};
    use rustls_pki_types::CertificateDer;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{client, TlsConnector};

    const SLOW: Duration = Duration::from_secs(5);

    fn client_config(
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(leaf("dev-ca")).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    fn default_client() -> Arc<ClientConfig> {
        client_config(&[&TLS13, &TLS12], &[b"http/1.1"])
    }

    /// Serves `acceptor` on a loopback port: each connection gets one line describing its handshake
    /// (`protocol cipher alpn_h2 sni`), then an echo of what it sends.
    async fn serve(acceptor: Arc<TlsAcceptor>, timeout: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = Arc::clone(&acceptor);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp, timeout).await else {
                        return;
                    };
                    let info = handshake_info(tls.get_ref().1);
                    let (cipher, protocol) = info.negotiated.names();
                    let line = format!(
                        "{} {} {} {}\n",
                        protocol,
                        cipher,
                        info.alpn_h2,
                        info.sni.as_deref().unwrap_or("-")
                    );
                    if tls.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    struct Client {
        stream: client::TlsStream<TcpStream>,
        /// The server's handshake line.
        info: String,
    }

    impl Client {
        fn served(&self) -> CertificateDer<'static> {
            self.stream.get_ref().1.peer_certificates().unwrap()[0]
                .clone()
                .into_owned()
        }

        fn kind(&self) -> Option<HandshakeKind> {
            self.stream.get_ref().1.handshake_kind()
        }

        async fn echo(&mut self, text: &str) -> String {
            self.stream.write_all(text.as_bytes()).await.unwrap();
            let mut buf = vec![0; text.len()];
            self.stream.read_exact(&mut buf).await.unwrap();
            String::from_utf8(buf).unwrap()
        }
    }

    async fn connect(
        addr: SocketAddr,
        config: &Arc<ClientConfig>,
        name: &str,
    ) -> io::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut stream = TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await?;
        let mut line = Vec::new();
        loop {
            let byte = stream.read_u8().await?;
            if byte == b'\n' {
                break;
            }
            line.push(byte);
        }
        Ok(Client {
            stream,
            info: String::from_utf8(line).unwrap(),
        })
    }

    async fn start(certs: &[&str], policy: Option<&str>) -> (Arc<TlsAcceptor>, SocketAddr) {
        let paths: Vec<_> = certs.iter().map(|c| pair(c)).collect();
        let acceptor = Arc::new(TlsAcceptor::new(&paths, policy).unwrap());
        let addr = serve(Arc::clone(&acceptor), SLOW).await;
        (acceptor, addr)
    }

    #[test]
    fn every_policy_builds_a_server_config() {
        for policy in POLICIES {
            assert!(policy.ciphers().all(|c| c != "-"), "{}", policy.name);
            server_config(&[pair("localhost")], Some(policy.name))
                .unwrap_or_else(|e| panic!("{}: {e}", policy.name));
        }
    }

    #[tokio::test]
    async fn tls13_and_tls12_under_the_default_policy() {
        let (_acceptor, addr) = start(&["localhost", "example"], None).await;
        let tls13 = connect(addr, &default_client(), "localhost").await.unwrap();
        assert_eq!(tls13.info, "TLSv1.3 TLS_AES_128_GCM_SHA256 false localhost");

        let only12 = client_config(&[&TLS12], &[]);
        let tls12 = connect(addr, &only12, "localhost").await.unwrap();
        assert_eq!(
            tls12.info,
            "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256 false localhost"
        );
        let tls12 = connect(addr, &only12, "www.example.test").await.unwrap();
        assert_eq!(
            tls12.info,
            "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 false www.example.test"
        );
    }

    #[tokio::test]
    async fn tls13_only_policy_refuses_a_tls12_client() {
        let (_acceptor, addr) =
            start(&["localhost"], Some("ELBSecurityPolicy-TLS13-1-3-2021-06")).await;
        let only12 = client_config(&[&TLS12], &[]);
        assert!(connect(addr, &only12, "localhost").await.is_err());
        let ok = connect(addr, &default_client(), "localhost").await.unwrap();
        assert!(ok.info.starts_with("TLSv1.3 "), "{}", ok.info);
    }

    #[tokio::test]
    async fn sni_picks_the_certificate() {
        let (_acceptor, addr) = start(&["localhost", "example"], None).await;
        let client = default_client();
        for (name, expected) in [
            ("localhost", "localhost"),
            ("www.example.test", "example"),
            ("api.example.test", "example"),
        ] {
            let c = connect(addr, &client, name).await.unwrap();
            assert_eq!(c.served(), leaf(expected), "{name}");
        }
        // An IP address is not sent as SNI: the default (localhost, which also names 127.0.0.1) answers.
        let c = connect(addr, &client, "127.0.0.1").await.unwrap();
        assert_eq!(c.served(), leaf("localhost"));
        assert!(c.info.ends_with(" -"), "{}", c.info);
    }

    #[tokio::test]
    async fn no_sni_gets_the_default_even_when_another_certificate_matches() {
        let (_acceptor, addr) = start(&["example", "localhost"], None).await;
        let mut config = (*client_config(&[&TLS13, &TLS12], &[])).clone();
        config.enable_sni = false;
        let c = connect(addr, &Arc::new(config), "www.example.test")
            .await
            .unwrap();
        assert_eq!(c.served(), leaf("example"));
    }

    #[tokio::test]
    async fn alpn_h2_when_offered() {
        let (_acceptor, addr) = start(&["localhost"], None).await;
        let h2 = client_config(&[&TLS13, &TLS12], &[b"h2", b"http/1.1"]);
        let c = connect(addr, &h2, "localhost").await.unwrap();
        assert_eq!(c.stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert!(c.info.contains(" true "), "{}", c.info);

        let h1 = connect(addr, &default_client(), "localhost").await.unwrap();
        assert_eq!(
            h1.stream.get_ref().1.alpn_protocol(),
            Some(&b"http/1.1"[..])
        );
        assert!(h1.info.contains(" false "), "{}", h1.info);
    }

    #[tokio::test]
    async fn reload_keeps_the_old_config_on_error_and_swaps_on_success() {
        let (acceptor, addr) = start(&["localhost"], None).await;
        let client = default_client();
        let mut before = connect(addr, &client, "localhost").await.unwrap();
        assert_eq!(before.served(), leaf("localhost"));

        let missing = CertificatePaths {
            cert: file("nope.crt"),
            key: file("localhost.key"),
        };
        let err = acceptor.reload(&[missing], None).unwrap_err();
        assert!(err.to_string().contains("nope.crt"), "{err}");
        let garbage = Scratch::new(b"garbage");
        let broken = CertificatePaths {
            cert: garbage.0.clone(),
            key: file("localhost.key"),
        };
        assert!(acceptor.reload(&[broken], None).is_err());
        let err = acceptor
            .reload(&[pair("example")], Some("nope"))
            .unwrap_err();
        assert!(matches!(err, TlsError::UnknownPolicy { .. }), "{err:?}");
        let still = connect(addr, &client, "localhost").await.unwrap();
        assert_eq!(still.served(), leaf("localhost"));

        acceptor.reload(&[pair("example")], None).unwrap();
        let after = connect(addr, &default_client(), "www.example.test")
            .await
            .unwrap();
        assert_eq!(after.served(), leaf("example"));
        // The connection opened before the reload still works.
        assert_eq!(before.echo("still here\n").await, "still here\n");
    }

    #[tokio::test]
    async fn handshake_timeout_closes_a_silent_client() {
        let timeout = Duration::from_millis(200);
        let acceptor = Arc::new(TlsAcceptor::new(&[pair("localhost")], None).unwrap());

        let (_client, server) = tokio::io::duplex(1024);
        let err = acceptor.accept(server, timeout).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");

        let addr = serve(acceptor, timeout).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = tokio::time::Instant::now();
        let mut buf = [0; 16];
        let read = tokio::time::timeout(SLOW, tcp.read(&mut buf)).await;
        let elapsed = started.elapsed();
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert!(
            elapsed >= timeout - Duration::from_millis(50),
            "{elapsed:?}"
        );
        assert!(elapsed < SLOW, "{elapsed:?}");
    }

    #[tokio::test]
    async fn sessions_resume() {
        let (_acceptor, addr) = start(&["localhost"], None).await;
        for versions in [&[&TLS13][..], &[&TLS12][..]] {
            let client = client_config(versions, &[]);
            let mut first = connect(addr, &client, "localhost").await.unwrap();
            // A round trip lets the client read the session tickets that follow the handshake.
            assert_eq!(first.echo("x").await, "x");
            assert_eq!(first.kind(), Some(HandshakeKind::Full));
            let second = connect(addr, &client, "localhost").await.unwrap();
            assert_eq!(
                second.kind(),
                Some(HandshakeKind::Resumed),
                "{}",
                second.info
            );
        }
    }
}
