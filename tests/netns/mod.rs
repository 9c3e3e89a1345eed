//! Linux network namespaces for tests that need machines of their own (tests/failover.rs): each made with
//! `ip netns add` and deleted when its [`Netns`] guard drops, even when the test panics, after every process still
//! in it is killed by pid. Programs run inside one with `ip netns exec`; the test's own sockets are opened inside
//! one from a thread that entered it (`setns(2)`, [`Netns::enter`]): a socket stays in the namespace it was made
//! in, whichever thread uses it later.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One network namespace, deleted on drop.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    /// `ip netns add name`, with its loopback up (elbe's admin listener and the instances live on 127.0.0.1).
    pub(crate) fn add(name: String) -> Netns {
        // A namespace left by a run that was killed (no Drop) would make `add` fail: remove it first.
        let _ = Command::new(self::program("ip"))
            .args(["netns", "del", &name])
            .output();
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// `ip -n <name> <args>`, which must succeed; returns its output.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Whether `address` is on one of this namespace's interfaces now.
    pub(crate) fn holds(&self, address: &str) -> bool {
        self.ip(&["-br", "addr", "show"])
            .split_whitespace()
            .any(|field| field.split('/').next() == Some(address))
    }

    /// `program` with `args` inside this namespace, its stdout and stderr appended to `log`.
    pub(crate) fn spawn(&self, program: &Path, args: &[&str], log: &Path) -> Child {
        let file = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        Command::new(self::program("ip"))
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} {}: {e}", self.name, program.display()))
    }

    /// Runs `f` on a thread that entered this namespace: the sockets it opens are this namespace's.
    pub(crate) fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    enter(&path);
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A long-lived thread in this namespace (a client loop).
    pub(crate) fn thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

/// `setns(2)` into the network namespace at `path`, for the calling thread only.
fn enter(path: &Path) {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever still runs inside (keepalived's VRRP child, a process a failed test left): killed by pid, so
        // nothing outlives the test and the namespace can go.
        if let Ok(out) = Command::new(self::program("ip"))
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new(self::program("ip"))
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `program args`, which must succeed; returns its stdout.
pub(crate) fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(self::program(program))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where `name` is ([`find`]), or `name` itself (then spawning it says it is missing).
fn program(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| PathBuf::from(name))
}

/// `name` on PATH or in /usr/sbin and /sbin (where Debian puts ip and keepalived, not on a non-root PATH).
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Fails, saying what to do, unless this process is root (namespaces, addresses and VRRP need it; CI is root).
pub(crate) fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .map(str::to_owned);
    assert_eq!(
        euid.as_deref(),
        Some("0"),
        "this test makes network namespaces and runs keepalived: run it as root (CI does)"
    );
}
