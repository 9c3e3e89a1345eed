//! An elbe built without the `cluster` feature (the default build, which needs no protoc) refuses a file with
//! `[cluster]` at start, naming it and saying how to build cluster mode (issue 16; README "Running a cluster").
//! Built with the feature, `tests/cluster.rs` runs cluster mode itself and this file is empty.
#![cfg(not(feature = "cluster"))]

#[test]
fn an_elbe_built_without_cluster_mode_refuses_a_cluster_file_and_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elbe.toml");
    let text = format!(
        "state_dir = \"{}\"\n[cluster]\netcd = [\"http://127.0.0.1:9\"]\nnode_id = \"a\"\nzones = [\"zone-a\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[[load_balancer]]\nname = \"web\"\n\
         [[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.83.7.1\"\n\
         [[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 0\ninstance_protocol = \"HTTP\"\ninstance_port = 8000\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_elbe"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "elbe ran: {stderr}");
    assert!(
        stderr.contains("[cluster]: this elbe was built without cluster mode")
            && stderr.contains("cargo build --release --features cluster"),
        "{stderr}"
    );
}
