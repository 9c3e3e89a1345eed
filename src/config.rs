//! The configuration file: a raw serde model of the TOML and the validated types the rest of elbe uses.
//!
//! The file's shape is the contract in DESIGN.md ("The configuration file"). It is read in two layers, as Sozu and
//! linkerd do: `raw` mirrors the TOML exactly and rejects unknown keys (a typo must be an error, not a setting
//! silently ignored); [`parse`] then turns it into [`Config`], applying every default from [`defaults`] and checking
//! the rules ELB's API checks (listener pairing, ELB-SPEC §1; health-check target syntax, §2.1; load balancer names,
//! §4). Every error names the file, the key path (`load_balancer[0].listener[1].protocol`) and the reason in plain
//! words, because `elbe check` and a refused SIGHUP reload print nothing else.
//!
//! Trade-off: durations and thresholds accept any positive value so tests can run in milliseconds (DESIGN.md);
//! ELB's own ranges (interval 5–300 s, thresholds 2–10, ...) are enforced by the ELB-compatible API, not here.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A configuration file that cannot be used: which file, which key, and why.
///
/// `key` is a path into the TOML (`load_balancer[0].listener[1].protocol`); it is empty for I/O and TOML syntax
/// errors, whose `reason` then carries the cause (and the line and column for syntax errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

/// Every default in one place. Where the value is ELB's, the doc comment cites ELB-SPEC.md.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::time::Duration;

    /// The admin listener (`/metrics`, `/healthz`, `/status`): loopback only, so nothing is exposed by default.
    pub const ADMIN_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9900));
    /// DNS names are `<lb-name>-<digits>.<region>.<domain>` (ELB-SPEC §4 uses `elb.amazonaws.com`); `.localhost`
    /// never leaks to the public DNS.
    pub const DNS_DOMAIN: &str = "elb.localhost";
    /// The region part of DNS names; a name that cannot be mistaken for a real AWS region.
    pub const REGION: &str = "local-1";
    /// ELB API default: cross-zone load balancing disabled (ELB-SPEC §3; the console enabled it).
    pub const CROSS_ZONE_LOAD_BALANCING: bool = false;
    /// ELB `ConnectionSettings.IdleTimeout` default: 60 s (ELB-SPEC §5).
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// ELB API default: connection draining disabled (ELB-SPEC §5; the console enabled it).
    pub const CONNECTION_DRAINING_ENABLED: bool = false;
    /// ELB `ConnectionDraining.Timeout` default: 300 s (ELB-SPEC §5).
    pub const CONNECTION_DRAINING_TIMEOUT: Duration = Duration::from_secs(300);
    /// elbe extension, on by default: a connection to an instance that fails while proxying counts as a failed
    /// health check, so a dead instance leaves rotation before the next active check. ELB only used active
    /// checks; set `passive_health_checks = false` to get exactly that.
    pub const PASSIVE_HEALTH_CHECKS: bool = true;
    /// ELB `HealthCheck.Interval` default after CreateLoadBalancer: 30 s (ELB-SPEC §2.1).
    pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(30);
    /// ELB `HealthCheck.Timeout` default: 5 s (ELB-SPEC §2.1).
    pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
    /// ELB `HealthCheck.HealthyThreshold` default: 10 (ELB-SPEC §2.1).
    pub const HEALTHY_THRESHOLD: u32 = 10;
    /// ELB `HealthCheck.UnhealthyThreshold` default: 2 (ELB-SPEC §2.1).
    pub const UNHEALTHY_THRESHOLD: u32 = 2;
    /// The whole request head must arrive within this time, else 408 and close (slowloris protection).
    pub const REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// A TLS handshake that takes longer is abandoned.
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Larger request heads get 431.
    pub const MAX_REQUEST_HEADER_BYTES: usize = 65536;
    /// A smaller `max_request_header_bytes` would refuse ordinary requests (a browser's head with its cookies runs
    /// to several KiB); nginx's default large header buffer is the same 8 KiB.
    pub const MIN_REQUEST_HEADER_BYTES: usize = 8192;
    /// More header fields than this get 431.
    pub const MAX_HEADERS: usize = 100;
    /// Longer request targets get 414.
    pub const MAX_URI_BYTES: usize = 16384;
    /// Open client connections per process; further connections wait in the kernel's accept backlog.
    pub const MAX_CONNECTIONS: usize = 10000;
    /// SIGTERM drain deadline (connection draining's timeout applies instead when draining is enabled).
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// elbe extension: how long to wait for a TCP connect to an instance before the attempt counts as failed.
    pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// elbe extension: idle keep-alive connections kept per instance (ELB "pre-opens and keeps" back-end
    /// connections, ELB-SPEC §1.1); more are closed once their request finishes.
    pub const BACKEND_IDLE_CONNECTIONS: usize = 128;
    /// elbe extension: no cap on an instance's outstanding requests by default, so the surge queue is only used
    /// when a cap is set (ELB queued when its connections to healthy instances were all busy, ELB-SPEC §8).
    pub const BACKEND_MAX_REQUESTS: usize = 0;
    /// ELB's surge queue size: 1,024 requests per node (ELB-SPEC §8).
    pub const SURGE_QUEUE_SIZE: usize = 1024;
    /// ELB's limit on a health-check target's length (ELB-SPEC §2.1).
    pub const MAX_HEALTH_TARGET_LEN: usize = 1024;
    /// ELB's limit on a load balancer name's length (ELB-SPEC §4).
    pub const MAX_LOAD_BALANCER_NAME_LEN: usize = 32;
}

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
            // Never re-resolve more often than every second (a TTL of 0 must not spin), never trust an answer
            // for more than five minutes (a record changed behind a long TTL is seen within that).
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
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
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A listener protocol. The file accepts any case; it displays upper-case, as ELB's API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Https,
    Tcp,
    Ssl,
}

impl Protocol {
    /// HTTPS and SSL terminate TLS.
    pub fn is_secure(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Ssl)
    }

    /// HTTP and HTTPS are Layer 7 (headers, stickiness); TCP and SSL pass bytes through.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tcp => "TCP",
            Protocol::Ssl => "SSL",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "HTTP" => Ok(Protocol::Http),
            "HTTPS" => Ok(Protocol::Https),
            "TCP" => Ok(Protocol::Tcp),
            "SSL" => Ok(Protocol::Ssl),
            _ => Err(format!(
                "unknown protocol {s:?} (expected HTTP, HTTPS, TCP or SSL)"
            )),
        }
    }
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

/// A health-check target, `PROTOCOL:port[/path]` (ELB-SPEC §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HealthTarget {
    Tcp { port: u16 },
    Ssl { port: u16 },
    Http { port: u16, path: String },
    Https { port: u16, path: String },
}

impl HealthTarget {
    pub fn port(&self) -> u16 {
        match self {
            HealthTarget::Tcp { port }
            | HealthTarget::Ssl { port }
            | HealthTarget::Http { port, .. }
            | HealthTarget::Https { port, .. } => *port,
        }
    }

    /// The request path for HTTP/HTTPS targets.
    pub fn path(&self) -> Option<&str> {
        match self {
            HealthTarget::Http { path, .. } | HealthTarget::Https { path, .. } => Some(path),
            HealthTarget::Tcp { .. } | HealthTarget::Ssl { .. } => None,
        }
    }
}

impl fmt::Display for HealthTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthTarget::Tcp { port } => write!(f, "TCP:{port}"),
            HealthTarget::Ssl { port } => write!(f, "SSL:{port}"),
            HealthTarget::Http { port, path } => write!(f, "HTTP:{port}{path}"),
            HealthTarget::Https { port, path } => write!(f, "HTTPS:{port}{path}"),
        }
    }
}

