//! The monitoring kit against a running elbe: every metric the Grafana dashboard and the alert rules query is one
//! elbe exports (with the labels they filter on), promtool accepts the queries and the rules and passes the
//! rules' unit tests, and the scale-out hook registers an instance through the admin API.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// promtool: $PROMTOOL (./test.sh sets it), `promtool` on PATH, or where ./test.sh unpacks it.
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return path.into();
    }
    let unpacked = repo("target/promtool/usr/bin/promtool");
    if unpacked.exists() {
        return unpacked;
    }
    "promtool".into()
}

fn run_promtool(args: &[&str], dir: &Path) -> String {
    let output = std::process::Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (./test.sh unpacks it into target/promtool; or set PROMTOOL)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{said}");
    said
}

// ---------------------------------------------------------------------------------------------------------------
// What elbe exports, and what the queries name
// ---------------------------------------------------------------------------------------------------------------

/// Every series name elbe exports, with the label names it carries, from a real scrape of /metrics.
async fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new()
        .zones(&[("zone-a", "127.0.0.1"), ("zone-b", "127.0.0.2")])
        .instance(instance("i-1", "zone-a", &backend))
        .start()
        .await;
    // Traffic, so that series which only appear once counted (histogram buckets, response classes) are there.
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 200);
    let reply = admin_get(&elbe, "/metrics").await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..end].to_owned()).or_default();
        if let Some(inside) = line[end..]
            .strip_prefix('{')
            .and_then(|l| l.split_once('}'))
        {
            for pair in inside.0.split("\",") {
                if let Some((name, _)) = pair.split_once('=') {
                    labels.insert(name.trim().to_owned());
                }
            }
        }
    }
    series
}

/// What one PromQL expression refers to.
#[derive(Debug, Default)]
struct Query {
    /// Metric names, each with the label names its `{...}` matchers use.
    metrics: Vec<(String, Vec<String>)>,
    /// Label names in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`, `group_left/right (...)`.
    grouping: Vec<String>,
}

