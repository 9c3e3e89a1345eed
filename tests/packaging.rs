//! The container recipe and the Kubernetes example, checked by reading them (no container runtime or cluster
//! runs here): the properties they promise, and that the configurations they ship pass `elbe check`.
mod process;

use std::path::{Path, PathBuf};

use process::TempDir;
use serde_yaml_ng::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `elbe check` on a file: the configurations packages ship are held to the same standard as examples/.
fn assert_checks(path: &Path) {
    let out = process::elbe()
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Containerfile
// ---------------------------------------------------------------------------------------------------------------

/// One instruction: its keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Containerfile's instructions, grouped by build stage.
fn stages() -> Vec<Vec<Instruction>> {
    let text = std::fs::read_to_string(repo("packaging/container/Containerfile")).unwrap();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical.into_iter().filter(|l| !l.trim().is_empty()) {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Containerfile starts with FROM")
            .push(instruction);
    }
    stages
}

fn find<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// An exec-form (JSON array) argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form ({e}): {args}"))
}

#[test]
fn the_containerfile_builds_with_rust_and_runs_small_as_non_root_with_a_healthcheck() {
    let stages = stages();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let build = &stages[0];
    let from = find(build, "FROM")[0];
    assert!(
        from.contains("rust:") && from.to_ascii_lowercase().ends_with(" as build"),
        "{from}"
    );
    assert!(
        find(build, "RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "{build:?}"
    );
    // Every file the build stage copies exists in the repository (so the build context has it).
    for copy in find(build, "COPY") {
        let sources: Vec<&str> = copy.split_whitespace().collect();
        for source in &sources[..sources.len() - 1] {
            assert!(repo(source).exists(), "COPY {source}: no such file");
        }
    }

    let run = stages.last().unwrap();
    let base = find(run, "FROM")[0];
    assert!(
        base.contains("distroless") || base.contains("-slim"),
        "runtime base: {base}"
    );
    let user = find(run, "USER");
    let user = user.last().expect("USER in the runtime stage");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "runs as {user}");
    assert!(find(run, "COPY")
        .iter()
        .any(|c| c.starts_with("--from=build ") && c.contains("target/release/elbe")));

    // HEALTHCHECK runs the image's own elbe (no curl in distroless) on the admin listener's /healthz.
    let healthcheck = find(run, "HEALTHCHECK");
    let healthcheck = healthcheck.first().expect("a HEALTHCHECK");
    let command = exec_form(
        healthcheck
            .split_once("CMD")
            .expect("HEALTHCHECK ... CMD")
            .1
            .trim(),
    );
    let entrypoint = exec_form(find(run, "ENTRYPOINT")[0]);
    assert_eq!(command[0], entrypoint[0]);
    assert_eq!(command[1], "healthcheck");
    let admin = command
        .iter()
        .skip_while(|a| *a != "--admin")
        .nth(1)
        .expect("--admin");
    let port = admin.rsplit(':').next().unwrap();
    assert!(
        find(run, "EXPOSE")
            .iter()
            .any(|e| e.split_whitespace().any(|p| p == port)),
        "admin port {port} not exposed"
    );

    // The configuration it starts with is copied in, matches the admin port, and passes check.
    let cmd = exec_form(find(run, "CMD")[0]);
    let config = cmd
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("CMD ... --config");
    let copied = find(run, "COPY")
        .into_iter()
        .find(|c| c.ends_with(config.as_str()))
        .expect("the configuration is copied into the image");
    let source = repo(copied.split_whitespace().next().unwrap());
    assert_checks(&source);
    let parsed = elbe::config::load(&source).unwrap();
    assert_eq!(parsed.admin.listen.port().to_string(), port);
    assert!(
        parsed.admin.listen.ip().is_unspecified(),
        "the admin listener must be reachable from outside the container"
    );
}

#[test]
fn the_packaged_configurations_pass_check() {
    for file in [
        "packaging/container/elbe.toml",
        "packaging/systemd/elbe.toml",
    ] {
        assert_checks(&repo(file));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------------------------

/// Every document of every YAML file in examples/kubernetes, by kind.
fn kubernetes() -> Vec<Value> {
    let mut documents = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo("examples/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            documents.push(value);
        }
    }
    documents
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn str_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

#[test]
fn the_kubernetes_example_probes_healthz_and_outlasts_the_drain() {
    let documents = kubernetes();
    for document in &documents {
        let kind = str_of(&document["kind"]);
        assert!(
            document["apiVersion"].as_str().is_some(),
            "{kind} without apiVersion"
        );
        if kind != "Kustomization" {
            assert!(document["metadata"]["name"].as_str().is_some(), "{kind}");
        }
    }
    let deployment = of_kind(&documents, "Deployment");
    let service = of_kind(&documents, "Service");
    let config_map = of_kind(&documents, "ConfigMap");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // The configuration: valid, and the one the container is told to read.
    let dir = TempDir::new("kubernetes");
    let file = dir.path("elbe.toml");
    std::fs::write(&file, str_of(&config_map["data"]["elbe.toml"])).unwrap();
    assert_checks(&file);
    let config = elbe::config::load(&file).unwrap();
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    let config_path = args
        .iter()
        .skip_while(|a| **a != "--config")
        .nth(1)
        .expect("--config");
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| config_path.starts_with(str_of(&m["mountPath"])))
        .expect("the configuration's folder is mounted");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);

    // Ports by name, as the probes and the Service refer to them.
    let port = |name: &str| -> u64 {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    let named = |value: &Value| match value.as_str() {
        Some(name) => port(name),
        None => value.as_u64().unwrap(),
    };

    // Readiness: GET /healthz on the admin listener.
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(str_of(&readiness["path"]), "/healthz");
    assert_eq!(
        named(&readiness["port"]),
        u64::from(config.admin.listen.port())
    );
    // Liveness: /healthz answering at all (elbe healthcheck --live), or an httpGet on it.
    let liveness = &container["livenessProbe"];
    match liveness["exec"]["command"].as_sequence() {
        Some(command) => {
            let command: Vec<&str> = command.iter().map(str_of).collect();
            assert_eq!(&command[1..3], ["healthcheck", "--live"], "{command:?}");
            let admin = command
                .iter()
                .skip_while(|a| **a != "--admin")
                .nth(1)
                .unwrap();
            assert!(admin.ends_with(&format!(":{}", config.admin.listen.port())));
        }
        None => assert_eq!(str_of(&liveness["httpGet"]["path"]), "/healthz"),
    }

    // The Service sends its traffic to elbe's HTTP listener.
    let listener = u64::from(config.load_balancers[0].listeners[0].load_balancer_port);
    let target = &service["spec"]["ports"][0]["targetPort"];
    assert_eq!(named(target), listener);
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[key.as_str().unwrap()], value, "selector {key:?}");
    }

    // SIGTERM drains within shutdown_grace (connection draining's timeout when enabled); the preStop pause comes
    // first. The kubelet's grace period must cover both, or it SIGKILLs a drain in progress.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let drain = config
        .load_balancers
        .iter()
        .filter(|lb| lb.connection_draining.enabled)
        .map(|lb| lb.connection_draining.timeout)
        .chain([config.limits.shutdown_grace])
        .max()
        .unwrap();
    assert!(
        std::time::Duration::from_secs(grace) >= drain + std::time::Duration::from_secs(pause),
        "terminationGracePeriodSeconds {grace} < preStop {pause} s + drain {drain:?}"
    );

    // Non-root, no privilege escalation, read-only root file system (elbe writes nothing but logs to stdout).
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(security["readOnlyRootFilesystem"], Value::Bool(true));
}