impl FromStr for HealthTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() > defaults::MAX_HEALTH_TARGET_LEN {
            return Err(format!(
                "a health check target is at most {} characters, this one has {}",
                defaults::MAX_HEALTH_TARGET_LEN,
                s.len()
            ));
        }
        let shape = || format!("{s:?} is not PROTOCOL:port[/path] (e.g. TCP:80 or HTTP:80/health)");
        let (protocol, rest) = s.split_once(':').ok_or_else(shape)?;
        // moto's wording, the closest known to ELB's ValidationError (ELB-SPEC §2.1).
        let protocol: Protocol = protocol
            .parse()
            .map_err(|_| format!("target {s:?} must begin with one of HTTP, TCP, HTTPS, SSL"))?;
        let (port, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], Some(&rest[slash..])),
            None => (rest, None),
        };
        let port = parse_port(port).map_err(|why| format!("target {s:?}: {why}"))?;
        match (protocol, path) {
            (Protocol::Tcp, None) => Ok(HealthTarget::Tcp { port }),
            (Protocol::Ssl, None) => Ok(HealthTarget::Ssl { port }),
            (Protocol::Tcp | Protocol::Ssl, Some(_)) => {
                Err(format!("a {protocol} target takes no path: write {protocol}:{port}"))
            }
            (Protocol::Http | Protocol::Https, None) => {
                Err(format!("an {protocol} target needs a path starting with '/', e.g. {protocol}:{port}/health"))
            }
            (Protocol::Http | Protocol::Https, Some(path)) => {
                // The path goes into the request line verbatim; whitespace or control bytes would break it.
                if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!("the path in {s:?} must not contain spaces or control characters"));
                }
                let path = path.to_owned();
                Ok(match protocol {
                    Protocol::Http => HealthTarget::Http { port, path },
                    _ => HealthTarget::Https { port, path },
                })
            }
        }
    }
}

/// A registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// May name a zone that is not enabled; elbe then reports the instance OutOfService (ELB-SPEC §2.2).
    pub zone: String,
    pub address: InstanceAddress,
}

/// Where an instance is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceAddress {
    /// The listener's `instance_port` (and the health check's port) are used.
    Ip(IpAddr),
    /// This port is used for every listener and for health checks (DESIGN.md "Health-check port").
    Socket(SocketAddr),
    /// Resolved by DNS and re-resolved at its TTL; the port is used as for `Socket`.
    Host { host: String, port: u16 },
}

impl InstanceAddress {
    /// The instance's own port, if it has one.
    pub fn port(&self) -> Option<u16> {
        match self {
            InstanceAddress::Ip(_) => None,
            InstanceAddress::Socket(addr) => Some(addr.port()),
            InstanceAddress::Host { port, .. } => Some(*port),
        }
    }
}

impl fmt::Display for InstanceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceAddress::Ip(ip) => write!(f, "{ip}"),
            InstanceAddress::Socket(addr) => write!(f, "{addr}"),
            InstanceAddress::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for InstanceAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(InstanceAddress::Ip(ip));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(format!("{s:?}: port must be 1-65535"));
            }
            return Ok(InstanceAddress::Socket(addr));
        }
        if s.starts_with('[') {
            return Err(format!("{s:?} is not an IPv6 address and port (write e.g. [::1]:8000, or ::1 without a port)"));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            if is_host_name(s) {
                return Err(format!("host name {s:?} needs a port, e.g. \"{s}:8000\""));
            }
            return Err(format!("{s:?} is not an IP address, IP:port or host:port"));
        };
        if !is_host_name(host) {
            return Err(format!("{s:?} is not an IP address, IP:port or host:port"));
        }
        let port = parse_port(port).map_err(|why| format!("{s:?}: {why}"))?;
        Ok(InstanceAddress::Host {
            host: host.to_owned(),
            port,
        })
    }
}

/// Parses a duration with a unit: `250ms`, `30s`, `5m`, `1h`, `1.5s`. It must be greater than zero.
///
/// Bare numbers are rejected because a unit-less `30` is ambiguous (seconds in ELB's API, milliseconds in many
/// proxies); the error suggests the fix.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "ms, s, m or h";
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if text.is_empty() {
        return Err(format!(
            "empty duration (write e.g. \"30s\"; units: {UNITS})"
        ));
    }
    if text.starts_with('-') {
        return Err(format!("duration {s:?} must be positive"));
    }
    if unit.is_empty() {
        return Err(format!(
            "duration {s:?} has no unit: write \"{text}s\" or \"{text}ms\" (units: {UNITS})"
        ));
    }
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "duration {s:?} has an unknown unit {unit:?} (units: {UNITS}, e.g. \"1.5s\")"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!(
            "duration {s:?} is not a number followed by a unit (e.g. \"30s\", \"1.5s\")"
        ));
    }
    // Integer arithmetic, so "0.1s" is exactly 100ms; digits beyond nanoseconds are dropped.
    let too_long = || format!("duration {s:?} is too long");
    let mut nanos = whole
        .parse::<u128>()
        .map_err(|_| too_long())?
        .checked_mul(nanos_per_unit)
        .ok_or_else(too_long)?;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes().take(20) {
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    if nanos == 0 {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    // The remainder is below 10^9, so it fits in u32.
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Reads and validates the configuration file at `path`. Relative paths inside it resolve against its folder.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        reason: format!("cannot read the configuration file: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and validates configuration text. `path` names the file in errors, and relative paths inside the
/// text resolve against its folder.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: raw::Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| toml_error(text, path, e))?;
    let cx = Cx {
        file: path,
        base: path.parent().unwrap_or(Path::new("")),
    };
    cx.config(raw)
}

/// Turns a serde/TOML error into a [`ConfigError`] that names the key path and, when TOML knows it, the line.
fn toml_error(
    text: &str,
    path: &Path,
    err: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let key = err.path().to_string();
    let key = if key == "." { String::new() } else { key };
    let inner = err.inner();
    let message = inner.message().trim_end();
    let reason = match inner.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            if key.is_empty() {
                format!("TOML syntax error at line {line}, column {column}: {message}")
            } else {
                format!("{message} (line {line}, column {column})")
            }
        }
        None => message.to_owned(),
    };
    ConfigError {
        file: path.to_owned(),
        key,
        reason,
    }
}

