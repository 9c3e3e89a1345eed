//! The three-machine example (examples/cluster; issue 16 item 7), held to what its README promises: the three
//! files pass `elbe check` and differ only in `[cluster] node_id` and `zones`; the systemd units load and the stop
//! timeout outlasts `dns_drain` plus the drain; the Kubernetes DaemonSet picks each machine's file, probes
//! `/healthz` and outlasts the same; and the files run: the three etcd settings make one three-member etcd, and
//! the three elbe files on it make one load balancer that a registration through one machine's ELB API (the AWS
//! CLI, signed with the file's keys) routes through every machine's node.
//!
//! The machines are moved onto loopback: every `10.0.` address becomes `127.85.` (machine lb-1a is 127.85.0.5,
//! its instance i-app-a 127.85.10.11:8000), `0.0.0.0` becomes the machine's own address (three processes share
//! one host), ports 53 and 80 become 5353 and 8080, and state and data go to a temporary folder. Nothing else
//! of the files changes.
#![allow(clippy::disallowed_methods)]

mod common;
mod process;
#[cfg(feature = "cluster")]
mod run_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

const MACHINES: [&str; 3] = ["lb-1a", "lb-1b", "lb-1c"];

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/cluster")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(example(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn config(machine: &str) -> elbe::config::Config {
    elbe::config::load(&example(&format!("{machine}.toml")))
        .unwrap_or_else(|e| panic!("{machine}.toml: {e}"))
}

