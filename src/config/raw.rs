//! The file's shape, exactly as written (DESIGN.md "The configuration file"): one struct per TOML table, every
//! key optional unless the file must give it.
//!
//! Rule: no defaults and no meaning here; only `validate` gives meaning. Every struct rejects unknown keys
//! (`deny_unknown_fields`), because a typo such as `idle_timout` must be an error, not a setting silently ignored.
//!
//! Trade-off: durations are the one exception to "no meaning": they are parsed while deserializing
//! ([`DurationValue`]), so that a bad value gets the key path and line that only serde knows.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::config::duration::parse_duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Config {
    pub admin: Option<Admin>,
    pub dns: Option<Dns>,
    pub discovery: Option<Discovery>,
    pub limits: Option<Limits>,
    #[serde(default)]
    pub load_balancer: Vec<LoadBalancer>,
    /// Where elbe keeps what it must remember across restarts (the stickiness key).
    pub state_dir: Option<String>,
    /// The ELB API on the admin listener (DESIGN.md "The ELB API").
    pub api: Option<Api>,
    /// The EC2 stand-in: what an `InstanceId` given to the API means.
    #[serde(default)]
    pub instance: Vec<Instance>,
    /// Cluster mode on etcd (DESIGN.md "The state store").
    pub cluster: Option<Cluster>,
}

/// `[cluster]` (DESIGN.md "The state store": several elbe processes act as one ELB).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Cluster {
    #[serde(default)]
    pub etcd: Vec<String>,
    pub prefix: Option<String>,
    pub node_id: String,
    #[serde(default)]
    pub zones: Vec<String>,
    pub lease_ttl: Option<DurationValue>,
    pub dns_drain: Option<DurationValue>,
}

/// `[api]` (DESIGN.md "The ELB API").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Api {
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub zones: Vec<ApiZone>,
    #[serde(default)]
    pub certificates: Vec<ApiCertificate>,
}

/// One of `[api] zones`: a zone the API may enable, and the addresses its nodes take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiZone {
    pub name: String,
    pub node_pool: String,
}

/// One of `[api] certificates`: what an `SSLCertificateId` names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiCertificate {
    pub id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Discovery {
    #[serde(default)]
    pub name_servers: Vec<String>,
    pub min_ttl: Option<DurationValue>,
    pub max_ttl: Option<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Admin {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Dns {
    pub listen: String,
    pub domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Limits {
    pub request_header_timeout: Option<DurationValue>,
    pub tls_handshake_timeout: Option<DurationValue>,
    pub max_request_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub listen_backlog: Option<u32>,
    pub shutdown_grace: Option<DurationValue>,
    pub backend_connect_timeout: Option<DurationValue>,
    pub backend_idle_connections: Option<usize>,
    pub backend_max_requests: Option<usize>,
    pub surge_queue_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoadBalancer {
    pub name: String,
    pub region: Option<String>,
    pub cross_zone_load_balancing: Option<bool>,
    pub idle_timeout: Option<DurationValue>,
    pub connection_draining: Option<ConnectionDraining>,
    pub passive_health_checks: Option<bool>,
    pub access_log: Option<AccessLog>,
    #[serde(default)]
    pub availability_zone: Vec<AvailabilityZone>,
    #[serde(default)]
    pub listener: Vec<Listener>,
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub instance: Vec<Instance>,
    /// The key that authenticates AWSELB cookies; without one elbe keeps a generated key in `state_dir`.
    pub stickiness_key: Option<String>,
    #[serde(default)]
    pub policy: Vec<Policy>,
    #[serde(default)]
    pub backend_server: Vec<BackendServer>,
    #[serde(default)]
    pub rule: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessLog {
    pub enabled: Option<bool>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionDraining {
    pub enabled: Option<bool>,
    pub timeout: Option<DurationValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AvailabilityZone {
    pub name: String,
    pub node: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Listener {
    pub protocol: String,
    pub load_balancer_port: u16,
    pub instance_protocol: String,
    pub instance_port: u16,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    pub ssl_policy: Option<String>,
    #[serde(default)]
    pub policy_names: Vec<String>,
    /// elbe's extension: the client's connection starts with a PROXY v1/v2 header from a trusted upstream.
    pub accept_proxy_protocol: Option<bool>,
    /// elbe's extension: bind with `IP_FREEBIND`, so the node's address need not be on this machine yet.
    pub freebind: Option<bool>,
}

/// One `[[load_balancer.backend_server]]`: ELB's SetLoadBalancerPoliciesForBackendServer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendServer {
    pub instance_port: u16,
    #[serde(default)]
    pub policy_names: Vec<String>,
    /// elbe's back-end authentication: a PEM file of CA certificates the instances' chains must lead to.
    pub backend_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthCheck {
    pub target: Option<String>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Instance {
    pub id: String,
    pub zone: String,
    pub address: String,
}

/// One `[[load_balancer.policy]]` (DESIGN.md "Policies"); which keys apply depends on `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Policy {
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    pub cookie_expiration_period: Option<DurationValue>,
    pub cookie_name: Option<String>,
    pub proxy_protocol: Option<bool>,
}

/// One `[[load_balancer.rule]]` (DESIGN.md "Listener rules", ALB's model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rule {
    pub load_balancer_port: u16,
    pub priority: u32,
    pub path_pattern: Option<Vec<String>>,
    pub host_header: Option<Vec<String>>,
    pub http_request_method: Option<Vec<String>>,
    pub source_ip: Option<Vec<String>>,
    pub action: RuleAction,
}

/// A rule's `action`; which keys apply depends on `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleAction {
    #[serde(rename = "type")]
    pub action_type: String,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<TextOrNumber>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status_code: Option<TextOrNumber>,
    pub content_type: Option<String>,
    pub message_body: Option<String>,
}

/// A value ALB writes as a string that people write as a number too (`port = 443`, `status_code = 403`).
#[derive(Debug, Clone)]
pub(super) struct TextOrNumber(pub String);

impl<'de> Deserialize<'de> for TextOrNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrNumberVisitor;

        impl Visitor<'_> for TextOrNumberVisitor {
            type Value = TextOrNumber;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a whole number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TextOrNumber, E> {
                Ok(TextOrNumber(v.to_string()))
            }
        }

        deserializer.deserialize_any(TextOrNumberVisitor)
    }
}

/// A duration string, parsed while deserializing so that a bad value (or a bare number) is reported with
/// its key path and line.
#[derive(Debug, Clone, Copy)]
pub(super) struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        fn bare<E: de::Error>(n: impl fmt::Display) -> E {
            E::custom(format!(
                "a duration needs a unit and quotes: write \"{n}s\" or \"{n}ms\", not {n}"
            ))
        }

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"250ms\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                Err(bare(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Err(bare(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationValue, E> {
                Err(bare(v))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}
