//! Defaults: the example file from DESIGN.md parses to exactly what it says, and every key left out takes its
//! default from `config::defaults` (ELB's where ELB has one).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::{ms, ok, with_lb, MINIMAL};
use crate::config::{
    parse, AvailabilityZone, CertificatePaths, ConnectionDraining, Dns, HealthCheck, HealthTarget,
    Instance, InstanceAddress, Limits, Listener, LoadBalancer, Protocol,
};

/// The example from DESIGN.md "The configuration file (the contract)", verbatim, plus its [limits] table.
const DESIGN_EXAMPLE: &str = r#"
[admin]
listen = "127.0.0.1:9900"              # /metrics, /healthz, /status (and later the ELB API)

[dns]                                   # optional: the authoritative responder for load balancer names
listen = "127.0.0.1:5353"              # UDP and TCP
domain = "elb.localhost"               # names are <lb-name>-<digits>.<region>.<domain>

[[load_balancer]]
name = "web"
region = "local-1"
cross_zone_load_balancing = false       # ELB API default
idle_timeout = "60s"
connection_draining = { enabled = false, timeout = "300s" }

[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.11"                     # the address this zone's node binds its listeners on

[[load_balancer.availability_zone]]
name = "zone-b"
node = "127.0.0.12"

[[load_balancer.listener]]
protocol = "HTTP"                       # HTTP | HTTPS | TCP | SSL
load_balancer_port = 8080
instance_protocol = "HTTP"
instance_port = 8000

[[load_balancer.listener]]
protocol = "HTTPS"
load_balancer_port = 8443
instance_protocol = "HTTP"
instance_port = 8000
certificates = [{ cert = "certs/localhost.crt", key = "certs/localhost.key" }]   # first is the default; SNI picks others
ssl_policy = "ELBSecurityPolicy-TLS-1-2-2017-01"

[load_balancer.health_check]
target = "HTTP:8000/health"             # TCP:port | SSL:port | HTTP:port/path | HTTPS:port/path
interval = "30s"
timeout = "5s"
healthy_threshold = 10
unhealthy_threshold = 2

[[load_balancer.instance]]
id = "i-a1"
zone = "zone-a"
address = "127.0.0.21"                  # an IP (the listener's instance_port is used), IP:port, or host:port resolved by DNS

[limits]
request_header_timeout = "10s"      # whole request head must arrive in this time, else 408 and close
tls_handshake_timeout = "10s"
max_request_header_bytes = 65536    # 431 beyond
max_headers = 100                   # 431 beyond
max_uri_bytes = 16384               # 414 beyond
max_connections = 10000             # per process; further connections wait in the kernel backlog
shutdown_grace = "30s"              # SIGTERM: drain deadline (connection_draining's timeout when that is enabled)
"#;

/// Where the DESIGN example's relative certificate paths (`certs/localhost.crt`) exist: the repository's root.
const DESIGN_EXAMPLE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/elbe.toml");

#[test]
fn design_example_parses_to_the_expected_values() {
    let config = parse(DESIGN_EXAMPLE, Path::new(DESIGN_EXAMPLE_FILE))
        .unwrap_or_else(|e| panic!("the DESIGN example must be valid: {e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(config.admin.listen, "127.0.0.1:9900".parse().unwrap());
    assert_eq!(
        config.dns,
        Some(Dns {
            listen: "127.0.0.1:5353".parse().unwrap(),
            domain: "elb.localhost".into()
        })
    );
    assert_eq!(config.limits, Limits::default());
    let expected = LoadBalancer {
        name: "web".into(),
        region: "local-1".into(),
        cross_zone_load_balancing: false,
        idle_timeout: Duration::from_secs(60),
        connection_draining: ConnectionDraining {
            enabled: false,
            timeout: Duration::from_secs(300),
        },
        passive_health_checks: true,
        access_log: None,
        availability_zones: vec![
            AvailabilityZone {
                name: "zone-a".into(),
                node: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)),
            },
            AvailabilityZone {
                name: "zone-b".into(),
                node: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12)),
            },
        ],
        listeners: vec![
            Listener {
                protocol: Protocol::Http,
                load_balancer_port: 8080,
                instance_protocol: Protocol::Http,
                instance_port: 8000,
                certificates: vec![],
                ssl_policy: None,
                policy_names: vec![],
                accept_proxy_protocol: false,
                freebind: false,
            },
            Listener {
                protocol: Protocol::Https,
                load_balancer_port: 8443,
                instance_protocol: Protocol::Http,
                instance_port: 8000,
                certificates: vec![CertificatePaths {
                    cert: root.join("certs/localhost.crt"),
                    key: root.join("certs/localhost.key"),
                }],
                ssl_policy: Some("ELBSecurityPolicy-TLS-1-2-2017-01".into()),
                policy_names: vec![],
                accept_proxy_protocol: false,
                freebind: false,
            },
        ],
        health_check: HealthCheck {
            target: HealthTarget::Http {
                port: 8000,
                path: "/health".into(),
            },
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 10,
            unhealthy_threshold: 2,
        },
        instances: vec![Instance {
            id: "i-a1".into(),
            zone: "zone-a".into(),
            address: InstanceAddress::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21))),
        }],
        stickiness_key: None,
        policies: vec![],
        backend_servers: vec![],
        rules: vec![],
    };
    assert_eq!(config.load_balancers, vec![expected]);
}

