//! `elbe check --print`: the validated configuration written back as TOML, every default filled in.
//!
//! Rule: the output is itself a valid configuration that validates to the same [`Config`] (the round-trip tests
//! below and in tests/cli.rs pin it), so an operator can read exactly what elbe runs with and keep the file.
//! Keys are the file's own names, in the order DESIGN.md's reference gives them; durations are written in the
//! largest unit that keeps them exact (`"5m"`, `"250ms"`, `"1.5s"` as `"1500ms"`); relative paths become
//! absolute, because the printed file may be saved anywhere.
//!
//! Trade-off: serde mirrors of the validated types kept here, not `Serialize` on the configuration types: the
//! configuration module keeps one job (reading). The cost is a second list of keys; every conversion
//! destructures its type exhaustively, so a key added there does not compile until it is printed here.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use elbe::config::{AccessLogDestination, Config};

#[path = "effective/traffic.rs"]
mod traffic;

/// The configuration as TOML text.
pub(crate) fn render(config: &Config) -> Result<String, toml::ser::Error> {
    toml::to_string(&File::from(config))
}

#[derive(Serialize)]
struct File {
    admin: Admin,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<Dns>,
    discovery: Discovery,
    limits: Limits,
    state_dir: String,
    api: Api,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Cluster>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    instance: Vec<Instance>,
    load_balancer: Vec<LoadBalancer>,
}

#[derive(Serialize)]
struct Cluster {
    etcd: Vec<String>,
    prefix: String,
    node_id: String,
    zones: Vec<String>,
    lease_ttl: String,
    dns_drain: String,
}

impl From<&elbe::config::Cluster> for Cluster {
    fn from(cluster: &elbe::config::Cluster) -> Self {
        let elbe::config::Cluster {
            etcd,
            prefix,
            node_id,
            zones,
            lease_ttl,
            dns_drain,
        } = cluster;
        Cluster {
            etcd: etcd.clone(),
            prefix: prefix.clone(),
            node_id: node_id.clone(),
            zones: zones.clone(),
            lease_ttl: duration(*lease_ttl),
            dns_drain: duration(*dns_drain),
        }
    }
}

#[derive(Serialize)]
struct Api {
    region: String,
    /// Printed, as `stickiness_key` is: the output is a configuration that runs the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_access_key: Option<String>,
    zones: Vec<ApiZone>,
    certificates: Vec<ApiCertificate>,
}

#[derive(Serialize)]
struct ApiZone {
    name: String,
    node_pool: String,
}

#[derive(Serialize)]
struct ApiCertificate {
    id: String,
    cert: String,
    key: String,
}

#[derive(Serialize)]
struct Admin {
    listen: String,
}

#[derive(Serialize)]
struct Dns {
    listen: String,
    domain: String,
}

#[derive(Serialize)]
struct Discovery {
    name_servers: Vec<String>,
    min_ttl: String,
    max_ttl: String,
}

#[derive(Serialize)]
struct Limits {
    request_header_timeout: String,
    tls_handshake_timeout: String,
    max_request_header_bytes: usize,
    max_headers: usize,
    max_uri_bytes: usize,
    max_connections: usize,
    listen_backlog: u32,
    shutdown_grace: String,
    backend_connect_timeout: String,
    backend_idle_connections: usize,
    backend_max_requests: usize,
    surge_queue_size: usize,
}

#[derive(Serialize)]
struct LoadBalancer {
    name: String,
    region: String,
    cross_zone_load_balancing: bool,
    idle_timeout: String,
    passive_health_checks: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stickiness_key: Option<String>,
    connection_draining: ConnectionDraining,
    access_log: AccessLog,
    health_check: HealthCheck,
    availability_zone: Vec<AvailabilityZone>,
    listener: Vec<Listener>,
    instance: Vec<Instance>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policy: Vec<traffic::Policy>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    backend_server: Vec<traffic::BackendServer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rule: Vec<traffic::Rule>,
}

