//! The validated configuration: the types every other part of elbe runs from, one per table of the file.
//!
//! Rule: a value of these types has passed every check (ELB-SPEC §1 listener pairing, §2.1 health checks, §4
//! names), so their users never re-validate; only `validate` builds them from the file, and the admin API builds
//! `Instance` after the same checks.
//!
//! Trade-off: plain structs with public fields, not builders or getters. They are data, compared whole in tests
//! and copied into snapshots; an invariant that spans fields (a health check's timeout shorter than its interval)
//! is kept by the one constructor path, not by the type.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::defaults;
use crate::config::health_target::HealthTarget;
use crate::config::instance_address::InstanceAddress;
use crate::config::protocol::Protocol;
use crate::config::traffic::{Policy, Rule};

/// A validated configuration: everything elbe runs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub admin: Admin,
    /// `None` when the file has no `[dns]` table: no responder runs, but DNS names still use
    /// [`defaults::DNS_DOMAIN`].
    pub dns: Option<Dns>,
    /// How `host:port` instances are resolved (DNS discovery).
    pub discovery: Discovery,
    pub limits: Limits,
    /// Where elbe keeps what must survive a restart (the generated stickiness key); `state_dir`, resolved
    /// against the file's folder, default a folder `state` beside the file. Created only when something is kept.
    pub state_dir: PathBuf,
    pub load_balancers: Vec<LoadBalancer>,
}

/// The admin listener (`[admin]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// The authoritative DNS responder for load balancer names (`[dns]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// UDP and TCP.
    pub listen: SocketAddr,
    /// Names are `<lb-name>-<digits>.<region>.<domain>`; stored without a trailing dot.
    pub domain: String,
}

/// Client-side limits beyond ELB's idle timeout (`[limits]`); see [`defaults`] for what each one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub request_header_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_request_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_connections: usize,
    /// Connections queued by the kernel per listener before elbe accepts them (capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
    pub shutdown_grace: Duration,
    pub backend_connect_timeout: Duration,
    pub backend_idle_connections: usize,
    /// Requests one instance may have outstanding before new ones wait in the node's surge queue; 0 = no limit.
    pub backend_max_requests: usize,
    /// Requests a node's surge queue holds before it spills over (503).
    pub surge_queue_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_header_timeout: defaults::REQUEST_HEADER_TIMEOUT,
            tls_handshake_timeout: defaults::TLS_HANDSHAKE_TIMEOUT,
            max_request_header_bytes: defaults::MAX_REQUEST_HEADER_BYTES,
            max_headers: defaults::MAX_HEADERS,
            max_uri_bytes: defaults::MAX_URI_BYTES,
            max_connections: defaults::MAX_CONNECTIONS,
            listen_backlog: defaults::LISTEN_BACKLOG,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            backend_connect_timeout: defaults::BACKEND_CONNECT_TIMEOUT,
            backend_idle_connections: defaults::BACKEND_IDLE_CONNECTIONS,
            backend_max_requests: defaults::BACKEND_MAX_REQUESTS,
            surge_queue_size: defaults::SURGE_QUEUE_SIZE,
        }
    }
}

/// One `[[load_balancer]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    pub name: String,
    pub region: String,
    pub cross_zone_load_balancing: bool,
    pub idle_timeout: Duration,
    pub connection_draining: ConnectionDraining,
    pub passive_health_checks: bool,
    /// ELB's `AccessLog` attribute: where each request's line goes (ELB-SPEC §11), `None` when disabled.
    pub access_log: Option<AccessLogDestination>,
    /// At least one; names unique. Each zone's node binds every listener on its own address.
    pub availability_zones: Vec<AvailabilityZone>,
    /// At least one.
    pub listeners: Vec<Listener>,
    pub health_check: HealthCheck,
    /// May be empty (instances can be registered at run time); ids unique within the load balancer.
    pub instances: Vec<Instance>,
    /// The key that authenticates this load balancer's AWSELB cookies (at least 16 bytes); `None`: the process's
    /// key, generated once and kept in `state_dir`.
    pub stickiness_key: Option<String>,
    /// `[[load_balancer.policy]]`, names unique; listeners attach them by name.
    pub policies: Vec<Policy>,
    /// `[[load_balancer.backend_server]]`: policies per instance port (Proxy Protocol), instance ports unique.
    pub backend_servers: Vec<BackendServer>,
    /// `[[load_balancer.rule]]`, sorted by listener port and then priority.
    pub rules: Vec<Rule>,
}

/// DNS discovery: `host:port` instances are resolved through these name servers (none: the system's
/// resolv.conf), and re-resolved when their answer's TTL ends, bounded by `min_ttl` and `max_ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub name_servers: Vec<SocketAddr>,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            name_servers: Vec::new(),
            min_ttl: defaults::DISCOVERY_MIN_TTL,
            max_ttl: defaults::DISCOVERY_MAX_TTL,
        }
    }
}

/// Where access-log lines go: `path = "-"` is standard output; other paths are files, relative to the
/// configuration file's folder, reopened on SIGHUP (logrotate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogDestination {
    Stdout,
    File(PathBuf),
}

/// ELB's `ConnectionDraining` attribute (ELB-SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDraining {
    pub enabled: bool,
    pub timeout: Duration,
}

/// An enabled availability zone and the address its node binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityZone {
    pub name: String,
    pub node: IpAddr,
}

/// (protocol, load_balancer_port) -> (instance_protocol, instance_port), ELB-SPEC §1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub protocol: Protocol,
    /// 0 means any free port.
    pub load_balancer_port: u16,
    pub instance_protocol: Protocol,
    /// 1–65535.
    pub instance_port: u16,
    /// Non-empty exactly for HTTPS/SSL listeners; the first is the default, SNI picks others. Paths are already
    /// resolved against the config file's folder.
    pub certificates: Vec<CertificatePaths>,
    /// Only for HTTPS/SSL; the TLS module checks the name.
    pub ssl_policy: Option<String>,
    /// ELB's SetLoadBalancerPoliciesOfListener: names of the load balancer's policies, each one known; at most one
    /// stickiness policy, and only on HTTP/HTTPS listeners.
    pub policy_names: Vec<String>,
    /// elbe's extension, TCP/SSL listeners only: each client connection starts with a PROXY protocol header (v1
    /// or v2) from a trusted upstream balancer, whose source address becomes the client's.
    pub accept_proxy_protocol: bool,
}

/// ELB's SetLoadBalancerPoliciesForBackendServer: the policies of connections to one instance port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendServer {
    pub instance_port: u16,
    /// Names of the load balancer's ProxyProtocolPolicyType policies, each one known.
    pub policy_names: Vec<String>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// ELB's `HealthCheck` (ELB-SPEC §2.1), with any positive durations and thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub target: HealthTarget,
    pub interval: Duration,
    /// Always shorter than `interval`.
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// A registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// May name a zone that is not enabled; elbe then reports the instance OutOfService (ELB-SPEC §2.2).
    pub zone: String,
    pub address: InstanceAddress,
}