#[test]
fn minimal_file_gets_every_default() {
    let config = ok(MINIMAL);
    assert_eq!(
        config.admin.listen,
        SocketAddr::from(([127, 0, 0, 1], 9900))
    );
    assert_eq!(config.dns, None);
    let limits = &config.limits;
    assert_eq!(limits.request_header_timeout, Duration::from_secs(10));
    assert_eq!(limits.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(limits.max_request_header_bytes, 65536);
    assert_eq!(limits.max_headers, 100);
    assert_eq!(limits.max_uri_bytes, 16384);
    assert_eq!(limits.max_connections, 10000);
    assert_eq!(limits.listen_backlog, 4096);
    assert_eq!(limits.shutdown_grace, Duration::from_secs(30));
    assert_eq!(limits.backend_connect_timeout, Duration::from_secs(5));
    assert_eq!(limits.backend_idle_connections, 128);
    let lb = &config.load_balancers[0];
    assert_eq!(lb.region, "local-1");
    assert!(!lb.cross_zone_load_balancing);
    assert_eq!(lb.idle_timeout, Duration::from_secs(60));
    assert_eq!(
        lb.connection_draining,
        ConnectionDraining {
            enabled: false,
            timeout: Duration::from_secs(300)
        }
    );
    assert!(lb.passive_health_checks);
    assert!(lb.instances.is_empty());
    assert_eq!(
        lb.health_check,
        HealthCheck {
            target: HealthTarget::Tcp { port: 8000 },
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 10,
            unhealthy_threshold: 2,
        }
    );
    // An empty [dns] domain falls back to the default.
    let config = ok(&format!("[dns]\nlisten = \"127.0.0.1:5353\"\n{MINIMAL}"));
    assert_eq!(
        config.dns.map(|d| d.domain),
        Some("elb.localhost".to_owned())
    );
}

#[test]
fn partial_tables_default_the_rest() {
    let config = ok(&format!(
        "[limits]\nmax_headers = 7\n{}[load_balancer.health_check]\ninterval = \"1s\"\ntimeout = \"250ms\"\n",
        with_lb("connection_draining = { enabled = true }")
    ));
    assert_eq!(
        config.limits,
        Limits {
            max_headers: 7,
            ..Limits::default()
        }
    );
    let lb = &config.load_balancers[0];
    assert_eq!(
        lb.connection_draining,
        ConnectionDraining {
            enabled: true,
            timeout: Duration::from_secs(300)
        }
    );
    assert_eq!(lb.health_check.target, HealthTarget::Tcp { port: 8000 });
    assert_eq!(
        (lb.health_check.interval, lb.health_check.timeout),
        (Duration::from_secs(1), ms(250))
    );
    assert_eq!(lb.health_check.healthy_threshold, 10);
}
