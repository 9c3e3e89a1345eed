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