#[derive(Serialize)]
struct ConnectionDraining {
    enabled: bool,
    timeout: String,
}

#[derive(Serialize)]
struct AccessLog {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

#[derive(Serialize)]
struct HealthCheck {
    target: String,
    interval: String,
    timeout: String,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

#[derive(Serialize)]
struct AvailabilityZone {
    name: String,
    node: String,
}

#[derive(Serialize)]
struct Listener {
    protocol: String,
    load_balancer_port: u16,
    instance_protocol: String,
    instance_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssl_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<Certificate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policy_names: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    accept_proxy_protocol: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    freebind: bool,
}

#[derive(Serialize)]
struct Certificate {
    cert: String,
    key: String,
}

#[derive(Serialize)]
struct Instance {
    id: String,
    zone: String,
    address: String,
}

impl From<&Config> for File {
    fn from(config: &Config) -> Self {
        // Exhaustive destructuring, here and below: a key added to the configuration types fails to compile
        // until it is printed.
        let elbe::config::Config {
            admin,
            dns,
            discovery,
            limits,
            state_dir,
            load_balancers,
            api,
            instances,
            cluster,
        } = config;
        let elbe::config::Api {
            region,
            credentials,
            zones,
            certificates,
        } = api;
        let elbe::config::Discovery {
            name_servers,
            min_ttl,
            max_ttl,
        } = discovery;
        File {
            admin: Admin {
                listen: admin.listen.to_string(),
            },
            dns: dns
                .as_ref()
                .map(|elbe::config::Dns { listen, domain }| Dns {
                    listen: listen.to_string(),
                    domain: domain.clone(),
                }),
            discovery: Discovery {
                name_servers: name_servers.iter().map(ToString::to_string).collect(),
                min_ttl: duration(*min_ttl),
                max_ttl: duration(*max_ttl),
            },
            limits: self::limits(limits),
            state_dir: absolute(state_dir),
            api: Api {
                region: region.clone(),
                access_key_id: credentials.as_ref().map(|c| c.access_key_id.clone()),
                secret_access_key: credentials.as_ref().map(|c| c.secret_access_key.clone()),
                zones: zones
                    .iter()
                    .map(|zone| ApiZone {
                        name: zone.name.clone(),
                        node_pool: zone.node_pool.to_string(),
                    })
                    .collect(),
                certificates: certificates
                    .iter()
                    .map(|c| ApiCertificate {
                        id: c.id.clone(),
                        cert: absolute(&c.paths.cert),
                        key: absolute(&c.paths.key),
                    })
                    .collect(),
            },
            cluster: cluster.as_ref().map(Cluster::from),
            instance: instances.iter().map(instance).collect(),
            load_balancer: load_balancers.iter().map(load_balancer).collect(),
        }
    }
}

fn limits(limits: &elbe::config::Limits) -> Limits {
    let &elbe::config::Limits {
        request_header_timeout,
        tls_handshake_timeout,
        max_request_header_bytes,
        max_headers,
        max_uri_bytes,
        max_connections,
        listen_backlog,
        shutdown_grace,
        backend_connect_timeout,
        backend_idle_connections,
        backend_max_requests,
        surge_queue_size,
    } = limits;
    Limits {
        request_header_timeout: duration(request_header_timeout),
        tls_handshake_timeout: duration(tls_handshake_timeout),
        max_request_header_bytes,
        max_headers,
        max_uri_bytes,
        max_connections,
        listen_backlog,
        shutdown_grace: duration(shutdown_grace),
        backend_connect_timeout: duration(backend_connect_timeout),
        backend_idle_connections,
        backend_max_requests,
        surge_queue_size,
    }
}

fn load_balancer(lb: &elbe::config::LoadBalancer) -> LoadBalancer {
    let elbe::config::LoadBalancer {
        name,
        region,
        cross_zone_load_balancing,
        idle_timeout,
        connection_draining,
        passive_health_checks,
        access_log,
        availability_zones,
        listeners,
        health_check,
        instances,
        stickiness_key,
        policies,
        backend_servers,
        rules,
    } = lb;
    let elbe::config::ConnectionDraining { enabled, timeout } = connection_draining;
    LoadBalancer {
        name: name.clone(),
        region: region.clone(),
        cross_zone_load_balancing: *cross_zone_load_balancing,
        idle_timeout: duration(*idle_timeout),
        passive_health_checks: *passive_health_checks,
        stickiness_key: stickiness_key.clone(),
        policy: policies.iter().map(traffic::policy).collect(),
        backend_server: backend_servers
            .iter()
            .map(traffic::backend_server)
            .collect(),
        rule: rules.iter().map(traffic::rule).collect(),
        connection_draining: ConnectionDraining {
            enabled: *enabled,
            timeout: duration(*timeout),
        },
        access_log: match access_log {
            None => AccessLog {
                enabled: false,
                path: None,
            },
            Some(AccessLogDestination::Stdout) => AccessLog {
                enabled: true,
                path: Some("-".to_owned()),
            },
            Some(AccessLogDestination::File(file)) => AccessLog {
                enabled: true,
                path: Some(absolute(file)),
            },
        },
        health_check: self::health_check(health_check),
        availability_zone: availability_zones
            .iter()
            .map(
                |elbe::config::AvailabilityZone { name, node }| AvailabilityZone {
                    name: name.clone(),
                    node: node.to_string(),
                },
            )
            .collect(),
        listener: listeners.iter().map(listener).collect(),
        instance: instances.iter().map(instance).collect(),
    }
}

fn instance(instance: &elbe::config::Instance) -> Instance {
    let elbe::config::Instance { id, zone, address } = instance;
    Instance {
        id: id.clone(),
        zone: zone.clone(),
        address: address.to_string(),
    }
}

fn health_check(check: &elbe::config::HealthCheck) -> HealthCheck {
    let elbe::config::HealthCheck {
        target,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
    } = check;
    HealthCheck {
        target: target.to_string(),
        interval: duration(*interval),
        timeout: duration(*timeout),
        healthy_threshold: *healthy_threshold,
        unhealthy_threshold: *unhealthy_threshold,
    }
}

fn listener(listener: &elbe::config::Listener) -> Listener {
    let elbe::config::Listener {
        protocol,
        load_balancer_port,
        instance_protocol,
        instance_port,
        certificates,
        ssl_policy,
        policy_names,
        accept_proxy_protocol,
        freebind,
    } = listener;
    Listener {
        protocol: protocol.to_string(),
        load_balancer_port: *load_balancer_port,
        instance_protocol: instance_protocol.to_string(),
        instance_port: *instance_port,
        ssl_policy: ssl_policy.clone(),
        policy_names: policy_names.clone(),
        accept_proxy_protocol: *accept_proxy_protocol,
        freebind: *freebind,
        certificates: certificates
            .iter()
            .map(|elbe::config::CertificatePaths { cert, key }| Certificate {
                cert: absolute(cert),
                key: absolute(key),
            })
            .collect(),
    }
}

/// `path` made absolute against the current folder (where elbe resolved it), without resolving symlinks.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// A duration in the largest unit that keeps it exact: `1h`, `5m`, `30s`, `250ms`, else seconds with as many
/// decimals as it needs (`0.000000001s`), which the file's parser reads back exactly.
fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    const UNITS: [(u128, &str); 4] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
    ];
    for (per, unit) in UNITS {
        if nanos.is_multiple_of(per) {
            return format!("{}{unit}", nanos / per);
        }
    }
    let fraction = format!("{:09}", d.subsec_nanos());
    format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reparsed(config: &Config) -> Config {
        let text = render(config).unwrap();
        elbe::config::parse(&text, Path::new("/printed.toml"))
            .unwrap_or_else(|e| panic!("the printed configuration does not parse: {e}\n{text}"))
    }

