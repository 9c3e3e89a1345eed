//! The systemd unit (packaging/systemd/elbe.service) and the readiness protocol it relies on.
//!
//! `systemd-analyze verify` checks the unit as systemd would load it, `systemd-analyze security --offline`
//! scores its sandbox, and the real binary is started with `$NOTIFY_SOCKET` on a datagram socket of the test's
//! own, then sent SIGHUP and SIGTERM, as `systemctl start`, `reload` and `stop` would.
mod process;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use process::{Running, TempDir, STEP};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/systemd/elbe.service"
);

/// The unit with its programs pointed at this build (verify checks that every Exec*= program exists).
fn unit_for_this_build(dir: &TempDir) -> std::path::PathBuf {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let path = dir.path("elbe.service");
    std::fs::write(
        &path,
        text.replace("/usr/bin/elbe", env!("CARGO_BIN_EXE_elbe")),
    )
    .unwrap();
    path
}

fn systemd_analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze runs (./test.sh installs systemd)")
}

/// `key=value` settings of the unit, in order (comments and section headers left out).
fn settings() -> Vec<(String, String)> {
    std::fs::read_to_string(UNIT)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting(key: &str) -> String {
    settings()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{key}= is missing from the unit"))
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let dir = TempDir::new("systemd-verify");
    let unit = unit_for_this_build(&dir);
    let out = systemd_analyze(&["verify", "--man=no"], &unit);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // verify reports unknown keys and bad values as warnings with exit 0: none may be printed.
    assert!(said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

#[test]
fn the_unit_is_sandboxed_and_says_so_to_systemd_analyze_security() {
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "elbe"),
        ("NoNewPrivileges", "yes"),
    ] {
        assert_eq!(setting(key), value, "{key}=");
    }
    let dir = TempDir::new("systemd-security");
    let unit = unit_for_this_build(&dir);
    let out = systemd_analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    let report = String::from_utf8_lossy(&out.stdout);
    // "→ Overall exposure level for elbe.service: 1.4 OK"; 0 is a fully sandboxed service, 10 an unprotected one.
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{report}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
}

/// systemd's stop timeout outlasts the drain of the configuration the package installs.
#[test]
fn the_stop_timeout_covers_the_packaged_shutdown_grace() {
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/elbe.toml");
    let config = elbe::config::load(&packaged).unwrap();
    let timeout = elbe::config::parse_duration(&setting("TimeoutStopSec")).unwrap();
    assert!(
        timeout > config.limits.shutdown_grace,
        "TimeoutStopSec={timeout:?} does not cover shutdown_grace {:?}",
        config.limits.shutdown_grace
    );
    let start = setting("ExecStart");
    assert!(start.ends_with("--config /etc/elbe/elbe.toml"), "{start}");
}

/// A socket standing in for systemd's notification socket.
struct NotifySocket {
    _dir: TempDir,
    path: std::path::PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = TempDir::new("systemd-notify");
        let path = dir.path("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(STEP)).unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The next notification, as its `KEY=VALUE` lines.
    fn next(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification within {STEP:?}: {e}"));
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The `/status` document's listener addresses, each of which must accept a connection now.
fn assert_every_listener_accepts(elbe: &Running) {
    let status = elbe.status();
    let mut listeners = 0;
    for node in status["load_balancers"][0]["nodes"].as_array().unwrap() {
        for listener in node["listeners"].as_array().unwrap() {
            let address: std::net::SocketAddr =
                listener["address"].as_str().unwrap().parse().unwrap();
            std::net::TcpStream::connect(address)
                .unwrap_or_else(|e| panic!("{address} does not accept after READY=1: {e}"));
            listeners += 1;
        }
    }
    assert!(listeners > 0, "{status:#}");
}

#[test]
fn elbe_notifies_ready_reloading_and_stopping() {
    let notify = NotifySocket::bind();
    let dir = TempDir::new("systemd-run");
    let file = dir.path("elbe.toml");
    std::fs::write(&file, process::config(&[])).unwrap();
    let mut elbe = Running::start(&file, &[("NOTIFY_SOCKET", notify.path.as_os_str())]);

    // READY=1 comes once every listener is bound, with a STATUS= line naming the admin listener.
    let ready = notify.next();
    assert_eq!(ready[0], "READY=1", "{ready:?}");
    assert!(
        ready.contains(&format!(
            "STATUS=serving 1 listener(s); admin on {}",
            elbe.admin
        )),
        "{ready:?}"
    );
    assert_every_listener_accepts(&elbe);
    let generation = elbe.status()["config"]["generation"].as_u64().unwrap();

    // SIGHUP (ExecReload): RELOADING=1, the reload, READY=1.
    elbe.signal(Signal::SIGHUP);
    assert_eq!(notify.next()[0], "RELOADING=1");
    assert_eq!(notify.next()[0], "READY=1");
    let reloaded = elbe.status()["config"]["generation"].as_u64().unwrap();
    assert!(reloaded > generation, "{generation} -> {reloaded}");

    // SIGTERM (systemctl stop): STOPPING=1, the drain, exit 0.
    elbe.signal(Signal::SIGTERM);
    assert_eq!(notify.next()[0], "STOPPING=1");
    assert!(elbe.wait().success());
}

#[test]
fn without_notify_socket_elbe_runs_as_before() {
    let dir = TempDir::new("systemd-none");
    let file = dir.path("elbe.toml");
    std::fs::write(&file, process::config(&[])).unwrap();
    let mut elbe = Running::start(&file, &[]);
    assert_every_listener_accepts(&elbe);
    let warned = elbe.logs.iter().any(|l| l["message"] == "sd_notify");
    assert!(!warned, "{:#?}", elbe.logs);
    elbe.signal(Signal::SIGTERM);
    assert!(elbe.wait().success());
}