const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Operators and aggregations: an aggregation may be followed by `by (...)` rather than by its `(`.
const KEYWORDS: [&str; 20] = [
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Reads the metric names out of a PromQL expression: an identifier followed by `(` is a function or an
/// aggregation; after a grouping keyword comes a list of labels; strings, numbers and `[5m]` ranges are skipped.
fn query(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Query::default();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if ident(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_space(i);
            if GROUPING.contains(&word.as_str()) {
                if chars.get(next) == Some(&'(') {
                    let close = chars[next..]
                        .iter()
                        .position(|&c| c == ')')
                        .map_or(chars.len(), |p| next + p);
                    let list: String = chars[next + 1..close].iter().collect();
                    found.grouping.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close + 1;
                }
            } else if KEYWORDS.contains(&word.as_str()) || chars.get(next) == Some(&'(') {
                // an operator keyword, a function or an aggregation
            } else if chars.get(next) == Some(&'{') {
                let close = chars[next..]
                    .iter()
                    .position(|&c| c == '}')
                    .map_or(chars.len(), |p| next + p);
                let matchers: String = chars[next + 1..close].iter().collect();
                found.metrics.push((word, matcher_labels(&matchers)));
                i = close + 1;
            } else {
                found.metrics.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The label names in `a="x", b=~"y"`.
fn matcher_labels(matchers: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = matchers;
    while let Some(op) = rest.find(['=', '!']) {
        let name = rest[..op].trim().trim_start_matches(',').trim();
        if !name.is_empty() {
            labels.push(name.to_owned());
        }
        // Past the quoted value.
        let after = &rest[op..];
        let Some(open) = after.find('"') else { break };
        let Some(close) = after[open + 1..].find('"') else {
            break;
        };
        rest = &after[open + 1 + close + 1..];
    }
    labels
}

/// Checks one expression against the scrape; returns what was wrong with it.
fn unknown_in(expr: &str, exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let query = query(expr);
    let mut wrong = Vec::new();
    if query.metrics.is_empty() {
        wrong.push(format!("{expr}: names no metric"));
    }
    let mut labels_here = BTreeSet::new();
    for (metric, labels) in &query.metrics {
        match exported.get(metric) {
            None => wrong.push(format!("{expr}: elbe exports no {metric}")),
            Some(known) => {
                labels_here.extend(known.iter().cloned());
                for label in labels.iter().filter(|l| !known.contains(*l)) {
                    wrong.push(format!("{expr}: {metric} has no label {label}"));
                }
            }
        }
    }
    for label in query.grouping.iter().filter(|l| !labels_here.contains(*l)) {
        wrong.push(format!("{expr}: no metric here has the label {label}"));
    }
    wrong
}

#[test]
fn the_promql_reader_finds_metrics_labels_and_groupings() {
    let q = query(
        "histogram_quantile(0.9, sum by (le, zone) (rate(a_bucket{lb=~\"$x\",code!=\"5XX\"}[5m]))) / on (lb) b > 1e3",
    );
    assert_eq!(
        q.metrics,
        vec![
            (
                "a_bucket".to_owned(),
                vec!["lb".to_owned(), "code".to_owned()]
            ),
            ("b".to_owned(), vec![])
        ]
    );
    assert_eq!(q.grouping, vec!["le", "zone", "lb"]);
}

/// Every `expr` anywhere in the dashboard (panels, rows, targets).
fn dashboard_expressions(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                    _ => dashboard_expressions(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_expressions(item, found);
            }
        }
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(repo("examples/grafana-dashboard.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn every_dashboard_query_names_a_metric_elbe_exports() {
    let exported = exported().await;
    let dashboard = dashboard();
    let mut expressions = Vec::new();
    dashboard_expressions(&dashboard, &mut expressions);
    assert!(expressions.len() >= 10, "{expressions:?}");
    let mut wrong: Vec<String> = expressions
        .iter()
        .flat_map(|e| unknown_in(e, &exported))
        .collect();
    // The template variables: label_values(metric, label).
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(definition) = variable["query"]["query"].as_str() else {
            continue;
        };
        if let Some(inner) = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
        {
            let (metric, label) = inner.split_once(',').unwrap();
            let (metric, label) = (metric.trim(), label.trim());
            if !exported
                .get(metric)
                .is_some_and(|labels| labels.contains(label))
            {
                wrong.push(format!("{definition}: no {metric} with label {label}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\nexported: {exported:#?}");
}

/// promtool parses every dashboard query (as recording rules, `$variables` replaced by a regex).
#[test]
fn promtool_parses_every_dashboard_query() {
    let mut expressions = Vec::new();
    dashboard_expressions(&dashboard(), &mut expressions);
    let rules: Vec<serde_json::Value> = expressions
        .iter()
        .enumerate()
        .map(|(n, expr)| {
            serde_json::json!({
                "record": format!("dashboard:query_{n}"),
                "expr": expr.replace("$load_balancer", ".*"),
            })
        })
        .collect();
    let file = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let dir = std::env::temp_dir().join(format!("elbe-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // JSON is YAML, which promtool reads.
    std::fs::write(dir.join("dashboard.yml"), file.to_string()).unwrap();
    let said = run_promtool(&["check", "rules", "dashboard.yml"], &dir);
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", expressions.len())),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------------------------------
// Alert rules
// ---------------------------------------------------------------------------------------------------------------

fn alert_rules() -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(repo("examples/prometheus/elbe-alerts.yml")).unwrap();
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    file["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

#[test]
fn promtool_checks_the_alert_rules_and_passes_their_unit_tests() {
    let dir = repo("examples/prometheus");
    let said = run_promtool(&["check", "rules", "elbe-alerts.yml"], &dir);
    assert!(said.contains("SUCCESS"), "{said}");
    let said = run_promtool(&["test", "rules", "elbe-alerts.test.yml"], &dir);
    assert!(said.contains("SUCCESS"), "{said}");
    // Every alert has a unit test that expects it to fire.
    let tests = std::fs::read_to_string(dir.join("elbe-alerts.test.yml")).unwrap();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "no test fires {name}"
        );
    }
}

#[tokio::test]
async fn the_alerts_cover_elbs_classic_alarms_on_metrics_elbe_exports() {
    let exported = exported().await;
    let rules = alert_rules();
    let mut covered = BTreeSet::new();
    let mut wrong = Vec::new();
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        wrong.extend(unknown_in(expr, &exported));
        covered.insert(rule["labels"]["elb_metric"].as_str().unwrap().to_owned());
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation].as_str().is_some(),
                "{rule:?}"
            );
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    for alarm in [
        "UnHealthyHostCount",
        "HTTPCode_ELB_5XX",
        "SurgeQueueLength",
        "SpilloverCount",
        "Latency",
    ] {
        assert!(covered.contains(alarm), "no alert on {alarm}: {covered:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The scale-out hook
// ---------------------------------------------------------------------------------------------------------------

/// The hook as Alertmanager runs it: a process listening for webhooks.
struct Hook {
    child: tokio::process::Child,
    address: std::net::SocketAddr,
}

impl Hook {
    async fn start(admin: std::net::SocketAddr, provision: &str) -> Hook {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("python3")
            .arg(repo("examples/prometheus/scale-out-hook.py"))
            .args(["--admin", &format!("http://{admin}")])
            .args(["--provision", provision])
            .args(["--listen", "127.0.0.1:0", "--timeout", "10"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (./test.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = bounded(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .expect("the hook prints its address");
        let address = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        Hook { child, address }
    }

    /// Posts an Alertmanager (version 4) webhook payload with one alert.
    async fn notify(&self, alert: &str, status: &str, labels: serde_json::Value) -> Reply {
        let mut labels = labels;
        labels["alertname"] = alert.into();
        let payload = serde_json::json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"ElbeSurgeQueueNearlyFull\"}",
            "status": status,
            "receiver": "elbe-scale-out",
            "groupLabels": {"alertname": alert},
            "commonLabels": labels,
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.invalid",
            "alerts": [{
                "status": status,
                "labels": labels,
                "annotations": {"summary": "queue filling"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                // Alertmanager's fingerprint is a hash of the labels; the labels themselves serve here.
                "fingerprint": labels.to_string(),
            }],
        });
        let webhook = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("host", "hook")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                payload.to_string(),
            )))
            .unwrap();
        request(self.address, webhook).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_out_hook_registers_an_instance_that_then_serves() {
    let backend = Backend::start(Behaviour::Echo).await;
    let elbe = ConfigBuilder::new().start().await;
    assert_eq!(get(elbe.node("zone-a"), "/").await.status, 503);

    // The provision command "starts" the backend above and names it after the zone it was asked for.
    let provision = format!("sh -c 'echo i-scale-$ZONE {}'", backend.address);
    let hook = Hook::start(elbe.admin(), &provision).await;
    let labels = serde_json::json!({"load_balancer": "web", "availability_zone": "zone-a", "scale_out": "true"});
    let reply = hook
        .notify("ElbeSurgeQueueNearlyFull", "firing", labels.clone())
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["actions"][0]["registered"], "i-scale-zone-a");

    // Registered through the admin API: health-checked like any other instance, then in rotation.
    wait_for_health(&elbe, "i-scale-zone-a", "InService", "N/A").await;
    let served = get(elbe.node("zone-a"), "/").await;
    assert_eq!(served.status, 200);
    assert_eq!(backend.requests(), 1);

    // Alertmanager repeats a firing alert's notification: no second instance for it.
    let again = hook
        .notify("ElbeSurgeQueueNearlyFull", "firing", labels.clone())
        .await;
    assert_eq!(again.status, 200);
    assert!(
        again.json()["actions"][0]["skipped"].is_string(),
        "{:?}",
        again.body
    );
    let instances = elbe.server().control().status(None).load_balancers[0]
        .instances
        .len();
    assert_eq!(instances, 1);

    // A load balancer elbe does not have: elbe's refusal comes back as a 502 (Alertmanager retries).
    let unknown = serde_json::json!({"load_balancer": "nope", "availability_zone": "zone-a"});
    let refused = hook.notify("ElbeSpillover", "firing", unknown).await;
    assert_eq!(refused.status, 502, "{:?}", refused.body);
    drop(hook.child);
}