/// `key=value` lines of a systemd unit or an environment file, comments and section headers left out.
fn settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The longest a stop takes by the files: `dns_drain`, then the drain (connection draining's timeout when it is
/// enabled, else `shutdown_grace`, the longer of the two for safety).
fn longest_stop() -> Duration {
    MACHINES
        .iter()
        .map(|machine| {
            let config = config(machine);
            let cluster = config.cluster.expect("[cluster] in every machine's file");
            let drain = config
                .load_balancers
                .iter()
                .map(|lb| lb.connection_draining.timeout)
                .chain([config.limits.shutdown_grace])
                .max()
                .unwrap_or_default();
            cluster.dns_drain + drain
        })
        .max()
        .unwrap()
}

fn seconds(text: &str) -> Duration {
    Duration::from_secs(
        text.trim_end_matches('s')
            .parse()
            .unwrap_or_else(|e| panic!("{text}: {e}")),
    )
}

#[test]
fn the_three_files_pass_check_and_differ_only_in_node_id_and_zones() {
    for machine in MACHINES {
        let path = example(&format!("{machine}.toml"));
        let out = process::elbe()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{machine}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let configs: Vec<_> = MACHINES.iter().map(|m| config(m)).collect();
    let mut zones = Vec::new();
    for (machine, config) in MACHINES.iter().zip(&configs) {
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(cluster.node_id, *machine);
        zones.extend(cluster.zones.clone());
    }
    let mut declared: Vec<String> = configs[0].load_balancers[0]
        .availability_zones
        .iter()
        .map(|z| z.name.clone())
        .collect();
    zones.sort();
    declared.sort();
    assert_eq!(
        zones, declared,
        "every zone of the load balancer runs on exactly one machine"
    );
    let without_identity = |config: &elbe::config::Config| {
        let mut config = config.clone();
        let cluster = config.cluster.as_mut().unwrap();
        cluster.node_id.clear();
        cluster.zones.clear();
        config
    };
    for (machine, config) in MACHINES.iter().zip(&configs).skip(1) {
        assert!(
            without_identity(config) == without_identity(&configs[0]),
            "{machine}.toml differs from lb-1a.toml in more than node_id and zones"
        );
    }
}

#[test]
fn the_systemd_units_load_and_the_stop_timeout_outlasts_dns_drain_and_the_drain() {
    let dir = process::TempDir::new("cluster-units");
    // verify checks that ExecStart's program exists: point it at the etcd the tests use.
    let etcd = which("etcd");
    let unit = dir.path("etcd.service");
    let text = read("systemd/etcd.service").replace("/usr/bin/etcd", &etcd);
    std::fs::write(&unit, text).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs (./test.sh installs systemd)");
    assert!(
        out.status.success(),
        "systemd-analyze verify etcd.service: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drop_in = settings(&read("systemd/elbe.service.d/cluster.conf"));
    assert_eq!(drop_in["After"], "etcd.service");
    let timeout = seconds(&drop_in["TimeoutStopSec"]);
    assert!(
        timeout > longest_stop(),
        "TimeoutStopSec={timeout:?} must outlast dns_drain + the drain ({:?})",
        longest_stop()
    );
}

#[test]
fn the_etcd_settings_name_one_three_member_cluster() {
    let files: Vec<_> = MACHINES
        .iter()
        .map(|m| settings(&read(&format!("systemd/etcd-{m}.env"))))
        .collect();
    for (machine, env) in MACHINES.iter().zip(&files) {
        assert_eq!(env["ETCD_NAME"], *machine);
        assert_eq!(
            env["ETCD_INITIAL_CLUSTER"],
            files[0]["ETCD_INITIAL_CLUSTER"]
        );
        let peer = &env["ETCD_INITIAL_ADVERTISE_PEER_URLS"];
        assert!(
            env["ETCD_INITIAL_CLUSTER"].contains(&format!("{machine}={peer}")),
            "{machine}: {peer} is not its entry in ETCD_INITIAL_CLUSTER"
        );
        // elbe's [cluster] etcd lists every member's client URL.
        let listed = config(machine).cluster.unwrap().etcd;
        assert!(
            listed.contains(&env["ETCD_ADVERTISE_CLIENT_URLS"]),
            "{machine}: {} not in [cluster] etcd {listed:?}",
            env["ETCD_ADVERTISE_CLIENT_URLS"]
        );
    }
}

fn kubernetes_daemonset() -> Value {
    serde_yaml_ng::from_str(&read("kubernetes/daemonset.yaml")).unwrap()
}

#[test]
fn the_daemonset_reads_each_machines_file_probes_healthz_and_outlasts_the_stop() {
    let kustomization: Value = serde_yaml_ng::from_str(&read("kustomization.yaml")).unwrap();
    let generated = &kustomization["configMapGenerator"][0];
    let files: Vec<&str> = generated["files"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let wanted: Vec<String> = MACHINES.iter().map(|m| format!("{m}.toml")).collect();
    assert_eq!(files, wanted, "the ConfigMap holds the three files");

    let daemonset = kubernetes_daemonset();
    assert_eq!(daemonset["kind"], "DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"], true,
        "the nodes are the machines' addresses"
    );
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], generated["name"]);
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let path = args
        .iter()
        .skip_while(|a| **a != "--config")
        .nth(1)
        .expect("--config");
    // $(NODE_NAME) is the kubelet's expansion of the pod's machine name, from the downward API.
    assert_eq!(*path, "/etc/elbe/$(NODE_NAME).toml");
    let env = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME in env");
    assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");

    let admin_port = |name: &Value| -> u64 {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap()
    };
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"], "/healthz");
    for machine in MACHINES {
        assert_eq!(
            admin_port(&readiness["port"]),
            u64::from(config(machine).admin.listen.port())
        );
    }
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        grace > longest_stop(),
        "terminationGracePeriodSeconds ({grace:?}) must outlast dns_drain + the drain ({:?})",
        longest_stop()
    );
}

fn which(program: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "`{program}` is needed: ./test.sh installs it"
    );
    path
}

/// The example moved onto loopback, as the module's doc says.
#[cfg(feature = "cluster")]
fn localized(text: &str, machine_address: &str) -> String {
    text.replace("10.0.", "127.85.")
        .replace("0.0.0.0", machine_address)
        .replace(":53\"", ":5353\"")
        .replace("load_balancer_port = 80\n", "load_balancer_port = 8080\n")
}

#[cfg(feature = "cluster")]
mod running {
    use super::*;
    use common::{Backend, Behaviour};
    use run_support::Elbe;
    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    const STEP: Duration = run_support::STEP;

    /// One etcd member started from its machine's environment file, killed when dropped.
    struct Member(Child);

    impl Drop for Member {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn address(machine: &str) -> String {
        let last = 5 + MACHINES.iter().position(|m| *m == machine).unwrap();
        format!("127.85.0.{last}")
    }

