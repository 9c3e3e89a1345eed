//! A real etcd for tests (issue 16, DESIGN.md "The state store"): Debian's `etcd-server`, started on two free
//! loopback ports with its own data directory in a temporary folder, stopped by its pid.
//!
//! Rule: the test owns the process: [`Etcd::kill`] is `kill -9` of that pid (nothing else is ever signalled),
//! [`Etcd::restart`] starts it again on the same data directory and ports (what a crashed etcd's supervisor
//! does), [`Etcd::replace`] starts a fresh one on the same ports (an etcd restored from nothing: its revision
//! goes backwards). A missing `etcd` binary fails the test, saying what to install.
//!
//! Trade-off: std, tempfile and nix's `kill` only (all the crate's tests have them), so the library's own unit tests can include this file with `#[path]` and the
//! cluster's integration tests can `mod etcd_support;` it; readiness is polled over plain HTTP (`GET /health`)
//! with a deadline, never a fixed sleep.
// Each test file uses part of it; `pub` items are the tests' API; readiness is polled on a plain thread, where
// std's clock is the clock (tokio's paused clock is for in-memory I/O, never a real etcd).
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started etcd may take to answer `/health` (a cold start on a loaded machine takes about a second).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One single-member etcd cluster on loopback, killed when dropped.
pub struct Etcd {
    child: Option<Child>,
    /// The temporary folder holding the data directories and the log; removed when dropped.
    folder: tempfile::TempDir,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// How many data directories this etcd has had (a new one per [`Etcd::replace`]).
    generation: u32,
}

impl Etcd {
    /// Starts etcd on two free loopback ports with a new data directory, and waits until it answers.
    pub fn start() -> Etcd {
        let folder = tempfile::tempdir().expect("a temporary folder for etcd");
        let data_dir = folder.path().join("data-0");
        let mut etcd = Etcd {
            child: None,
            folder,
            data_dir,
            client_port: free_port(),
            peer_port: free_port(),
            generation: 0,
        };
        etcd.spawn();
        etcd
    }

    /// The client URL (`http://127.0.0.1:PORT`), the endpoint elbe's `[cluster] etcd` lists.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port))
    }

    /// The running process's pid (for SIGSTOP and SIGCONT in the cluster's tests).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("etcd is running").id()
    }

    /// The current data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `kill -9` of the process, then waits for it to be gone (its ports free).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL; an already exited child is not an error worth failing a test on here.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: etcd holds its connections open and answers nothing (a hung or partitioned etcd).
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`Etcd::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.pid()).expect("a pid fits an i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("{signal} to etcd ({pid}): {e}"));
    }

    /// Starts the killed etcd again on the same data directory and ports, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills this etcd and starts a fresh one (a new, empty data directory) on the same ports: a cluster
    /// restored from nothing, whose revision starts again from 1.
    pub fn replace(&mut self) {
        self.kill();
        self.generation += 1;
        self.data_dir = self.folder.path().join(format!("data-{}", self.generation));
        self.spawn();
    }

    /// Compacts etcd's history up to its current revision (physically: etcd answers once it is done), through
    /// its JSON gateway (`/v3/kv/compaction`, what `etcdctl compact` sends): a watch asking for a revision
    /// before it is refused as compacted. Returns the revision compacted to.
    pub fn compact(&self) -> u64 {
        let range = post(self.address(), "/v3/kv/range", r#"{"key":"AA=="}"#)
            .unwrap_or_else(|| panic!("etcd answers a read:\n{}", self.log()));
        let revision: u64 = json_field(&range, "revision")
            .unwrap_or_else(|| panic!("a revision in etcd's answer: {range}"));
        let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
        let answer = post(self.address(), "/v3/kv/compaction", &body)
            .unwrap_or_else(|| panic!("etcd answers the compaction:\n{}", self.log()));
        assert!(
            answer.contains("\"header\""),
            "compaction refused: {answer}"
        );
        revision
    }

    /// What etcd has logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("etcd.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.folder.path().join("etcd.log"))
            .expect("etcd's log file");
        let child = Command::new("etcd")
            .arg("--name=elbe-test")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=elbe-test={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `etcd` (Debian package etcd-server: apt-get install etcd-server; ./test.sh installs it): {e}")
            });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls `GET /health` until etcd says it is healthy, or fails the test with its log.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if health(self.address()).is_some_and(|body| body.contains("\"health\":\"true\"")) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("etcd exited ({status}) before answering:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not answer /health within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The body of `GET /health`, or `None` while etcd does not answer.
fn health(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The body of a JSON `POST` to etcd's gateway, or `None` while etcd does not answer.
fn post(address: SocketAddr, path: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// A number field of etcd's JSON (the gateway writes 64-bit integers as strings), wherever it is in `json`.
fn json_field(json: &str, name: &str) -> Option<u64> {
    let at = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let digits: String = json[at..]
        .trim_start_matches('"')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A loopback port free now (the kernel's pick, released for etcd to bind).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}
