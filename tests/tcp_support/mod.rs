//! What the TCP, SSL and Proxy Protocol tests share: the listener tables, instances that echo, record or name
//! themselves over raw TCP, and reading one metric.
#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A `[[load_balancer.listener]]` of `protocol` to `instance_protocol` on port 0 (SSL ones with the development
/// certificate) plus `extra` lines.
pub(crate) fn listener(protocol: &str, instance_protocol: &str, extra: &str) -> String {
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
    let certificates = if protocol == "SSL" {
        format!(
            "certificates = [{{ cert = \"{certs}/localhost.crt\", key = \"{certs}/localhost.key\" }}, {{ cert = \"{certs}/example.crt\", key = \"{certs}/example.key\" }}]\n"
        )
    } else {
        String::new()
    };
    format!(
        "[[load_balancer.listener]]\nprotocol = \"{protocol}\"\nload_balancer_port = 0\ninstance_protocol = \"{instance_protocol}\"\ninstance_port = 80\n{certificates}{extra}"
    )
}

/// A raw TCP instance: each connection is handed to `serve` on its own task. Health checks connect and close;
/// `serve` sees those as connections that send nothing.
pub(crate) struct Instance {
    pub(crate) address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Instance {
    pub(crate) async fn start<F, Fut>(serve: F) -> Instance
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Instance::serve(listener, serve)
    }

    pub(crate) fn serve<F, Fut>(listener: TcpListener, serve: F) -> Instance
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        Instance { address, task }
    }

    /// Echoes every byte back; half-closes when the client does.
    pub(crate) async fn echo() -> Instance {
        Instance::start(|mut stream| async move {
            let (mut read, mut write) = stream.split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
            let _ = write.shutdown().await;
        })
        .await
    }

    /// Sends `name` on connect, then echoes.
    pub(crate) async fn named(name: &'static str) -> Instance {
        Instance::start(move |mut stream| async move {
            if stream.write_all(name.as_bytes()).await.is_err() {
                return;
            }
            let (mut read, mut write) = stream.split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
        })
        .await
    }

    /// Records everything each connection sends until it closes or goes quiet for 300 ms after its first byte;
    /// answers `ok` after the first bytes.
    pub(crate) async fn recording() -> (Instance, Recorded) {
        let (store, recorded) = tokio::sync::mpsc::unbounded_channel();
        let instance = Instance::start(move |mut stream| {
            let store = store.clone();
            async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let wait = if seen.is_empty() { 5000 } else { 300 };
                    match tokio::time::timeout(Duration::from_millis(wait), stream.read(&mut buf))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => {
                            if seen.is_empty() {
                                let _ = stream.write_all(b"ok").await;
                            }
                            seen.extend_from_slice(&buf[..n]);
                        }
                        _ => break,
                    }
                }
                if !seen.is_empty() {
                    let _ = store.send(seen);
                }
            }
        })
        .await;
        (instance, recorded)
    }
}

/// What each connection to a recording instance sent, as each ends (connections that sent nothing, such as
/// health checks, are left out).
pub(crate) type Recorded = tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>;

/// The next connection's bytes, within 5 s.
pub(crate) async fn next_recorded(recorded: &mut Recorded) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), recorded.recv())
        .await
        .expect("a connection is recorded in time")
        .expect("the instance runs")
}

/// Reads until the peer closes, at most `limit`; panics on a timeout.
pub(crate) async fn read_to_end<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    limit: Duration,
) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut all))
        .await
        .expect("the peer closes in time")
        .expect("reading succeeds");
    all
}

/// Reads exactly `n` bytes within 5 s.
pub(crate) async fn read_n<R: tokio::io::AsyncRead + Unpin>(stream: &mut R, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .expect("bytes arrive in time")
        .expect("reading succeeds");
    buf
}

/// The sum of a metric's series for zone-a in the Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(&format!("{name}{{")) && l.contains("availability_zone=\"zone-a\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
