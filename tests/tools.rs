//! The programs the tests drive are installed: a missing one fails here by name, so no test can pass (or skip)
//! for want of it. `./test.sh` installs them all on Debian.
use std::path::{Path, PathBuf};
use std::process::Command;

/// (program, arguments that make it print its version and exit 0, the Debian package).
const PROGRAMS: &[(&str, &[&str], &str)] = &[
    ("curl", &["--version"], "curl"),
    ("dig", &["-v"], "dnsutils"),
    ("openssl", &["version"], "openssl"),
    ("dnsmasq", &["--version"], "dnsmasq-base"),
    ("systemd-analyze", &["--version"], "systemd"),
    ("python3", &["--version"], "python3"),
    ("testssl", &["--version"], "testssl.sh"),
    ("chromium", &["--version"], "chromium"),
    ("h2load", &["--version"], "nghttp2-client"),
    ("nghttp", &["--version"], "nghttp2-client"),
];

/// `name` on PATH or in /usr/sbin and /sbin, where Debian puts dnsmasq (not on a non-root PATH).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[test]
fn every_program_the_tests_run_is_installed() {
    let mut missing = Vec::new();
    for (program, version, package) in PROGRAMS {
        let ran = find(program).and_then(|path| Command::new(path).args(*version).output().ok());
        if !ran.is_some_and(|out| out.status.success()) {
            missing.push(format!("{program} (Debian package {package})"));
        }
    }
    assert!(
        missing.is_empty(),
        "missing: {missing:?}; ./test.sh installs them"
    );
}

#[test]
fn promtool_is_installed_or_unpacked() {
    let promtool = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .or_else(|| {
            let unpacked =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/promtool/usr/bin/promtool");
            unpacked.exists().then_some(unpacked)
        })
        .or_else(|| find("promtool"))
        .expect("promtool: ./test.sh unpacks Debian's prometheus package into target/promtool (or set PROMTOOL)");
    let out = Command::new(&promtool).arg("--version").output();
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "{} does not run",
        promtool.display()
    );
}

/// systemd-analyze verify checks that the unit's ExecReload program exists.
#[test]
fn the_kill_program_the_unit_reloads_with_is_installed() {
    assert!(
        Path::new("/bin/kill").is_file(),
        "/bin/kill is missing (Debian package procps; ./test.sh installs it)"
    );
}