    fn start_member(dir: &Path, machine: &str) -> Member {
        let env = settings(&read(&format!("systemd/etcd-{machine}.env")));
        let log = std::fs::File::create(dir.join(format!("etcd-{machine}.log"))).unwrap();
        let mut command = Command::new(which("etcd"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (key, value) in env {
            command.env(key, localized(&value, &address(machine)));
        }
        command
            .env("ETCD_DATA_DIR", dir.join(format!("etcd-{machine}")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        Member(command.spawn().expect("etcd starts"))
    }

    /// Waits until every member answers `/health` healthy (a three-member etcd has its quorum and a leader).
    async fn wait_healthy(dir: &Path) {
        let deadline = Instant::now() + STEP;
        for machine in MACHINES {
            let client: SocketAddr = format!("{}:2379", address(machine)).parse().unwrap();
            loop {
                if tokio::net::TcpStream::connect(client).await.is_ok() {
                    let reply = common::get(client, "/health").await;
                    if reply.status == 200 && String::from_utf8_lossy(&reply.body).contains("true")
                    {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd on {machine} never became healthy:\n{}",
                    std::fs::read_to_string(dir.join(format!("etcd-{machine}.log")))
                        .unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn elbe_file(dir: &Path, machine: &str) -> PathBuf {
        let text = localized(&read(&format!("{machine}.toml")), &address(machine)).replace(
            "state_dir = \"/var/lib/elbe\"",
            &format!(
                "state_dir = \"{}\"",
                dir.join(format!("state-{machine}")).display()
            ),
        );
        let path = dir.join(format!("{machine}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The instances of the catalogue, real backends on their (moved) addresses.
    async fn instances() -> Vec<Backend> {
        let mut backends = Vec::new();
        for address in [
            "127.85.10.11:8000",
            "127.85.20.11:8000",
            "127.85.30.11:8000",
        ] {
            let listener = TcpListener::bind(address).await.unwrap();
            backends.push(Backend::serve(listener, Behaviour::Echo));
        }
        backends
    }

    async fn aws(elbe: &Elbe, args: &[&str]) -> String {
        let cli = common::aws::aws_at(
            &format!("http://{}/", elbe.admin),
            "AKIDEXAMPLE",
            "change-me",
            args,
        )
        .await;
        assert!(cli.success, "aws elb {args:?}: {}", cli.stderr);
        cli.stdout
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_three_machines_files_run_as_one_load_balancer_on_a_three_member_etcd() {
        let dir = tempfile::tempdir().unwrap();
        let _members: Vec<Member> = MACHINES
            .iter()
            .map(|m| start_member(dir.path(), m))
            .collect();
        wait_healthy(dir.path()).await;
        let backends = instances().await;
        let mut elbes = Vec::new();
        for machine in MACHINES {
            elbes.push(Elbe::start(&elbe_file(dir.path(), machine)).await);
        }

        aws(
            &elbes[0],
            &[
                "register-instances-with-load-balancer",
                "--load-balancer-name",
                "web",
                "--instances",
                "i-app-a",
                "i-app-b",
                "i-app-c",
            ],
        )
        .await;

        // Every machine's node routes to the instances registered through lb-1a (cross-zone is on, so any).
        for (machine, elbe) in MACHINES.iter().zip(&elbes) {
            let node: SocketAddr = format!("{}:8080", address(machine)).parse().unwrap();
            let before: usize = backends.iter().map(Backend::requests).sum();
            let deadline = Instant::now() + STEP;
            loop {
                if tokio::net::TcpStream::connect(node).await.is_ok()
                    && common::get(node, "/").await.status == 200
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{machine}'s node {node} never served:\n{}",
                    elbe.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(backends.iter().map(Backend::requests).sum::<usize>() > before);
        }

        // Cross-zone is on, so lb-1b's node spreads over all three zones' instances: it checks every one of
        // them, not only its own zone's.
        let node: SocketAddr = format!("{}:8080", address("lb-1b")).parse().unwrap();
        let before: Vec<usize> = backends.iter().map(Backend::requests).collect();
        let deadline = Instant::now() + STEP;
        while backends
            .iter()
            .zip(&before)
            .any(|(backend, before)| backend.requests() == *before)
        {
            assert!(
                Instant::now() < deadline,
                "lb-1b's node never reached every zone's instance:\n{}",
                elbes[1].log()
            );
            common::get(node, "/").await;
        }

        // DescribeInstanceHealth on another machine knows all three, InService.
        let deadline = Instant::now() + STEP;
        loop {
            let health: serde_json::Value = serde_json::from_str(
                &aws(
                    &elbes[1],
                    &["describe-instance-health", "--load-balancer-name", "web"],
                )
                .await,
            )
            .unwrap();
            let states: Vec<&str> = health["InstanceStates"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["State"].as_str())
                .collect();
            if states == ["InService"; 3] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "describe-instance-health on lb-1b: {health}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
