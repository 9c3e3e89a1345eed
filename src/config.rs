//! TEMPORARY stub with the agreed public types; replaced by the real module.
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError { pub file: PathBuf, pub key: String, pub reason: String }
#[derive(Debug, Clone, PartialEq)]
pub struct Config { pub admin: Admin, pub dns: Option<Dns>, pub limits: Limits, pub load_balancers: Vec<LoadBalancer> }
#[derive(Debug, Clone, PartialEq)]
pub struct Admin { pub listen: SocketAddr }
#[derive(Debug, Clone, PartialEq)]
pub struct Dns { pub listen: SocketAddr, pub domain: String }
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub request_header_timeout: Duration, pub tls_handshake_timeout: Duration, pub max_request_header_bytes: usize,
    pub max_headers: usize, pub max_uri_bytes: usize, pub max_connections: usize, pub shutdown_grace: Duration,
    pub backend_connect_timeout: Duration, pub backend_idle_connections: usize,
}
impl Default for Limits { fn default() -> Self { Limits { request_header_timeout: Duration::from_secs(10), tls_handshake_timeout: Duration::from_secs(10), max_request_header_bytes: 65536, max_headers: 100, max_uri_bytes: 16384, max_connections: 10000, shutdown_grace: Duration::from_secs(30), backend_connect_timeout: Duration::from_secs(5), backend_idle_connections: 128 } } }
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub name: String, pub region: String, pub cross_zone_load_balancing: bool, pub idle_timeout: Duration,
    pub connection_draining: ConnectionDraining, pub passive_health_checks: bool,
    pub availability_zones: Vec<AvailabilityZone>, pub listeners: Vec<Listener>, pub health_check: HealthCheck,
    pub instances: Vec<Instance>,
}
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionDraining { pub enabled: bool, pub timeout: Duration }
#[derive(Debug, Clone, PartialEq)]
pub struct AvailabilityZone { pub name: String, pub node: IpAddr }
#[derive(Debug, Clone, PartialEq)]
pub struct Listener { pub protocol: Protocol, pub load_balancer_port: u16, pub instance_protocol: Protocol, pub instance_port: u16, pub certificates: Vec<CertificatePaths>, pub ssl_policy: Option<String> }
#[derive(Debug, Clone, PartialEq)]
pub struct CertificatePaths { pub cert: PathBuf, pub key: PathBuf }
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol { Http, Https, Tcp, Ssl }
impl Protocol { pub fn is_secure(self) -> bool { matches!(self, Protocol::Https | Protocol::Ssl) } pub fn is_http(self) -> bool { matches!(self, Protocol::Http | Protocol::Https) } }
impl std::fmt::Display for Protocol { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(match self { Protocol::Http => "HTTP", Protocol::Https => "HTTPS", Protocol::Tcp => "TCP", Protocol::Ssl => "SSL" }) } }
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck { pub target: HealthTarget, pub interval: Duration, pub timeout: Duration, pub healthy_threshold: u32, pub unhealthy_threshold: u32 }
#[derive(Debug, Clone, PartialEq)]
pub enum HealthTarget { Tcp { port: u16 }, Ssl { port: u16 }, Http { port: u16, path: String }, Https { port: u16, path: String } }
#[derive(Debug, Clone, PartialEq)]
pub struct Instance { pub id: String, pub zone: String, pub address: InstanceAddress }
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceAddress { Ip(IpAddr), Socket(SocketAddr), Host { host: String, port: u16 } }
pub fn load(path: &Path) -> Result<Config, ConfigError> { let _ = path; unimplemented!() }
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> { let _ = (text, path); unimplemented!() }
impl std::str::FromStr for InstanceAddress { type Err = String; fn from_str(s: &str) -> Result<Self, String> { if let Ok(ip) = s.parse() { return Ok(InstanceAddress::Ip(ip)); } if let Ok(sa) = s.parse() { return Ok(InstanceAddress::Socket(sa)); } let (h, p) = s.rsplit_once(':').ok_or("need host:port")?; Ok(InstanceAddress::Host { host: h.to_string(), port: p.parse().map_err(|_| "bad port")? }) } }
