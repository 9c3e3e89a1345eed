//! elbe as a child process (the real `elbe` binary on a generated configuration, ports read back from its log), with
//! what the flood tests measure of it: resident memory, CPU time, open files; and a normal client's latency.
// Shared by the flood test binaries, each of which uses a part.
#![allow(unreachable_pub, dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

use crate::common::{Generated, InstanceSpec};

/// The running `elbe run --config FILE`, killed when dropped.
pub struct ElbeProcess {
    child: Child,
    dir: PathBuf,
    pub admin: SocketAddr,
    /// (protocol, address) of every node listener, in the order the log gave them.
    pub listeners: Vec<(String, SocketAddr)>,
}

impl ElbeProcess {
    /// Starts elbe on `toml` with its open-file limit set to `nofile` (`ulimit -n` in the shell that execs it), and
    /// waits until its listeners are bound and every instance has had its first health check.
    pub async fn start(toml: &str, nofile: u64) -> ElbeProcess {
        let dir =
            std::env::temp_dir().join(format!("elbe-process-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("elbe.toml");
        std::fs::write(&config, toml).unwrap();
        let log = std::fs::File::create(dir.join("elbe.log")).unwrap();
        // `exec` keeps the pid: the child's pid is elbe's, for /proc.
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {nofile} && exec \"$0\" run --config \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_elbe"))
            .arg(&config)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("ELBE_TEST_LOG").unwrap_or("elbe=info".into()),
            )
            .stdin(Stdio::null())
            // tracing writes to stdout, errors go to stderr: one log of both.
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("elbe starts");
        let mut process = ElbeProcess {
            child,
            dir,
            admin: "0.0.0.0:0".parse().unwrap(),
            listeners: Vec::new(),
        };
        process.read_addresses().await;
        process.wait_for_first_checks().await;
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What elbe has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("elbe.log")).unwrap_or_default()
    }

    /// The first node listener of `protocol` (HTTP, HTTPS).
    pub fn listener(&self, protocol: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(p, _)| p == protocol)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {protocol} listener in {:?}", self.listeners))
    }

    /// Polls the log (at most 10 s) for the admin listener's line, which comes after every node listener's.
    async fn read_addresses(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("elbe exited ({status}) at start:\n{}", self.log());
            }
            let log = self.log();
            if log.contains("admin listening") {
                for line in log.lines() {
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|f| f.strip_prefix(name))
                            .map(str::to_string)
                    };
                    let address = field("address=").and_then(|a| a.parse().ok());
                    match address {
                        Some(address) if line.contains("admin listening") => self.admin = address,
                        Some(address) if line.contains("node listening") => self
                            .listeners
                            .push((field("protocol=").unwrap_or_default(), address)),
                        _ => {}
                    }
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "elbe did not report its admin listener within 10 s:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/status` (at most 5 s) until no instance is still waiting for its first health check.
    async fn wait_for_first_checks(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = crate::common::get(self.admin, "/status").await;
            if !String::from_utf8_lossy(&status.body).contains("still in progress") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instances not checked within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory now, in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// CPU time used so far (user + system, /proc/PID/stat), in clock ticks of 10 ms.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Files elbe has open now.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Samples resident memory every 20 ms until the sampler is stopped; its peak is what a flood cost.
    pub fn sample_rss(&self) -> RssSampler {
        let pid = self.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(self.rss_kib()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        p.fetch_max(kib, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }
}

impl Drop for ElbeProcess {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The peak resident memory seen since [`ElbeProcess::sample_rss`].
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Stops sampling; the peak in KiB.
    pub fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.peak.load(Ordering::SeqCst)
    }
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// An instance on 127.0.0.1: `GET /download/N` answers N generated bytes, anything else a small 200.
pub struct Instance {
    pub address: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Instance {
    /// Starts the instance on its own runtime (two threads), so the attacks the test runs on its runtime do not
    /// slow the instance down: what the normal client measures is elbe.
    pub async fn start() -> Instance {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        // A backlog of 1,024: the floods open 128 connections to the instance at once, which would overflow the
        // default 128 and cost the normal client a SYN retransmit (1 s) that is the instance's, not elbe's. A send
        // buffer of 64 KiB (accepted sockets inherit it): left to autotune, 128 downloads that elbe does not read
        // each fill megabytes of kernel buffer, a second of the instance's CPU that the normal client would wait.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1024).unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let counted = counted.clone();
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = match request.uri().path().strip_prefix("/download/") {
                        Some(n) => Generated::new(n.parse().unwrap_or(0)).boxed(),
                        None => Full::new(Bytes::from_static(b"ok")).boxed(),
                    };
                    async move { Ok::<_, Infallible>(http::Response::new(body)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        drop(_entered);
        Instance {
            address,
            requests,
            connections,
            runtime: Some(runtime),
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections elbe opened to this instance so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// This instance as the configuration's `i-1` in zone-a.
    pub fn spec(&self) -> InstanceSpec {
        InstanceSpec {
            id: "i-1".into(),
            zone: "zone-a".into(),
            address: self.address,
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The machine, held by one heavy test at a time: the flood and slow-client tests measure latency and memory and
/// hold thousands of sockets, so they must not run beside each other, whether the runner puts tests on threads
/// (`cargo test`) or in processes (`cargo nextest`). An advisory lock on a file in the target folder, held until
/// dropped. Take it before the test's time limit starts: waiting for another test is not this one being slow.
pub struct Machine(#[allow(dead_code)] std::fs::File);

pub async fn machine() -> Machine {
    let path = concat!(env!("CARGO_TARGET_TMPDIR"), "/elbe-heavy-tests.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    tokio::task::spawn_blocking(move || {
        file.lock().expect("the heavy-test lock");
        Machine(file)
    })
    .await
    .unwrap()
}

/// Raises this test process's open-file limit to `wanted` (setrlimit), failing the test if the hard limit is lower.
pub fn raise_nofile(wanted: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= wanted,
        "this test needs {wanted} open files; the hard RLIMIT_NOFILE is {hard} (raise it: ulimit -Hn)"
    );
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).unwrap();
    }
}

/// Latencies of a normal client's requests.
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    /// The `p`th percentile (0 to 100).
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    pub fn summary(&self) -> String {
        format!(
            "{} requests: p50 {:?}, p99 {:?}, max {:?}",
            self.0.len(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(100.0)
        )
    }
}

/// A normal client through elbe and the same client straight to the instance behind it, run side by side: what
/// elbe adds to a request is the difference. On a shared 2-core machine a request that waits for a descheduled
/// core is late with or without elbe in the way (CI saw a lone client's p99 at 11-13 ms on a quiet elbe), and that
/// wait is the machine's.
pub struct SideBySide {
    pub through_elbe: Latencies,
    pub direct: Latencies,
}

impl SideBySide {
    /// Runs [`normal_client`] to `elbe` and to `instance` at once until `stop` is set.
    pub async fn run(
        elbe: SocketAddr,
        instance: SocketAddr,
        every: Duration,
        stop: Arc<AtomicBool>,
    ) -> SideBySide {
        let through_elbe = normal_client(elbe, every, stop.clone());
        let direct = normal_client(instance, every, stop);
        let (through_elbe, direct) = tokio::join!(through_elbe, direct);
        SideBySide {
            through_elbe,
            direct,
        }
    }

    /// Fails `what` unless elbe's client got at least `requests` answers and its p99 is under `allowance` over the
    /// direct client's.
    pub fn assert_elbe_adds_under(&self, allowance: Duration, requests: usize, what: &str) {
        assert!(
            self.through_elbe.0.len() >= requests,
            "{what}: the normal client got only {} responses",
            self.through_elbe.0.len()
        );
        assert!(
            self.through_elbe.percentile(99.0) < allowance + self.direct.percentile(99.0),
            "{what}: the normal client's p99 is over {allowance:?} more than the machine's: {}",
            self.summary()
        );
    }

    /// How many requests the two clients brought to the instance (each one's answered requests).
    pub fn requests(&self) -> usize {
        self.through_elbe.0.len() + self.direct.0.len()
    }

    pub fn summary(&self) -> String {
        format!(
            "through elbe {}; straight to the instance {}",
            self.through_elbe.summary(),
            self.direct.summary()
        )
    }
}

/// A normal client: GET / on one keep-alive HTTP/1.1 connection every `every` until `stop` is set; the latencies.
/// It runs on its own thread and runtime, so what the test's instance and attackers do on the test's runtime does
/// not delay it: its latency is elbe's. A request that fails or gets anything but 200 fails the test.
pub fn normal_client(
    address: SocketAddr,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> impl std::future::Future<Output = Latencies> {
    let (done, latencies) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done.send(runtime.block_on(requests(address, every, stop)));
    });
    async move {
        latencies
            .await
            .expect("the normal client finished (its panic is above)")
    }
}

async fn requests(address: SocketAddr, every: Duration, stop: Arc<AtomicBool>) -> Latencies {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut latencies = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let request = http::Request::get("/")
            .header("host", "example.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let sent = Instant::now();
        let response = sender.send_request(request).await.expect("a response");
        assert_eq!(response.status(), 200, "the normal client was refused");
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("the whole body");
        latencies.push(sent.elapsed());
        tokio::time::sleep(every).await;
    }
    Latencies(latencies)
}
