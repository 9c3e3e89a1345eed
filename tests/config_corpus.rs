//! The malformed-configuration corpus (issue 12 §4): every file under `tests/config_corpus/` is a configuration
//! with one mistake, and the real binary must refuse each with exit code 2 and one line that names the file, the
//! key path and the reason (DESIGN.md "Shutdown and reload": `elbe check` and a refused reload print nothing
//! else). A sample of them, sent to a running `elbe run` by a real SIGHUP, must be refused while the old
//! configuration keeps serving and `/status` reports the error.
//!
//! Each corpus file says what it expects in its first two lines:
//!
//! ```text
//! # expect: load_balancer[0].listener[0].instance_protocol
//! # reason: an HTTP listener needs an instance_protocol of HTTP or HTTPS, not TCP
//! ```
//!
//! `expect` is the exact key path (`-` for a TOML syntax error, which has a line and column instead), `reason`
//! a part of the reason the message must contain. `elbe check` runs in the corpus folder with the bare file name,
//! so the file a message names and the relative certificate paths it quotes read the same on every machine.
//! A new kind of mistake is one new file; the test needs no change.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_corpus")
}

/// One corpus file and what it expects.
struct Case {
    name: String,
    text: String,
    /// `None` for a TOML syntax error, which has no key path.
    key: Option<String>,
    reason: String,
}

