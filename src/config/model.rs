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
    /// The admin listener: `/status`, `/healthz`, `/metrics` and instance registration.
    pub admin: Admin,
    /// `None` when the file has no `[dns]` table: no responder runs, but DNS names still use
    /// [`defaults::DNS_DOMAIN`].
    pub dns: Option<Dns>,
    /// How `host:port` instances are resolved (DNS discovery).
    pub discovery: Discovery,
    /// Client-side limits that ELB did not expose (`[limits]`), each with its default.
    pub limits: Limits,
    /// Where elbe keeps what must survive a restart (the generated stickiness key); `state_dir`, resolved
    /// against the file's folder, default a folder `state` beside the file. Created only when something is kept.
    pub state_dir: PathBuf,
    /// The `[[load_balancer]]` tables, in file order; names unique.
    pub load_balancers: Vec<LoadBalancer>,
    /// `[api]`: the ELB API on the admin listener (region, access keys).
    pub api: Api,
    /// `[[instance]]`: the EC2 stand-in, what an `InstanceId` given to the API means; ids unique.
    pub instances: Vec<Instance>,
    /// `[cluster]`: several elbe processes acting as one ELB on one etcd; `None` without the table (the
    /// embedded store in `state_dir`).
    pub cluster: Option<Cluster>,
}

/// `[cluster]` (DESIGN.md "The state store"): where the cluster's etcd is and who this process is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `etcd`: the etcd cluster's client URLs (`http://10.0.0.5:2379`), at least one, none twice.
    pub etcd: Vec<String>,
    /// `prefix`: every key elbe writes is under it (default `/elbe`); starts with `/`, no trailing `/`.
    pub prefix: String,
    /// `node_id`: this process's name among the members, unique per process.
    pub node_id: String,
    /// `zones`: the zones whose nodes this process runs (node addresses as configured); at least one, none twice.
    pub zones: Vec<String>,
    /// `lease_ttl`: a dead process's nodes leave the DNS answers within this (default 10 s; whole seconds,
    /// as etcd's leases count).
    pub lease_ttl: Duration,
    /// `dns_drain`: on SIGTERM the process leaves the DNS answers first and keeps serving this long, then drains
    /// and stops (default [`Cluster::DEFAULT_DNS_DRAIN`]).
    pub dns_drain: Duration,
}

impl Cluster {
    /// `prefix` when the file gives none.
    pub const DEFAULT_PREFIX: &'static str = "/elbe";
    /// `lease_ttl` when the file gives none (issue 16: a dead member's nodes leave the answers within it).
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
    /// `dns_drain` when the file gives none: twice the 60 s TTL of elbe's DNS answers, so an answer cached by a
    /// resolver, and again by a resolver behind it, has expired before the node stops. ELB keeps a node
    /// serving at least 60 minutes because not every client obeys a TTL; an elbe cluster scales in by stopping
    /// processes, and an hour per stop is an hour of a machine kept for clients that ignore DNS: raise it where
    /// they matter.
    pub const DEFAULT_DNS_DRAIN: Duration = Duration::from_secs(120);
}

/// The ELB API (2012-06-01) on the admin listener (`[api]`, DESIGN.md "The ELB API").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// `region`: the region SigV4 signatures must be scoped to (default [`defaults::REGION`]).
    pub region: String,
    /// `access_key_id` and `secret_access_key`, given both or neither; `None`: any signature is accepted.
    pub credentials: Option<ApiCredentials>,
    /// `zones`: the zones a load balancer created through the API may enable, each with the pool its nodes take
    /// addresses from; names unique, pools disjoint.
    pub zones: Vec<ApiZone>,
    /// `certificates`: what an `SSLCertificateId` names; ids unique.
    pub certificates: Vec<ApiCertificate>,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            region: defaults::REGION.to_owned(),
            credentials: None,
            zones: Vec::new(),
            certificates: Vec::new(),
        }
    }
}