/// The file's shape, exactly as written (DESIGN.md). No defaults and no meaning here; only [`Cx`] gives meaning.
mod raw {
    use super::{parse_duration, Duration};
    use serde::de::{self, Deserializer, Visitor};
    use serde::Deserialize;
    use std::fmt;
    use std::path::PathBuf;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        pub admin: Option<Admin>,
        pub dns: Option<Dns>,
        pub discovery: Option<Discovery>,
        pub limits: Option<Limits>,
        #[serde(default)]
        pub load_balancer: Vec<LoadBalancer>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Discovery {
        #[serde(default)]
        pub name_servers: Vec<String>,
        pub min_ttl: Option<DurationValue>,
        pub max_ttl: Option<DurationValue>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Admin {
        pub listen: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dns {
        pub listen: String,
        pub domain: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Limits {
        pub request_header_timeout: Option<DurationValue>,
        pub tls_handshake_timeout: Option<DurationValue>,
        pub max_request_header_bytes: Option<usize>,
        pub max_headers: Option<usize>,
        pub max_uri_bytes: Option<usize>,
        pub max_connections: Option<usize>,
        pub shutdown_grace: Option<DurationValue>,
        pub backend_connect_timeout: Option<DurationValue>,
        pub backend_idle_connections: Option<usize>,
        pub backend_max_requests: Option<usize>,
        pub surge_queue_size: Option<usize>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LoadBalancer {
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
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AccessLog {
        pub enabled: Option<bool>,
        pub path: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ConnectionDraining {
        pub enabled: Option<bool>,
        pub timeout: Option<DurationValue>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AvailabilityZone {
        pub name: String,
        pub node: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Listener {
        pub protocol: String,
        pub load_balancer_port: u16,
        pub instance_protocol: String,
        pub instance_port: u16,
        #[serde(default)]
        pub certificates: Vec<Certificate>,
        pub ssl_policy: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Certificate {
        pub cert: PathBuf,
        pub key: PathBuf,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HealthCheck {
        pub target: Option<String>,
        pub interval: Option<DurationValue>,
        pub timeout: Option<DurationValue>,
        pub healthy_threshold: Option<u32>,
        pub unhealthy_threshold: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Instance {
        pub id: String,
        pub zone: String,
        pub address: String,
    }

    /// A duration string, parsed while deserializing so that a bad value (or a bare number) is reported with
    /// its key path and line.
    #[derive(Debug, Clone, Copy)]
    pub struct DurationValue(pub Duration);

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
}

/// The validation context: which file (for errors) and which folder (for relative paths).
struct Cx<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Cx<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Parses `text` with `FromStr`, blaming `key` on failure.
    fn parse<T: FromStr>(
        &self,
        key: &str,
        text: &str,
        why: impl Fn(T::Err) -> String,
    ) -> Result<T, ConfigError> {
        text.parse().map_err(|e| self.err(key, why(e)))
    }

    /// Parses a value whose `FromStr` error already says why in plain words.
    fn value<T: FromStr<Err = String>>(&self, key: &str, text: &str) -> Result<T, ConfigError> {
        text.parse().map_err(|why| self.err(key, why))
    }

    fn socket_addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        self.parse(key, text, |_| {
            format!("{text:?} is not an IP address and port (e.g. \"127.0.0.1:9900\")")
        })
    }

    fn config(&self, raw: raw::Config) -> Result<Config, ConfigError> {
        let admin = Admin {
            listen: match raw.admin.and_then(|a| a.listen) {
                Some(text) => self.socket_addr("admin.listen", &text)?,
                None => defaults::ADMIN_LISTEN,
            },
        };
        let dns = match raw.dns {
            Some(dns) => Some(self.dns(dns)?),
            None => None,
        };
        let limits = self.limits(raw.limits.unwrap_or_default())?;
        let discovery = self.discovery(raw.discovery)?;
        let mut load_balancers: Vec<LoadBalancer> = Vec::with_capacity(raw.load_balancer.len());
        for (i, lb) in raw.load_balancer.into_iter().enumerate() {
            let key = format!("load_balancer[{i}]");
            let lb = self.load_balancer(&key, lb)?;
            // Case-insensitive, because names become DNS names.
            if let Some(j) = load_balancers
                .iter()
                .position(|other| other.name.eq_ignore_ascii_case(&lb.name))
            {
                return Err(self.err(
                    format!("{key}.name"),
                    format!(
                        "load balancer name {:?} is already used by load_balancer[{j}]",
                        lb.name
                    ),
                ));
            }
            load_balancers.push(lb);
        }
        let config = Config {
            admin,
            dns,
            discovery,
            limits,
            load_balancers,
        };
        self.check_binds(&config)?;
        Ok(config)
    }

    fn discovery(&self, raw: Option<raw::Discovery>) -> Result<Discovery, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Discovery::default());
        };
        let mut name_servers = Vec::new();
        for (i, server) in raw.name_servers.iter().enumerate() {
            let key = format!("discovery.name_servers[{i}]");
            let address = match server.parse::<SocketAddr>() {
                Ok(address) => address,
                Err(_) => SocketAddr::new(
                    server.parse::<IpAddr>().map_err(|_| {
                        self.err(key, format!("{server:?} is not an IP or IP:port"))
                    })?,
                    53,
                ),
            };
            name_servers.push(address);
        }
        let defaults = Discovery::default();
        let discovery = Discovery {
            name_servers,
            min_ttl: raw.min_ttl.map_or(defaults.min_ttl, |v| v.0),
            max_ttl: raw.max_ttl.map_or(defaults.max_ttl, |v| v.0),
        };
        if discovery.min_ttl > discovery.max_ttl {
            return Err(self.err("discovery.min_ttl", "must not be longer than max_ttl"));
        }
        Ok(discovery)
    }

    fn dns(&self, raw: raw::Dns) -> Result<Dns, ConfigError> {
        let listen = self.socket_addr("dns.listen", &raw.listen)?;
        let domain = raw
            .domain
            .unwrap_or_else(|| defaults::DNS_DOMAIN.to_owned());
        let domain = domain.strip_suffix('.').unwrap_or(&domain).to_owned();
        if domain.len() > 253 || !domain.split('.').all(is_dns_label) {
            return Err(self.err(
                "dns.domain",
                format!("{domain:?} is not a DNS name (dot-separated labels of letters, digits and '-')"),
            ));
        }
        Ok(Dns { listen, domain })
    }

    fn limits(&self, raw: raw::Limits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let time = |v: Option<raw::DurationValue>, default| v.map_or(default, |v| v.0);
        let limits = Limits {
            request_header_timeout: time(raw.request_header_timeout, d.request_header_timeout),
            tls_handshake_timeout: time(raw.tls_handshake_timeout, d.tls_handshake_timeout),
            max_request_header_bytes: raw
                .max_request_header_bytes
                .unwrap_or(d.max_request_header_bytes),
            max_headers: raw.max_headers.unwrap_or(d.max_headers),
            max_uri_bytes: raw.max_uri_bytes.unwrap_or(d.max_uri_bytes),
            max_connections: raw.max_connections.unwrap_or(d.max_connections),
            shutdown_grace: time(raw.shutdown_grace, d.shutdown_grace),
            backend_connect_timeout: time(raw.backend_connect_timeout, d.backend_connect_timeout),
            backend_idle_connections: raw
                .backend_idle_connections
                .unwrap_or(d.backend_idle_connections),
            backend_max_requests: raw.backend_max_requests.unwrap_or(d.backend_max_requests),
            surge_queue_size: raw.surge_queue_size.unwrap_or(d.surge_queue_size),
        };
        let counts = [
            ("max_headers", limits.max_headers),
            ("max_uri_bytes", limits.max_uri_bytes),
            ("max_connections", limits.max_connections),
            ("backend_idle_connections", limits.backend_idle_connections),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return Err(self.err(format!("limits.{name}"), "must be greater than 0"));
        }
        if limits.max_request_header_bytes < defaults::MIN_REQUEST_HEADER_BYTES {
            return Err(self.err(
                "limits.max_request_header_bytes",
                format!(
                    "must be at least {} (smaller refuses ordinary browsers' heads), got {}",
                    defaults::MIN_REQUEST_HEADER_BYTES,
                    limits.max_request_header_bytes
                ),
            ));
        }
        Ok(limits)
    }

    fn load_balancer(
        &self,
        key: &str,
        raw: raw::LoadBalancer,
    ) -> Result<LoadBalancer, ConfigError> {
        check_load_balancer_name(&raw.name).map_err(|why| self.err(format!("{key}.name"), why))?;
        let region = raw.region.unwrap_or_else(|| defaults::REGION.to_owned());
        if !is_dns_label(&region) {
            return Err(self.err(
                format!("{key}.region"),
                format!("region {region:?} must be one DNS label (letters, digits and '-', at most 63 characters)"),
            ));
        }
        let access_log = match raw.access_log {
            None
            | Some(raw::AccessLog {
                enabled: Some(false),
                ..
            }) => None,
            Some(raw::AccessLog { path: None, .. }) => {
                return Err(self.err(
                    format!("{key}.access_log.path"),
                    "an enabled access log needs a path: a file, or \"-\" for standard output",
                ))
            }
            Some(raw::AccessLog {
                path: Some(path), ..
            }) if path == "-" => Some(AccessLogDestination::Stdout),
            Some(raw::AccessLog {
                path: Some(path), ..
            }) if path.trim().is_empty() => {
                return Err(self.err(
                    format!("{key}.access_log.path"),
                    "the path must not be empty",
                ))
            }
            Some(raw::AccessLog {
                path: Some(path), ..
            }) => Some(AccessLogDestination::File(self.base.join(path))),
        };
        let draining = raw.connection_draining;
        let connection_draining = ConnectionDraining {
            enabled: draining
                .as_ref()
                .and_then(|d| d.enabled)
                .unwrap_or(defaults::CONNECTION_DRAINING_ENABLED),
            timeout: draining
                .and_then(|d| d.timeout)
                .map_or(defaults::CONNECTION_DRAINING_TIMEOUT, |v| v.0),
        };

        if raw.availability_zone.is_empty() {
            return Err(self.err(
                format!("{key}.availability_zone"),
                "at least one availability zone is required ([[load_balancer.availability_zone]] with name and node)",
            ));
        }
        let mut availability_zones: Vec<AvailabilityZone> = Vec::new();
        for (z, zone) in raw.availability_zone.into_iter().enumerate() {
            let zkey = format!("{key}.availability_zone[{z}]");
            check_label(&zone.name).map_err(|why| self.err(format!("{zkey}.name"), why))?;
            if let Some(j) = availability_zones
                .iter()
                .position(|other| other.name == zone.name)
            {
                return Err(self.err(
                    format!("{zkey}.name"),
                    format!(
                        "zone {:?} is already listed as availability_zone[{j}]",
                        zone.name
                    ),
                ));
            }
            let node = self.parse(&format!("{zkey}.node"), &zone.node, |_| {
                format!("{:?} is not an IP address (the node binds its listeners on it, e.g. \"127.0.0.11\")", zone.node)
            })?;
            availability_zones.push(AvailabilityZone {
                name: zone.name,
                node,
            });
        }

        if raw.listener.is_empty() {
            return Err(self.err(
                format!("{key}.listener"),
                "at least one listener is required ([[load_balancer.listener]])",
            ));
        }
        let mut listeners: Vec<Listener> = Vec::new();
        for (l, listener) in raw.listener.into_iter().enumerate() {
            let lkey = format!("{key}.listener[{l}]");
            let listener = self.listener(&lkey, listener)?;
            for (j, other) in listeners.iter().enumerate() {
                if listener.load_balancer_port != 0
                    && listener.load_balancer_port == other.load_balancer_port
                {
                    return Err(self.err(
                        format!("{lkey}.load_balancer_port"),
                        format!(
                            "port {} is already used by listener[{j}]",
                            listener.load_balancer_port
                        ),
                    ));
                }
                // ELB-SPEC §1: listeners sharing an instance port agree on whether it speaks TLS.
                if listener.instance_port == other.instance_port
                    && listener.instance_protocol.is_secure() != other.instance_protocol.is_secure()
                {
                    return Err(self.err(
                        format!("{lkey}.instance_protocol"),
                        format!(
                            "listener[{j}] sends {} to instance_port {}; listeners sharing an instance_port must all \
                             be secure (HTTPS/SSL) or all plain (HTTP/TCP)",
                            other.instance_protocol, other.instance_port
                        ),
                    ));
                }
            }
            listeners.push(listener);
        }

        // ELB's default health check probes the first listener's instance port over TCP (ELB-SPEC §2.1).
        let default_port = listeners.first().map_or(80, |l| l.instance_port);
        let health_check = self.health_check(
            &format!("{key}.health_check"),
            raw.health_check,
            default_port,
        )?;

        let mut instances: Vec<Instance> = Vec::new();
        for (n, instance) in raw.instance.into_iter().enumerate() {
            let ikey = format!("{key}.instance[{n}]");
            check_label(&instance.id).map_err(|why| self.err(format!("{ikey}.id"), why))?;
            if let Some(j) = instances.iter().position(|other| other.id == instance.id) {
                return Err(self.err(
                    format!("{ikey}.id"),
                    format!(
                        "instance id {:?} is already used by instance[{j}]",
                        instance.id
                    ),
                ));
            }
            // A zone that is not enabled is allowed: the instance is then reported OutOfService (ELB-SPEC §2.2).
            check_label(&instance.zone).map_err(|why| self.err(format!("{ikey}.zone"), why))?;
            let address = self.value(&format!("{ikey}.address"), &instance.address)?;
            instances.push(Instance {
                id: instance.id,
                zone: instance.zone,
                address,
            });
        }

        Ok(LoadBalancer {
            name: raw.name,
            region,
            cross_zone_load_balancing: raw
                .cross_zone_load_balancing
                .unwrap_or(defaults::CROSS_ZONE_LOAD_BALANCING),
            idle_timeout: raw.idle_timeout.map_or(defaults::IDLE_TIMEOUT, |v| v.0),
            connection_draining,
            access_log,
            passive_health_checks: raw
                .passive_health_checks
                .unwrap_or(defaults::PASSIVE_HEALTH_CHECKS),
            availability_zones,
            listeners,
            health_check,
            instances,
        })
    }

    fn listener(&self, key: &str, raw: raw::Listener) -> Result<Listener, ConfigError> {
        let protocol: Protocol = self.value(&format!("{key}.protocol"), &raw.protocol)?;
        let instance_protocol: Protocol =
            self.value(&format!("{key}.instance_protocol"), &raw.instance_protocol)?;
        // ELB-SPEC §1: Layer 7 in front needs Layer 7 behind, Layer 4 needs Layer 4.
        if protocol.is_http() != instance_protocol.is_http() {
            let expected = if protocol.is_http() {
                "HTTP or HTTPS"
            } else {
                "TCP or SSL"
            };
            return Err(self.err(
                format!("{key}.instance_protocol"),
                format!("a {protocol} listener needs an instance_protocol of {expected}, not {instance_protocol}"),
            ));
        }
        if raw.instance_port == 0 {
            return Err(self.err(
                format!("{key}.instance_port"),
                "must be 1-65535 (0, any free port, only makes sense for load_balancer_port)",
            ));
        }
        let mut certificates = Vec::with_capacity(raw.certificates.len());
        for (c, certificate) in raw.certificates.into_iter().enumerate() {
            let ckey = format!("{key}.certificates[{c}]");
            for (name, path) in [("cert", &certificate.cert), ("key", &certificate.key)] {
                if path.as_os_str().is_empty() {
                    return Err(
                        self.err(format!("{ckey}.{name}"), "must be a file path, not empty")
                    );
                }
            }
            certificates.push(CertificatePaths {
                cert: self.base.join(certificate.cert),
                key: self.base.join(certificate.key),
            });
        }
        if protocol.is_secure() && certificates.is_empty() {
            return Err(self.err(
                format!("{key}.certificates"),
                format!("an {protocol} listener needs at least one certificate: certificates = [{{ cert = \"...\", key = \"...\" }}]"),
            ));
        }
        if !protocol.is_secure() && !certificates.is_empty() {
            return Err(self.err(
                format!("{key}.certificates"),
                format!("only HTTPS and SSL listeners take certificates; this one is {protocol}"),
            ));
        }
        match &raw.ssl_policy {
            Some(_) if !protocol.is_secure() => {
                return Err(self.err(
                    format!("{key}.ssl_policy"),
                    format!(
                        "only HTTPS and SSL listeners take an ssl_policy; this one is {protocol}"
                    ),
                ))
            }
            Some(policy) if policy.trim().is_empty() => {
                return Err(self.err(
                    format!("{key}.ssl_policy"),
                    "must name a policy, not be empty",
                ))
            }
            _ => {}
        }
        Ok(Listener {
            protocol,
            load_balancer_port: raw.load_balancer_port,
            instance_protocol,
            instance_port: raw.instance_port,
            certificates,
            ssl_policy: raw.ssl_policy,
        })
    }

    fn health_check(
        &self,
        key: &str,
        raw: Option<raw::HealthCheck>,
        default_port: u16,
    ) -> Result<HealthCheck, ConfigError> {
        let raw = raw.unwrap_or_default();
        let target = match &raw.target {
            Some(text) => self.value(&format!("{key}.target"), text)?,
            None => HealthTarget::Tcp { port: default_port },
        };
        let check = HealthCheck {
            target,
            interval: raw
                .interval
                .map_or(defaults::HEALTH_CHECK_INTERVAL, |v| v.0),
            timeout: raw.timeout.map_or(defaults::HEALTH_CHECK_TIMEOUT, |v| v.0),
            healthy_threshold: raw.healthy_threshold.unwrap_or(defaults::HEALTHY_THRESHOLD),
            unhealthy_threshold: raw
                .unhealthy_threshold
                .unwrap_or(defaults::UNHEALTHY_THRESHOLD),
        };
        if check.timeout >= check.interval {
            let note = |given: bool| if given { "" } else { " (the default)" };
            return Err(self.err(
                format!("{key}.timeout"),
                format!(
                    "timeout {:?}{} must be shorter than interval {:?}{}",
                    check.timeout,
                    note(raw.timeout.is_some()),
                    check.interval,
                    note(raw.interval.is_some())
                ),
            ));
        }
        for (name, value) in [
            ("healthy_threshold", check.healthy_threshold),
            ("unhealthy_threshold", check.unhealthy_threshold),
        ] {
            if value == 0 {
                return Err(self.err(format!("{key}.{name}"), "must be at least 1"));
            }
        }
        Ok(check)
    }

    /// Two sockets on the same (address, port) cannot both bind, so refuse the file now rather than fail at
    /// start-up. Every zone's node binds every listener with a nonzero port; the admin listener and the DNS
    /// responder's TCP socket take part too. An unspecified address (`0.0.0.0`, `::`) overlaps every address
    /// of its family (`::` also covers IPv4, as Linux binds it dual-stack by default).
    fn check_binds(&self, config: &Config) -> Result<(), ConfigError> {
        struct Bind {
            addr: SocketAddr,
            key: String,
            what: String,
        }
        let mut binds = vec![Bind {
            addr: config.admin.listen,
            key: "admin.listen".into(),
            what: "the admin listener".into(),
        }];
        if let Some(dns) = &config.dns {
            binds.push(Bind {
                addr: dns.listen,
                key: "dns.listen".into(),
                what: "the DNS responder".into(),
            });
        }
        for (i, lb) in config.load_balancers.iter().enumerate() {
            for (z, zone) in lb.availability_zones.iter().enumerate() {
                for (l, listener) in lb.listeners.iter().enumerate() {
                    binds.push(Bind {
                        addr: SocketAddr::new(zone.node, listener.load_balancer_port),
                        key: format!("load_balancer[{i}].availability_zone[{z}].node"),
                        what: format!(
                            "load_balancer[{i}] {:?} zone {:?} listener[{l}]",
                            lb.name, zone.name
                        ),
                    });
                }
            }
        }
        let overlaps = |a: IpAddr, b: IpAddr| {
            a == b
                || (a.is_unspecified() && (a.is_ipv6() || b.is_ipv4()))
                || (b.is_unspecified() && (b.is_ipv6() || a.is_ipv4()))
        };
        for (n, bind) in binds.iter().enumerate().filter(|(_, b)| b.addr.port() != 0) {
            let earlier = binds[..n].iter().find(|other| {
                other.addr.port() == bind.addr.port() && overlaps(other.addr.ip(), bind.addr.ip())
            });
            if let Some(other) = earlier {
                return Err(self.err(
                    bind.key.clone(),
                    format!(
                        "{} would bind {}, which {} already binds at {}; give each node its own address or port",
                        bind.what, bind.addr, other.what, other.addr
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// ELB-SPEC §4: 1–32 characters of `[A-Za-z0-9-]`, no leading or trailing `-`.
fn check_load_balancer_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > defaults::MAX_LOAD_BALANCER_NAME_LEN {
        return Err(format!(
            "load balancer name {name:?} must have 1 to {} characters",
            defaults::MAX_LOAD_BALANCER_NAME_LEN
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "load balancer name {name:?} may only contain letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "load balancer name {name:?} must not begin or end with '-'"
        ));
    }
    Ok(())
}

/// Zone names and instance ids appear in logs, metric labels and the API: non-empty, no spaces or control bytes.
/// A zone name or instance id: not empty, no spaces or control characters (also used by the admin API).
pub fn check_label(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{text:?} must not contain spaces or control characters"
        ));
    }
    Ok(())
}

/// One DNS label: 1–63 letters, digits or `-`, not at either end.
fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A host name an instance may be given by. `_` is allowed (common in service discovery names); an all-digit
/// last label is not, so that a mistyped IP such as `127.0.0.256` is not taken for a name.
fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    host.len() <= 253
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// A port given as text: decimal digits only (no sign, no spaces), 1–65535.
fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 && !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(port)
        }
        _ => Err(format!(
            "port must be a number from 1 to 65535, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

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

    const MINIMAL: &str = r#"
[[load_balancer]]
name = "web"
[[load_balancer.availability_zone]]
name = "zone-a"
node = "127.0.0.11"
[[load_balancer.listener]]
protocol = "HTTP"
load_balancer_port = 8080
instance_protocol = "HTTP"
instance_port = 8000
"#;

    fn file() -> &'static Path {
        Path::new("examples/web.toml")
    }

    fn ok(text: &str) -> Config {
        match parse(text, file()) {
            Ok(config) => config,
            Err(e) => panic!("expected a valid config, got: {e}"),
        }
    }

    /// Asserts that `text` is refused at `key` with a reason containing `needle`.
    fn fails(text: &str, key: &str, needle: &str) {
        match parse(text, file()) {
            Ok(_) => panic!("expected an error at {key}"),
            Err(e) => {
                assert_eq!(e.file, file());
                assert_eq!(e.key, key, "wrong key in: {e}");
                assert!(
                    e.reason.contains(needle),
                    "reason {:?} lacks {needle:?}",
                    e.reason
                );
            }
        }
    }

    /// MINIMAL with `extra` appended to the load balancer's top-level table (before its sub-tables).
    fn with_lb(extra: &str) -> String {
        MINIMAL.replacen("name = \"web\"\n", &format!("name = \"web\"\n{extra}\n"), 1)
    }

    fn listener(
        protocol: &str,
        port: u16,
        instance_protocol: &str,
        instance_port: u16,
        extra: &str,
    ) -> String {
        format!(
            "[[load_balancer.listener]]\nprotocol = \"{protocol}\"\nload_balancer_port = {port}\n\
             instance_protocol = \"{instance_protocol}\"\ninstance_port = {instance_port}\n{extra}\n"
        )
    }

    const CERTS: &str = r#"certificates = [{ cert = "a.crt", key = "a.key" }]"#;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn design_example_parses_to_the_expected_values() {
        let config = ok(DESIGN_EXAMPLE);
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
                },
                Listener {
                    protocol: Protocol::Https,
                    load_balancer_port: 8443,
                    instance_protocol: Protocol::Http,
                    instance_port: 8000,
                    certificates: vec![CertificatePaths {
                        cert: PathBuf::from("examples/certs/localhost.crt"),
                        key: PathBuf::from("examples/certs/localhost.key"),
                    }],
                    ssl_policy: Some("ELBSecurityPolicy-TLS-1-2-2017-01".into()),
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

    #[test]
    fn unknown_keys_name_their_path() {
        fails(
            &format!("colour = \"red\"\n{MINIMAL}"),
            "colour",
            "unknown field `colour`",
        );
        fails(
            &format!("[admin]\nport = 1\n{MINIMAL}"),
            "admin.port",
            "unknown field `port`",
        );
        fails(
            &format!("{MINIMAL}colour = \"red\"\n"),
            "load_balancer[0].listener[0].colour",
            "unknown field",
        );
        fails(
            &with_lb("connection_draining = { enable = true }"),
            "load_balancer[0].connection_draining.enable",
            "unknown field",
        );
        fails(
            &MINIMAL.replace("[[load_balancer.listener]]", "[[load_balancer.listeners]]"),
            "load_balancer[0].listeners",
            "unknown field",
        );
    }

    #[test]
    fn type_errors_name_their_path_and_line() {
        fails(
            &MINIMAL.replace("instance_port = 8000", "instance_port = \"8000\""),
            "load_balancer[0].listener[0].instance_port",
            "line 11, column 17",
        );
        fails(
            &MINIMAL.replace("instance_port = 8000", "instance_port = 70000"),
            "load_balancer[0].listener[0].instance_port",
            "u16",
        );
        fails(
            &with_lb("cross_zone_load_balancing = \"yes\""),
            "load_balancer[0].cross_zone_load_balancing",
            "invalid type",
        );
        fails(
            &with_lb("idle_timeout = 60"),
            "load_balancer[0].idle_timeout",
            "write \"60s\"",
        );
        fails(
            &with_lb("idle_timeout = \"60\""),
            "load_balancer[0].idle_timeout",
            "has no unit",
        );
        fails(
            &format!("[limits]\nmax_headers = -1\n{MINIMAL}"),
            "limits.max_headers",
            "invalid value",
        );
        fails(
            &MINIMAL.replace("name = \"web\"\n", ""),
            "load_balancer[0]",
            "missing field `name`",
        );
    }

    #[test]
    fn syntax_and_io_errors_say_where() {
        let e = parse("[[load_balancer]\nname = 1", file()).unwrap_err();
        assert_eq!(e.key, "");
        assert!(e.reason.contains("line 1, column"), "{}", e.reason);
        let e = load(Path::new("/nonexistent/elbe.toml")).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.file.as_path()),
            ("", Path::new("/nonexistent/elbe.toml"))
        );
        assert!(e.reason.contains("cannot read"), "{}", e.reason);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/elbe.toml: : cannot read"),
            "{e}"
        );
    }

    #[test]
    fn error_display_is_file_key_reason() {
        let e = parse(
            &MINIMAL.replace("protocol = \"HTTP\"", "protocol = \"HTTQ\""),
            file(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "examples/web.toml: load_balancer[0].listener[0].protocol: unknown protocol \"HTTQ\" (expected HTTP, HTTPS, TCP or SSL)"
        );
    }

    #[test]
    fn load_reads_a_file_and_resolves_paths_against_its_folder() {
        let dir = std::env::temp_dir().join(format!("elbe-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.toml");
        let text = format!(
            "{MINIMAL}{}",
            listener(
                "SSL",
                8443,
                "TCP",
                9000,
                r#"certificates = [{ cert = "certs/a.crt", key = "/abs/a.key" }, { cert = "b.crt", key = "b.key" }]"#
            )
        );
        std::fs::write(&path, text).unwrap();
        let config = load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        let certificates = &config.unwrap().load_balancers[0].listeners[1].certificates;
        assert_eq!(
            certificates[0],
            CertificatePaths {
                cert: dir.join("certs/a.crt"),
                key: PathBuf::from("/abs/a.key")
            }
        );
        assert_eq!(
            certificates[1],
            CertificatePaths {
                cert: dir.join("b.crt"),
                key: dir.join("b.key")
            }
        );
        // A file name without a folder leaves relative paths relative to the current folder.
        let text = format!("{MINIMAL}{}", listener("HTTPS", 443, "HTTP", 8000, CERTS));
        let bare = parse(&text, Path::new("web.toml")).unwrap();
        assert_eq!(
            bare.load_balancers[0].listeners[1].certificates[0].cert,
            PathBuf::from("a.crt")
        );
    }

    #[test]
    fn listener_rules() {
        let l0 = "load_balancer[0].listener[1]";
        fails(
            &format!("{MINIMAL}{}", listener("HTTP", 81, "TCP", 8000, "")),
            &format!("{l0}.instance_protocol"),
            "HTTP or HTTPS",
        );
        fails(
            &format!("{MINIMAL}{}", listener("SSL", 81, "HTTPS", 9000, CERTS)),
            &format!("{l0}.instance_protocol"),
            "TCP or SSL",
        );
        fails(
            &format!("{MINIMAL}{}", listener("HTTP", 8080, "HTTP", 8001, "")),
            &format!("{l0}.load_balancer_port"),
            "already used by listener[0]",
        );
        fails(
            &format!("{MINIMAL}{}", listener("HTTP", 81, "HTTPS", 8000, "")),
            &format!("{l0}.instance_protocol"),
            "secure",
        );
        fails(
            &format!("{MINIMAL}{}", listener("HTTP", 81, "HTTP", 0, "")),
            &format!("{l0}.instance_port"),
            "1-65535",
        );
        fails(
            &format!("{MINIMAL}{}", listener("HTTPS", 443, "HTTP", 8000, "")),
            &format!("{l0}.certificates"),
            "at least one certificate",
        );
        fails(
            &format!("{MINIMAL}{}", listener("TCP", 81, "TCP", 9000, CERTS)),
            &format!("{l0}.certificates"),
            "only HTTPS and SSL",
        );
        fails(
            &format!(
                "{MINIMAL}{}",
                listener("TCP", 81, "TCP", 9000, "ssl_policy = \"p\"")
            ),
            &format!("{l0}.ssl_policy"),
            "only HTTPS and SSL",
        );
        fails(
            &format!(
                "{MINIMAL}{}",
                listener(
                    "HTTPS",
                    443,
                    "HTTP",
                    8000,
                    r#"certificates = [{ cert = "", key = "k" }]"#
                )
            ),
            &format!("{l0}.certificates[0].cert"),
            "empty",
        );
        fails(
            &format!("{MINIMAL}{}", listener("http2", 81, "HTTP", 8000, "")),
            &format!("{l0}.protocol"),
            "unknown protocol",
        );
        fails(
            &MINIMAL
                .replace("[[load_balancer.listener]]", "[load_balancer.x]")
                .replace("protocol", "x"),
            "load_balancer[0].x",
            "unknown field",
        );
        // Allowed: port 0 repeats, lower-case protocols, the same instance port with the same security, SSL -> SSL.
        let config = ok(&format!(
            "{}{}{}{}",
            MINIMAL.replace("load_balancer_port = 8080", "load_balancer_port = 0"),
            listener("tcp", 0, "tcp", 8000, ""),
            listener("SSL", 8443, "SSL", 9443, CERTS),
            listener("HTTPS", 443, "HTTPS", 9443, CERTS),
        ));
        let listeners = &config.load_balancers[0].listeners;
        assert_eq!(
            (listeners[1].protocol, listeners[2].instance_protocol),
            (Protocol::Tcp, Protocol::Ssl)
        );
    }

    #[test]
    fn load_balancer_rules() {
        fails(
            &MINIMAL.replace("\"web\"", "\"-web\""),
            "load_balancer[0].name",
            "begin or end",
        );
        fails(
            &MINIMAL.replace("\"web\"", "\"web_1\""),
            "load_balancer[0].name",
            "letters, digits",
        );
        fails(
            &MINIMAL.replace("\"web\"", &format!("\"{}\"", "a".repeat(33))),
            "load_balancer[0].name",
            "1 to 32",
        );
        fails(
            &MINIMAL.replace("\"web\"", "\"\""),
            "load_balancer[0].name",
            "1 to 32",
        );
        ok(&MINIMAL.replace("\"web\"", &format!("\"{}\"", "a".repeat(32))));
        let second = MINIMAL
            .replace("127.0.0.11", "127.0.0.12")
            .replace("\"web\"", "\"WEB\"");
        fails(
            &format!("{MINIMAL}{second}"),
            "load_balancer[1].name",
            "already used by load_balancer[0]",
        );
        fails(
            &with_lb("region = \"us east\""),
            "load_balancer[0].region",
            "DNS label",
        );
        fails(
            &MINIMAL.replace(
                "[[load_balancer.availability_zone]]\nname = \"zone-a\"\nnode = \"127.0.0.11\"\n",
                "",
            ),
            "load_balancer[0].availability_zone",
            "at least one",
        );
        fails(
            MINIMAL
                .split("[[load_balancer.listener]]")
                .next()
                .unwrap_or_default(),
            "load_balancer[0].listener",
            "at least one",
        );
        fails(
            &format!("[dns]\nlisten = \"127.0.0.1:5353\"\ndomain = \"elb..local\"\n{MINIMAL}"),
            "dns.domain",
            "not a DNS name",
        );
        fails(
            &format!("[dns]\nlisten = \"localhost:53\"\n{MINIMAL}"),
            "dns.listen",
            "IP address and port",
        );
        fails(
            &format!("[admin]\nlisten = \"9900\"\n{MINIMAL}"),
            "admin.listen",
            "IP address and port",
        );
    }

    #[test]
    fn zone_rules() {
        let zone = |name: &str, node: &str| {
            format!("[[load_balancer.availability_zone]]\nname = \"{name}\"\nnode = \"{node}\"\n")
        };
        let z1 = "load_balancer[0].availability_zone[1]";
        fails(
            &format!("{MINIMAL}{}", zone("zone-a", "127.0.0.12")),
            &format!("{z1}.name"),
            "already listed",
        );
        fails(
            &format!("{MINIMAL}{}", zone("", "127.0.0.12")),
            &format!("{z1}.name"),
            "empty",
        );
        fails(
            &format!("{MINIMAL}{}", zone("zone-b", "localhost")),
            &format!("{z1}.node"),
            "not an IP address",
        );
        fails(
            &format!("{MINIMAL}{}", zone("zone-b", "127.0.0.11")),
            &format!("{z1}.node"),
            "127.0.0.11:8080",
        );
        let config = ok(&format!("{MINIMAL}{}", zone("zone-b", "::1")));
        assert_eq!(
            config.load_balancers[0].availability_zones[1].node,
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn binds_must_not_collide() {
        let other = MINIMAL.replace("\"web\"", "\"api\"");
        fails(
            &format!("{MINIMAL}{other}"),
            "load_balancer[1].availability_zone[0].node",
            "already binds at 127.0.0.11:8080",
        );
        // Different ports, or port 0, are fine.
        ok(&format!("{MINIMAL}{}", other.replace("8080", "8081")));
        ok(&format!(
            "{}{}",
            MINIMAL.replace("8080", "0"),
            other.replace("8080", "0")
        ));
        // A wildcard node overlaps every address of its family; `::` overlaps IPv4 too.
        fails(
            &format!("{MINIMAL}{}", other.replace("127.0.0.11", "0.0.0.0")),
            "load_balancer[1].availability_zone[0].node",
            "0.0.0.0:8080",
        );
        fails(
            &format!("{MINIMAL}{}", other.replace("127.0.0.11", "::")),
            "load_balancer[1].availability_zone[0].node",
            "already binds",
        );
        ok(&format!("{MINIMAL}{}", other.replace("127.0.0.11", "::1")));
        // The admin and DNS listeners take part.
        fails(
            &format!("[admin]\nlisten = \"127.0.0.11:8080\"\n{MINIMAL}"),
            "load_balancer[0].availability_zone[0].node",
            "the admin listener",
        );
        fails(
            &format!("[dns]\nlisten = \"127.0.0.1:9900\"\n{MINIMAL}"),
            "dns.listen",
            "the admin listener",
        );
    }

    #[test]
    fn health_check_rules() {
        let hc = |body: &str| format!("{MINIMAL}[load_balancer.health_check]\n{body}\n");
        let key = "load_balancer[0].health_check";
        fails(
            &hc("interval = \"5s\"\ntimeout = \"5s\""),
            &format!("{key}.timeout"),
            "must be shorter than interval 5s",
        );
        fails(
            &hc("interval = \"3s\""),
            &format!("{key}.timeout"),
            "timeout 5s (the default) must be shorter than interval 3s",
        );
        fails(
            &hc("healthy_threshold = 0"),
            &format!("{key}.healthy_threshold"),
            "at least 1",
        );
        fails(
            &hc("unhealthy_threshold = 0"),
            &format!("{key}.unhealthy_threshold"),
            "at least 1",
        );
        fails(
            &hc("interval = \"0s\""),
            &format!("{key}.interval"),
            "greater than zero",
        );
        fails(
            &hc("target = \"HTTP:80\""),
            &format!("{key}.target"),
            "needs a path",
        );
        fails(
            &hc("target = \"TCP:80\"\ncolour = 1"),
            &format!("{key}.colour"),
            "unknown field",
        );
        let config = ok(&hc("target = \"HTTPS:8443/ping\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1"));
        let check = &config.load_balancers[0].health_check;
        assert_eq!(
            check.target,
            HealthTarget::Https {
                port: 8443,
                path: "/ping".into()
            }
        );
        assert_eq!(
            (
                check.interval,
                check.timeout,
                check.healthy_threshold,
                check.unhealthy_threshold
            ),
            (ms(100), ms(50), 1, 1)
        );
    }

    #[test]
    fn instance_rules() {
        let inst = |id: &str, zone: &str, address: &str| {
            format!("[[load_balancer.instance]]\nid = \"{id}\"\nzone = \"{zone}\"\naddress = \"{address}\"\n")
        };
        let i1 = "load_balancer[0].instance[1]";
        let first = inst("i-1", "zone-a", "127.0.0.21");
        fails(
            &format!("{MINIMAL}{first}{}", inst("i-1", "zone-a", "127.0.0.22")),
            &format!("{i1}.id"),
            "already used by instance[0]",
        );
        fails(
            &format!("{MINIMAL}{first}{}", inst("", "zone-a", "127.0.0.22")),
            &format!("{i1}.id"),
            "empty",
        );
        fails(
            &format!("{MINIMAL}{first}{}", inst("i-2", "", "127.0.0.22")),
            &format!("{i1}.zone"),
            "empty",
        );
        fails(
            &format!("{MINIMAL}{first}{}", inst("i-2", "zone-a", "backend")),
            &format!("{i1}.address"),
            "needs a port",
        );
        // A zone that is not enabled is accepted (reported OutOfService at run time).
        let config = ok(&format!(
            "{MINIMAL}{first}{}",
            inst("i-2", "zone-z", "backend.local:8000")
        ));
        assert_eq!(
            config.load_balancers[0].instances[1],
            Instance {
                id: "i-2".into(),
                zone: "zone-z".into(),
                address: InstanceAddress::Host {
                    host: "backend.local".into(),
                    port: 8000
                }
            }
        );
    }

    #[test]
    fn limits_rules() {
        let lim = |body: &str| format!("[limits]\n{body}\n{MINIMAL}");
        fails(
            &lim("max_request_header_bytes = 8191"),
            "limits.max_request_header_bytes",
            "at least 8192",
        );
        ok(&lim("max_request_header_bytes = 8192"));
        for name in [
            "max_headers",
            "max_uri_bytes",
            "max_connections",
            "backend_idle_connections",
        ] {
            fails(
                &lim(&format!("{name} = 0")),
                &format!("limits.{name}"),
                "greater than 0",
            );
        }
        for name in [
            "request_header_timeout",
            "tls_handshake_timeout",
            "shutdown_grace",
            "backend_connect_timeout",
        ] {
            fails(
                &lim(&format!("{name} = \"0ms\"")),
                &format!("limits.{name}"),
                "greater than zero",
            );
            fails(
                &lim(&format!("{name} = 5")),
                &format!("limits.{name}"),
                "needs a unit",
            );
        }
        let config = ok(&lim(
            "backend_connect_timeout = \"1.5s\"\nbackend_idle_connections = 4",
        ));
        assert_eq!(
            (
                config.limits.backend_connect_timeout,
                config.limits.backend_idle_connections
            ),
            (ms(1500), 4)
        );
    }

    #[test]
    fn durations() {
        let good = [
            ("250ms", ms(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", ms(1500)),
            ("0.1s", ms(100)),
            ("0.5ms", Duration::from_micros(500)),
            ("1.25m", Duration::from_secs(75)),
            (" 10s ", Duration::from_secs(10)),
            ("0.0000000019s", Duration::from_nanos(1)),
        ];
        for (text, expected) in good {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
        let bad = [
            ("30", "no unit"),
            ("1.5", "no unit"),
            ("", "empty"),
            ("0s", "greater than zero"),
            ("0.0000000001s", "greater than zero"),
            ("-5s", "positive"),
            ("5sec", "unknown unit"),
            ("5 s", "unknown unit"),
            ("1m30s", "unknown unit"),
            ("s", "not a number"),
            (".5s", "not a number"),
            ("5.s", "not a number"),
            ("1.2.3s", "not a number"),
            ("99999999999999999999999999999999999999999h", "too long"),
            ("99999999999999999999h", "too long"),
        ];
        for (text, needle) in bad {
            match parse_duration(text) {
                Ok(d) => panic!("{text:?} parsed as {d:?}"),
                Err(why) => assert!(why.contains(needle), "{text:?}: {why:?} lacks {needle:?}"),
            }
        }
    }

    #[test]
    fn health_targets() {
        for text in [
            "TCP:5000",
            "SSL:443",
            "HTTP:80/index.html",
            "HTTPS:443/health?full=1",
            "HTTP:1/",
            "TCP:65535",
        ] {
            let target: HealthTarget = text.parse().unwrap();
            assert_eq!(target.to_string(), text);
        }
        assert_eq!(
            "http:80/x".parse(),
            Ok(HealthTarget::Http {
                port: 80,
                path: "/x".into()
            })
        );
        let target: HealthTarget = "HTTPS:8443/a".parse().unwrap();
        assert_eq!((target.port(), target.path()), (8443, Some("/a")));
        let long = format!("HTTP:80/{}", "a".repeat(1017));
        assert_eq!(long.len(), 1025);
        let bad = [
            ("TCP", "PROTOCOL:port"),
            ("UDP:53", "must begin with one of"),
            ("TCP:0", "1 to 65535"),
            ("TCP:65536", "1 to 65535"),
            ("TCP:+80", "1 to 65535"),
            ("TCP:", "1 to 65535"),
            ("HTTP:/x", "1 to 65535"),
            ("TCP:80/x", "takes no path"),
            ("SSL:443/", "takes no path"),
            ("HTTP:80", "needs a path"),
            ("HTTPS:443", "needs a path"),
            ("HTTP:80/a b", "spaces"),
            (long.as_str(), "at most 1024"),
        ];
        for (text, needle) in bad {
            match text.parse::<HealthTarget>() {
                Ok(t) => panic!("{text:?} parsed as {t:?}"),
                Err(why) => assert!(why.contains(needle), "{text:?}: {why:?} lacks {needle:?}"),
            }
        }
        assert!(long[..1024].parse::<HealthTarget>().is_ok());
    }

    #[test]
    fn instance_addresses() {
        for text in [
            "127.0.0.21",
            "127.0.0.21:8000",
            "[::1]:8000",
            "::1",
            "backend.local:8000",
            "web_1.svc:80",
            "localhost:1",
        ] {
            let address: InstanceAddress = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
        assert_eq!(
            "::1".parse(),
            Ok(InstanceAddress::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
        );
        assert_eq!(
            "[::1]:8000".parse(),
            Ok(InstanceAddress::Socket(SocketAddr::from((
                Ipv6Addr::LOCALHOST,
                8000
            ))))
        );
        assert_eq!(
            "127.0.0.21:8000"
                .parse::<InstanceAddress>()
                .map(|a| a.port()),
            Ok(Some(8000))
        );
        assert_eq!(
            "127.0.0.21".parse::<InstanceAddress>().map(|a| a.port()),
            Ok(None)
        );
        let bad = [
            ("backend.local", "needs a port"),
            ("localhost", "needs a port"),
            ("127.0.0.1:0", "1-65535"),
            ("backend:0", "1 to 65535"),
            ("backend:http", "1 to 65535"),
            ("[::1]", "IPv6"),
            ("127.0.0.256", "not an IP address"),
            ("127.0.0.256:80", "not an IP address"),
            ("", "not an IP address"),
            ("-bad.host:80", "not an IP address"),
            ("a b:80", "not an IP address"),
            ("::zz", "not an IP address"),
        ];
        for (text, needle) in bad {
            match text.parse::<InstanceAddress>() {
                Ok(a) => panic!("{text:?} parsed as {a:?}"),
                Err(why) => assert!(why.contains(needle), "{text:?}: {why:?} lacks {needle:?}"),
            }
        }
    }

    #[test]
    fn protocols() {
        for (text, protocol, secure, http) in [
            ("HTTP", Protocol::Http, false, true),
            ("https", Protocol::Https, true, true),
            ("Tcp", Protocol::Tcp, false, false),
            ("SSL", Protocol::Ssl, true, false),
        ] {
            assert_eq!(text.parse(), Ok(protocol));
            assert_eq!(protocol.to_string(), text.to_ascii_uppercase());
            assert_eq!((protocol.is_secure(), protocol.is_http()), (secure, http));
        }
        assert!("TLS".parse::<Protocol>().is_err());
    }
}
