//! Reading the file: unknown keys, wrong types, TOML syntax and I/O errors name where they are; relative paths
//! resolve against the file's folder.

use std::path::{Path, PathBuf};

use super::{fails, file, listener, with_lb, MINIMAL};
use crate::config::{load, parse, CertificatePaths};

#[test]
fn unknown_keys_name_their_path() {
    fails(
        &format!("colour = \"red\"\n{MINIMAL}"),
        "colour",
        "unknown field `colour`",
    );
    fails(
        &format!("[admin]\nport = 1\n{MINIMAL}"),
        "admin.port",
        "unknown field `port`",
    );
    fails(
        &format!("{MINIMAL}colour = \"red\"\n"),
        "load_balancer[0].listener[0].colour",
        "unknown field",
    );
    fails(
        &with_lb("connection_draining = { enable = true }"),
        "load_balancer[0].connection_draining.enable",
        "unknown field",
    );
    fails(
        &MINIMAL.replace("[[load_balancer.listener]]", "[[load_balancer.listeners]]"),
        "load_balancer[0].listeners",
        "unknown field",
    );
}

#[test]
fn type_errors_name_their_path_and_line() {
    fails(
        &MINIMAL.replace("instance_port = 8000", "instance_port = \"8000\""),
        "load_balancer[0].listener[0].instance_port",
        "line 11, column 17",
    );
    fails(
        &MINIMAL.replace("instance_port = 8000", "instance_port = 70000"),
        "load_balancer[0].listener[0].instance_port",
        "invalid value: integer `70000`, expected a whole number from 0 to 65535",
    );
    fails(
        &MINIMAL.replace("instance_port = 8000", "instance_port = \"8000\""),
        "load_balancer[0].listener[0].instance_port",
        "(write numbers without quotes)",
    );
    fails(
        &with_lb("cross_zone_load_balancing = \"yes\""),
        "load_balancer[0].cross_zone_load_balancing",
        "invalid type",
    );
    fails(
        &with_lb("idle_timeout = 60"),
        "load_balancer[0].idle_timeout",
        "write \"60s\"",
    );
    fails(
        &with_lb("idle_timeout = \"60\""),
        "load_balancer[0].idle_timeout",
        "has no unit",
    );
    fails(
        &format!("[limits]\nmax_headers = -1\n{MINIMAL}"),
        "limits.max_headers",
        "invalid value",
    );
    // A missing key is blamed on its own path, with the line of the table that lacks it.
    fails(
        &MINIMAL.replace("name = \"web\"\n", ""),
        "load_balancer[0].name",
        "is required, and the table at line 2 does not give it",
    );
    // `[load_balancer.listener]` where the file needs `[[load_balancer.listener]]`.
    fails(
        &MINIMAL.replace("[[load_balancer.listener]]", "[load_balancer.listener]"),
        "load_balancer[0].listener",
        "write each entry as [[load_balancer.listener]] (double brackets)",
    );
}

#[test]
fn syntax_and_io_errors_say_where() {
    let e = parse("[[load_balancer]\nname = 1", file()).unwrap_err();
    assert_eq!(e.key, "");
    assert!(e.reason.contains("line 1, column"), "{}", e.reason);
    assert!(!e.reason.contains('\n'), "one line: {:?}", e.reason);
    assert!(
        e.to_string()
            .starts_with("examples/web.toml: TOML syntax error"),
        "no empty key in: {e}"
    );
    let e = load(Path::new("/nonexistent/elbe.toml")).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.file.as_path()),
        ("", Path::new("/nonexistent/elbe.toml"))
    );
    assert!(e.reason.contains("cannot read"), "{}", e.reason);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/elbe.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn error_display_is_file_key_reason() {
    let e = parse(
        &MINIMAL.replace("protocol = \"HTTP\"", "protocol = \"HTTQ\""),
        file(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "examples/web.toml: load_balancer[0].listener[0].protocol: unknown protocol \"HTTQ\" (expected HTTP, HTTPS, TCP or SSL)"
    );
}

#[test]
fn load_reads_a_file_and_resolves_paths_against_its_folder() {
    let dir = std::env::temp_dir().join(format!("elbe-config-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    // Validation only checks that the files can be read; their contents are the TLS layer's to judge.
    for name in ["certs/a.crt", "b.crt", "b.key"] {
        std::fs::write(dir.join(name), "").unwrap();
    }
    let absolute = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/localhost.key");
    let path = dir.join("web.toml");
    let text = format!(
        "{MINIMAL}{}",
        listener(
            "SSL",
            8443,
            "TCP",
            9000,
            &format!(
                r#"certificates = [{{ cert = "certs/a.crt", key = "{absolute}" }}, {{ cert = "b.crt", key = "b.key" }}]"#
            )
        )
    );
    std::fs::write(&path, text).unwrap();
    let config = load(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    let certificates = &config.unwrap().load_balancers[0].listeners[1].certificates;
    assert_eq!(
        certificates[0],
        CertificatePaths {
            cert: dir.join("certs/a.crt"),
            key: PathBuf::from(absolute)
        }
    );
    assert_eq!(
        certificates[1],
        CertificatePaths {
            cert: dir.join("b.crt"),
            key: dir.join("b.key")
        }
    );
    // A file name without a folder leaves relative paths relative to the current folder (the crate's root here).
    let certs = r#"certificates = [{ cert = "certs/localhost.crt", key = "certs/localhost.key" }]"#;
    let text = format!("{MINIMAL}{}", listener("HTTPS", 443, "HTTP", 8000, certs));
    let bare = parse(&text, Path::new("web.toml")).unwrap();
    assert_eq!(
        bare.load_balancers[0].listeners[1].certificates[0].cert,
        PathBuf::from("certs/localhost.crt")
    );
}
