//! The `elbe` binary: `check` on good and bad files, and the shipped examples.
use std::process::Command;

fn elbe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_elbe"))
}

#[test]
fn every_shipped_example_passes_check() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = elbe()
                .arg("check")
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn check_names_file_key_and_reason() {
    let dir = std::env::temp_dir().join(format!("elbe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\nname = \"a\"\nnode = \"127.0.0.1\"\n\
         [[load_balancer.listener]]\nprotocol = \"HTTQ\"\nload_balancer_port = 80\ninstance_protocol = \"HTTP\"\ninstance_port = 80\n",
    )
    .unwrap();
    let out = elbe()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(
        stderr.contains("load_balancer[0].listener[0].protocol"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTQ"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------------------------------
// The operator's command line: version, effective configuration, logs, completions, man page, exit statuses
// ---------------------------------------------------------------------------------------------------------------

mod process;

use process::{Running, TempDir};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_names_the_git_commit() {
    let out = elbe().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let expected = match Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        Ok(git) if git.status.success() => stdout(&git).trim().to_owned(),
        _ => "unknown".to_owned(),
    };
    assert_eq!(
        text.trim(),
        format!("elbe {} (commit {expected})", env!("CARGO_PKG_VERSION"))
    );
}

/// `check --print` is a fixpoint: the printed file validates and prints the same again (so nothing is lost and
/// every default is written out).
#[test]
fn check_print_writes_a_configuration_that_prints_the_same() {
    let dir = TempDir::new("cli-print");
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/web.toml");
    let minimal = dir.path("minimal.toml");
    std::fs::write(&minimal, "[[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\nname = \"a\"\nnode = \"127.0.0.1\"\n\
         [[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 80\ninstance_protocol = \"HTTP\"\ninstance_port = 8000\n").unwrap();
    for (n, source) in [std::path::PathBuf::from(examples), minimal]
        .iter()
        .enumerate()
    {
        let print = |path: &std::path::Path| {
            let out = elbe()
                .args(["check", "--print", "--config"])
                .arg(path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            stdout(&out)
        };
        let first = print(source);
        assert!(
            first.starts_with(&format!("# {}: ok", source.display())),
            "{first}"
        );
        assert!(first.contains("\nshutdown_grace = \"30s\"\n"), "{first}");
        assert!(first.contains("\nhealthy_threshold = "), "{first}");
        let printed = dir.path(&format!("printed-{n}.toml"));
        std::fs::write(&printed, &first).unwrap();
        let second = print(&printed);
        let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&first), body(&second));
    }
}

#[test]
fn json_logs_are_one_object_a_line_with_top_level_fields() {
    let dir = TempDir::new("cli-json");
    let file = dir.path("elbe.toml");
    std::fs::write(&file, process::config(&[])).unwrap();
    let mut elbe = Running::start(&file, &[]);
    // Running::start read the admin address from a JSON line; every line before it was JSON too.
    let listening = elbe.log(|log| log["message"] == "node listening");
    for key in ["timestamp", "level", "target"] {
        assert!(listening.get(key).is_some(), "{key} missing: {listening}");
    }
    assert_eq!(listening["load_balancer"], "web");
    assert_eq!(listening["zone"], "zone-a");
}

#[test]
fn completions_for_every_shell_and_a_man_page_with_the_exit_statuses() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = elbe().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains("healthcheck") && script.contains("log-format"),
            "{shell}: {script}"
        );
    }
    let out = elbe().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = stdout(&out);
    for needle in [
        ".TH elbe 1",
        ".SH \"EXIT STATUS\"",
        "\\-\\-log\\-format",
        "elbe\\-check(1)",
    ] {
        assert!(page.contains(needle), "{needle} missing from the man page");
    }
    let dir = TempDir::new("cli-man");
    let out = elbe().args(["man", "--dir"]).arg(&dir.0).output().unwrap();
    assert!(out.status.success());
    for page in ["elbe.1", "elbe-run.1", "elbe-check.1", "elbe-healthcheck.1"] {
        assert!(dir.path(page).exists(), "{page} not written");
    }
}

#[test]
fn exit_statuses_are_the_documented_ones() {
    let help = stdout(&elbe().arg("--help").output().unwrap());
    assert!(help.contains("Exit status:"), "{help}");
    // 2: a command line clap refuses.
    let out = elbe().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // 1: `run` with a configuration that does not load (as it always was; `check` says 2 for the same file).
    let dir = TempDir::new("cli-exit");
    let bad = dir.path("bad.toml");
    std::fs::write(
        &bad,
        "[[load_balancer]]\nname = \"web\"\nidle_timeout = 30\n",
    )
    .unwrap();
    let out = elbe().args(["run", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("idle_timeout"));
    let out = elbe()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `elbe healthcheck` (the container's HEALTHCHECK and the liveness probe) against a real elbe: not ready while
/// its one instance is OutOfService, alive all the same, ready once the instance is InService.
#[test]
fn healthcheck_says_ready_only_with_an_instance_in_service_and_alive_regardless() {
    // An instance that refuses connections: its TCP checks fail until a listener takes its port.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let dir = TempDir::new("cli-healthcheck");
    let file = dir.path("elbe.toml");
    std::fs::write(&file, process::config(&[port])).unwrap();
    let elbe_process = Running::start(&file, &[]);
    let healthcheck = |live: bool| {
        let mut command = elbe();
        command
            .args(["healthcheck", "--admin", &elbe_process.admin.to_string()])
            .args(["--timeout", "5s"]);
        if live {
            command.arg("--live");
        }
        command.output().unwrap()
    };
    let not_ready = healthcheck(false);
    assert_eq!(not_ready.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&not_ready.stderr).contains("503"),
        "{not_ready:?}"
    );
    assert!(healthcheck(true).status.success());

    // The kernel completes TCP handshakes for a bound listener: the instance passes its TCP checks.
    let _instance = std::net::TcpListener::bind(port).unwrap();
    elbe_process.wait_for_state("i-0", "InService");
    let ready = healthcheck(false);
    assert!(ready.status.success(), "{ready:?}");

    // Nobody listening: not alive either.
    let nobody = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let out = elbe()
        .args(["healthcheck", "--live", "--admin", &nobody.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