/// A zone the ELB API may enable: each load balancer that enables it takes the next free address of
/// `node_pool` for its node there, so every load balancer may listen on the same ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiZone {
    /// The zone's name, as `[[instance]]` and `AvailabilityZones.member.N` name it.
    pub name: String,
    /// The addresses nodes in this zone take (network and broadcast addresses of an IPv4 pool excepted).
    pub node_pool: ipnet::IpNet,
}

/// A certificate the ELB API knows by its `SSLCertificateId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCertificate {
    /// The id (an IAM server-certificate ARN in ELB).
    pub id: String,
    /// The PEM chain and key, resolved against the file's folder.
    pub paths: CertificatePaths,
}

/// The one access key every API call must be signed with (AWS Signature Version 4).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiCredentials {
    /// `access_key_id`: the key id a signature's `Credential=` names.
    pub access_key_id: String,
    /// `secret_access_key`: what the signing key is derived from.
    pub secret_access_key: String,
}

/// Shows the key id, never the secret (configurations are logged and printed in errors).
impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The admin listener (`[admin]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// `listen`: the admin listener's address, default [`defaults::ADMIN_LISTEN`] (loopback only).
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
    /// `request_header_timeout`: the whole request head must arrive within it, else 408 (default 10 s).
    pub request_header_timeout: Duration,
    /// `tls_handshake_timeout`: a slower TLS handshake is abandoned (default 10 s).
    pub tls_handshake_timeout: Duration,
    /// `max_request_header_bytes`: larger request heads get 431 (default 64 KiB, 8 KiB to 16 MiB).
    pub max_request_header_bytes: usize,
    /// `max_headers`: more header fields get 431 (default 100).
    pub max_headers: usize,
    /// `max_uri_bytes`: longer request targets get 414 (default 16 KiB).
    pub max_uri_bytes: usize,
    /// `max_connections`: open client connections per process; more wait in the accept backlog (default 10,000).
    pub max_connections: usize,
    /// Connections queued by the kernel per listener before elbe accepts them (capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// `shutdown_grace`: SIGTERM's drain deadline when connection draining is off (default 30 s).
    pub shutdown_grace: Duration,
    /// `backend_connect_timeout`: a TCP connect to an instance that takes longer counts as failed (default 5 s).
    pub backend_connect_timeout: Duration,
    /// `backend_idle_connections`: idle keep-alive connections kept per instance whatever the demand; more while the
    /// instance's recent peak of concurrent requests needs them (default 128; ELB-SPEC §1.1, `back_end::pool`).
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
    /// ELB's `LoadBalancerName`: 1–32 letters, digits and hyphens, unique; the first part of its DNS name (ELB-SPEC §4).
    pub name: String,
    /// The region part of the DNS name, default [`defaults::REGION`].
    pub region: String,
    /// ELB's `CrossZoneLoadBalancing` attribute: nodes route to every zone's instances (ELB-SPEC §3; default off).
    pub cross_zone_load_balancing: bool,
    /// ELB's `ConnectionSettings.IdleTimeout`: idle client and instance connections close after it (ELB-SPEC §5; default 60 s).
    pub idle_timeout: Duration,
    /// ELB's `ConnectionDraining` attribute (ELB-SPEC §5; default off, 300 s).
    pub connection_draining: ConnectionDraining,
    /// elbe's extension: an instance failing under traffic counts as a failed health check (default on).
    pub passive_health_checks: bool,
    /// ELB's `AccessLog` attribute: where each request's line goes (ELB-SPEC §11), `None` when disabled.
    pub access_log: Option<AccessLogDestination>,
    /// At least one; names unique. Each zone's node binds every listener on its own address.
    pub availability_zones: Vec<AvailabilityZone>,
    /// At least one.
    pub listeners: Vec<Listener>,
    /// ELB's `HealthCheck` (ELB-SPEC §2.1).
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
    /// Name servers to ask; empty: the system's resolv.conf.
    pub name_servers: Vec<SocketAddr>,
    /// Answers are re-resolved no sooner than this, whatever their TTL (default 1 s).
    pub min_ttl: Duration,
    /// Answers are trusted no longer than this, whatever their TTL (default 300 s).
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
    /// `path = "-"`: standard output.
    Stdout,
    /// A file, resolved against the configuration file's folder, reopened on SIGHUP.
    File(PathBuf),
}

/// ELB's `ConnectionDraining` attribute (ELB-SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDraining {
    /// `Enabled`: deregistered or unhealthy instances finish their requests in flight before removal (default off).
    pub enabled: bool,
    /// `Timeout`: how long draining waits for in-flight requests (default 300 s).
    pub timeout: Duration,
}

/// An enabled availability zone and the address its node binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityZone {
    /// The zone's name, as instances name it (e.g. `us-east-1a`); unique within the load balancer.
    pub name: String,
    /// The address this zone's node binds every listener on, and the address DNS answers with (ELB-SPEC §3, §4).
    pub node: IpAddr,
}

/// (protocol, load_balancer_port) -> (instance_protocol, instance_port), ELB-SPEC §1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// ELB's `Protocol`: what clients speak to this listener.
    pub protocol: Protocol,
    /// 0 means any free port.
    pub load_balancer_port: u16,
    /// ELB's `InstanceProtocol`: what the node speaks to instances (ELB-SPEC §1).
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
    /// elbe's extension, on any listener: each client connection starts with a PROXY protocol header (v1 or v2)
    /// from a trusted upstream balancer, whose source address becomes the client's.
    pub accept_proxy_protocol: bool,
    /// elbe's extension (DESIGN.md "A floating-IP pair"): the socket is bound with `IP_FREEBIND` (Linux), so the
    /// node's address need not exist on this machine: the standby of a keepalived pair already listens on the
    /// floating IP before it moves here. Read when the socket is bound; a reload keeps a bound socket as it is.
    pub freebind: bool,
}

/// ELB's SetLoadBalancerPoliciesForBackendServer: the policies of connections to one instance port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendServer {
    /// ELB's `InstancePort`: the instance port these policies apply to; 1–65535.
    pub instance_port: u16,
    /// Names of the load balancer's ProxyProtocolPolicyType policies, each one known.
    pub policy_names: Vec<String>,
    /// `backend_ca`: elbe's back-end authentication (ELB's BackendServerAuthenticationPolicyType, which pinned
    /// public keys, ELB-SPEC §12): HTTPS/SSL instances on this port must present a chain to one of these CAs.
    /// Only on a port some listener speaks HTTPS or SSL to. `None`: nothing is verified, as ELB without it.
    pub backend_ca: Option<BackendCa>,
}

/// A `backend_ca` file, read when the configuration is: a reload re-reads it, so a changed file is a changed
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendCa {
    /// The PEM file, resolved against the config file's folder.
    pub path: PathBuf,
    /// Its certificates (at least one), each usable as a trust anchor.
    pub certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    /// The PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// The PEM private key of the leaf certificate.
    pub key: PathBuf,
}

/// ELB's `HealthCheck` (ELB-SPEC §2.1), with any positive durations and thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// ELB's `Target`: `PROTOCOL:PORT[/path]` (ELB-SPEC §2.1).
    pub target: HealthTarget,
    /// ELB's `Interval` between checks of one instance (default 30 s).
    pub interval: Duration,
    /// Always shorter than `interval`.
    pub timeout: Duration,
    /// ELB's `HealthyThreshold`: consecutive successes before InService (default 10).
    pub healthy_threshold: u32,
    /// ELB's `UnhealthyThreshold`: consecutive failures before OutOfService (default 2).
    pub unhealthy_threshold: u32,
}

/// A registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// ELB's `InstanceId`: unique within the load balancer.
    pub id: String,
    /// May name a zone that is not enabled; elbe then reports the instance OutOfService (ELB-SPEC §2.2).
    pub zone: String,
    /// Where the instance listens: an IP address (each listener's instance port), an `ip:port`, or a `host:port`
    /// that DNS discovery resolves.
    pub address: InstanceAddress,
}