/// Reads every `.toml` file of the corpus; a file without both expectation lines is a mistake in the corpus.
fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let key = lines.next().and_then(|l| l.strip_prefix("# expect: "));
        let reason = lines.next().and_then(|l| l.strip_prefix("# reason: "));
        let (Some(key), Some(reason)) = (key, reason) else {
            panic!("{name}: the first two lines must be `# expect: <key path or ->` and `# reason: <words>`");
        };
        assert!(!reason.trim().is_empty(), "{name}: an empty reason");
        cases.push(Case {
            key: (key.trim() != "-").then(|| key.trim().to_owned()),
            reason: reason.trim().to_owned(),
            name,
            text,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// What is wrong with `message` (an error line) for `case`, if anything: it must start with the file name and
/// the key path and contain the reason.
fn mismatch(case: &Case, file: &str, message: &str) -> Option<String> {
    let prefix = match &case.key {
        Some(key) => format!("{file}: {key}: "),
        None => format!("{file}: TOML syntax error"),
    };
    if !message.starts_with(&prefix) {
        return Some(format!("does not start with {prefix:?}"));
    }
    if !message.contains(&case.reason) {
        return Some(format!("lacks the reason {:?}", case.reason));
    }
    None
}

#[test]
fn every_corpus_file_is_refused_naming_file_key_and_reason() {
    let cases = corpus();
    assert!(
        cases.len() >= 40,
        "the corpus has {} files; issue 12 asks for at least 40",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let out = Command::new(env!("CARGO_BIN_EXE_elbe"))
            .current_dir(corpus_dir())
            .args(["check", "--config", &case.name])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr.trim_end();
        let problem = if out.status.code() != Some(2) {
            Some(format!("exit status {:?}, not 2", out.status.code()))
        } else if !out.stdout.is_empty() {
            Some("printed to standard output".to_owned())
        } else if message.lines().count() != 1 {
            Some("is not exactly one line".to_owned())
        } else {
            mismatch(case, &case.name, message)
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}\n    got: {message}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files were not refused as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Corpus files a running elbe is sent by SIGHUP: one per kind of mistake (syntax, unknown key, type, duration,
/// pairing rule, duplicate port, certificate file, health check, node address, socket collision), none of them
/// with a certificate path that would resolve differently outside the corpus folder.
const RELOAD_SAMPLE: &[&str] = &[
    "syntax_unclosed_table.toml",
    "unknown_key_in_load_balancer.toml",
    "type_port_is_a_string.toml",
    "duration_bare_number.toml",
    "pairing_tcp_to_http.toml",
    "duplicate_load_balancer_port.toml",
    "certificate_cert_missing.toml",
    "health_timeout_equals_interval.toml",
    "node_not_an_ip.toml",
    "two_zones_one_node.toml",
];

/// A good file for `elbe run`: admin and the node on any free port, one instance checked every 100 ms.
fn good_config(instance: std::net::SocketAddr, idle_timeout: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[limits]\nshutdown_grace = \"2s\"\n\n\
         [[load_balancer]]\nname = \"web\"\nidle_timeout = \"{idle_timeout}\"\n\n\
         [[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.0.0.1\"\n\n\
         [[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n\n\
         [load_balancer.health_check]\ntarget = \"TCP:80\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n\n\
         [[load_balancer.instance]]\nid = \"i-1\"\nzone = \"zone-a\"\naddress = \"{instance}\"\n"
    )
}

/// `elbe run` as a child process, its log lines on a channel (read as they come, so its stdout never fills).
struct Running {
    child: tokio::process::Child,
    log: mpsc::UnboundedReceiver<String>,
}

impl Running {
    /// Runs `elbe run --config elbe.toml` in `dir`, so messages name the file and its relative paths as the
    /// corpus expects them.
    fn start(dir: &Path) -> Running {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_elbe"))
            .current_dir(dir)
            .args(["run", "--config", "elbe.toml"])
            .env("RUST_LOG", "elbe=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, log }
    }

    /// The `address=` of the first log line containing each of `messages` (logged in any order), within 10 s.
    async fn logged_addresses<const N: usize>(
        &mut self,
        messages: [&str; N],
    ) -> [std::net::SocketAddr; N] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found: [Option<std::net::SocketAddr>; N] = [None; N];
        while found.iter().any(Option::is_none) {
            let line = tokio::time::timeout_at(deadline, self.log.recv())
                .await
                .unwrap_or_else(|_| panic!("elbe did not log all of {messages:?} within 10 s"))
                .unwrap_or_else(|| panic!("elbe exited before logging all of {messages:?}"));
            let Some(n) = messages.iter().position(|m| line.contains(m)) else {
                continue;
            };
            let address = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("address="))
                .unwrap_or_else(|| panic!("no address= in {line:?}"));
            found[n] = Some(
                address
                    .parse()
                    .unwrap_or_else(|e| panic!("{address:?} in {line:?}: {e}")),
            );
        }
        found.map(|address| address.expect("found"))
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("elbe is running");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
    }
}

/// `/status`'s `config` object, polled (every 20 ms, at most 5 s) until `done` accepts it.
async fn wait_for_config(
    admin: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let config = get(admin, "/status").await.json()["config"].clone();
        if done(&config) {
            return config;
        }
        assert!(
            Instant::now() < deadline,
            "waited 5 s for {what}; /status config is {config}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET through the node, polled until the instance answers 200 (at most 5 s).
async fn wait_until_served(node: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = get(node, "/").await.status;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not serve 200 within 5 s (last {status})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_bad_file_sent_by_sighup_is_refused_and_the_old_configuration_keeps_serving() {
    bounded(Duration::from_secs(60), async {
        let cases = corpus();
        let backend = Backend::start(Behaviour::Echo).await;
        let dir = std::env::temp_dir().join(format!("elbe-corpus-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("elbe.toml");
        std::fs::write(&path, good_config(backend.address, "60s")).unwrap();

        let mut elbe = Running::start(&dir);
        let [admin, node] = elbe
            .logged_addresses(["admin listening", "node listening"])
            .await;
        wait_until_served(node).await;
        let generation = get(admin, "/status").await.json()["config"]["generation"].clone();

        for name in RELOAD_SAMPLE {
            let case = cases
                .iter()
                .find(|c| c.name == *name)
                .unwrap_or_else(|| panic!("{name} is not in the corpus"));
            std::fs::write(&path, &case.text).unwrap();
            elbe.signal(Signal::SIGHUP);
            let config = wait_for_config(admin, &format!("{name} refused"), |config| {
                config["last_reload_error"]
                    .as_str()
                    .is_some_and(|error| mismatch(case, "elbe.toml", error).is_none())
            })
            .await;
            assert_eq!(
                config["generation"], generation,
                "{name}: a refused file must not become a new generation"
            );
            let reply = get(node, "/after-refusal").await;
            assert_eq!(
                reply.status, 200,
                "{name}: the old configuration still serves"
            );
            assert_eq!(reply.json()["uri"], "/after-refusal");
        }

        // A good file again: accepted, a new generation, the error cleared.
        std::fs::write(&path, good_config(backend.address, "30s")).unwrap();
        elbe.signal(Signal::SIGHUP);
        wait_for_config(admin, "the good file accepted", |config| {
            config["last_reload_error"].is_null() && config["generation"] != generation
        })
        .await;
        assert_eq!(get(node, "/after-good-reload").await.status, 200);

        elbe.signal(Signal::SIGTERM);
        let exit = tokio::time::timeout(Duration::from_secs(10), elbe.child.wait())
            .await
            .expect("elbe stops within 10 s of SIGTERM")
            .unwrap();
        assert!(exit.success(), "SIGTERM exits 0: {exit:?}");
        std::fs::remove_dir_all(&dir).ok();
    })
    .await;
}