    #[test]
    fn durations_are_exact_in_the_largest_unit() {
        let cases = [
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(500), "0.0005s"),
            (Duration::new(2, 1), "2.000000001s"),
        ];
        for (value, text) in cases {
            assert_eq!(duration(value), text);
            assert_eq!(elbe::config::parse_duration(text), Ok(value), "{text}");
        }
    }

    #[test]
    fn the_shipped_example_round_trips() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web.toml");
        let config = elbe::config::load(&path).unwrap();
        assert_eq!(reparsed(&config), config);
    }

    #[test]
    fn a_cluster_table_prints_with_its_defaults_and_round_trips() {
        let text = "[cluster]\netcd = [\"http://10.0.0.5:2379\"]\nnode_id = \"lb-1a\"\nzones = [\"a\"]\n\
                    [[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\nname = \"a\"\n\
                    node = \"127.0.0.1\"\n[[load_balancer.listener]]\nprotocol = \"HTTP\"\n\
                    load_balancer_port = 80\ninstance_protocol = \"HTTP\"\ninstance_port = 8080\n";
        let config = elbe::config::parse(text, Path::new("/etc/elbe/elbe.toml")).unwrap();
        assert_eq!(reparsed(&config), config);
        let printed = render(&config).unwrap();
        for line in [
            "[cluster]",
            "prefix = \"/elbe\"",
            "lease_ttl = \"10s\"",
            "dns_drain = \"2m\"",
        ] {
            assert!(printed.contains(line), "{line} in:\n{printed}");
        }
    }

    #[test]
    fn a_minimal_file_prints_every_default() {
        let text = "[[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\nname = \"a\"\n\
                    node = \"127.0.0.1\"\n[[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 80\n\
                    instance_protocol = \"HTTP\"\ninstance_port = 8080\n";
        let config = elbe::config::parse(text, Path::new("/etc/elbe/elbe.toml")).unwrap();
        assert_eq!(reparsed(&config), config);
        let printed = render(&config).unwrap();
        for line in [
            "listen = \"127.0.0.1:9900\"",
            "shutdown_grace = \"30s\"",
            "surge_queue_size = 1024",
            "idle_timeout = \"1m\"",
            "target = \"TCP:8080\"",
            "healthy_threshold = 10",
            "region = \"local-1\"",
            "timeout = \"5m\"",
        ] {
            assert!(printed.contains(line), "{line} missing from:\n{printed}");
        }
    }

    #[test]
    fn the_api_keys_and_the_instance_catalogue_round_trip() {
        let text = "[api]\nregion = \"eu-test-1\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"s\"\n\
                    [[instance]]\nid = \"i-1\"\nzone = \"a\"\naddress = \"127.0.0.21:8000\"\n\
                    [[load_balancer]]\nname = \"web\"\n[[load_balancer.availability_zone]]\nname = \"a\"\n\
                    node = \"127.0.0.1\"\n[[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 80\n\
                    instance_protocol = \"HTTP\"\ninstance_port = 8080\n";
        let config = elbe::config::parse(text, Path::new("/etc/elbe/elbe.toml")).unwrap();
        assert_eq!(reparsed(&config), config);
        assert!(render(&config).unwrap().contains("region = \"eu-test-1\""));
    }

    #[test]
    fn access_logs_and_relative_paths_are_printed_absolute() {
        let text = "[[load_balancer]]\nname = \"web\"\naccess_log = { enabled = true, path = \"logs/access.log\" }\n\
                    [[load_balancer.availability_zone]]\nname = \"a\"\nnode = \"127.0.0.1\"\n\
                    [[load_balancer.listener]]\nprotocol = \"HTTP\"\nload_balancer_port = 80\n\
                    instance_protocol = \"HTTP\"\ninstance_port = 8080\n";
        let config = elbe::config::parse(text, Path::new("relative/elbe.toml")).unwrap();
        let printed = render(&config).unwrap();
        let expected = std::env::current_dir()
            .unwrap()
            .join("relative/logs/access.log");
        assert!(
            printed.contains(&format!("path = \"{}\"", expected.display())),
            "{printed}"
        );
    }
}
