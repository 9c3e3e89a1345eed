//! The real `elbe` binary as a child process, for tests of what an operator or a service manager sees: exit
//! statuses, JSON logs, signals, sd_notify. Everything is on port 0; the admin address is read from elbe's own
//! JSON log line, so nothing waits a fixed time.
// Shared by several test binaries (`pub` shares, it is not an API); it drives child processes from plain threads,
// so it reads the real clock (std's Instant), not tokio's.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any one step may take before the test fails (a debug build on 2 busy cores).
pub(crate) const STEP: Duration = Duration::from_secs(20);

pub(crate) fn elbe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_elbe"))
}

/// A folder under the system temporary folder, removed when dropped.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "elbe-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A configuration with one load balancer "web" on 127.0.0.1 port 0, the admin listener on port 0, fast TCP
/// health checks, and `instances` (`ip:port` each) in zone-a.
pub(crate) fn config(instances: &[SocketAddr]) -> String {
    let mut text = String::from(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[limits]\nshutdown_grace = \"5s\"\n\n[[load_balancer]]\nname = \"web\"\n\n\
         [load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\
         healthy_threshold = 2\nunhealthy_threshold = 2\n\n\
         [[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.0.0.1\"\n\n\
         [[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\n\
         instance_port = 80\n",
    );
    for (n, address) in instances.iter().enumerate() {
        text.push_str(&format!(
            "\n[[load_balancer.instance]]\nid = \"i-{n}\"\nzone = \"zone-a\"\naddress = \"{address}\"\n"
        ));
    }
    text
}

/// `elbe run` with `--log-format json`, its log lines read on a thread.
pub(crate) struct Running {
    pub child: Child,
    pub admin: SocketAddr,
    /// Every JSON log line read so far, parsed.
    pub logs: Vec<serde_json::Value>,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `elbe run --config <file> --log-format json` with `env`, and waits for its admin address.
    pub(crate) fn start(file: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Running {
        let mut command = elbe();
        command
            .args(["run", "--log-format", "json", "--config"])
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Only a test's own socket: never the service manager the test itself may run under.
            .env_remove("NOTIFY_SOCKET");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the elbe binary runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut running = Running {
            child,
            admin: "0.0.0.0:0".parse().unwrap(),
            logs: Vec::new(),
            lines,
        };
        let line = running.wait_for_log(|log| {
            log["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin listening"))
        });
        running.admin = line["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no admin address in {line}"));
        running
    }

    /// The first log line that matches, among those read or to come.
    pub(crate) fn log(
        &mut self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        match self.logs.iter().find(|log| matches(log)) {
            Some(log) => log.clone(),
            None => self.wait_for_log(matches),
        }
    }

    /// Reads log lines until one matches (every line must be JSON); fails the test after [`STEP`].
    pub(crate) fn wait_for_log(
        &mut self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no such log line within {STEP:?}; read: {:#?}", self.logs)
            });
            let log: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            self.logs.push(log.clone());
            if matches(&log) {
                return log;
            }
        }
    }

    /// Sends `signal` to elbe.
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits for elbe to exit; its exit status.
    pub(crate) fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "elbe did not exit within {STEP:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the admin listener: (status code, body).
    pub(crate) fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    /// The `/status` document.
    pub(crate) fn status(&self) -> serde_json::Value {
        let (code, body) = self.admin_get("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/status` until instance `id` is in `state`.
    pub(crate) fn wait_for_state(&self, id: &str, state: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let status = self.status();
            let found = status["load_balancers"][0]["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["instance_id"] == id && i["state"] == state);
            if found {
                return;
            }
            assert!(Instant::now() < deadline, "{id} never {state}: {status:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking `GET` with `Connection: close`: (status code, body).
pub(crate) fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&address, STEP).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}
