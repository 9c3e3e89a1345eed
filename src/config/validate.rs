//! From the raw model to the validated configuration: every default applied, every rule checked.
//!
//! Rule: the checks are the ones ELB's API made (listener pairing, ELB-SPEC §1; health-check target and timeout
//! shorter than interval, §2.1; load balancer names, §4) plus the ones that would otherwise fail at start-up (two
//! sockets on one address). Every refusal blames one key path, built as the walk goes down the file
//! (`load_balancer[0].listener[1].protocol`), and the first refusal ends the walk.
//!
//! Trade-off: one error, not a list. A second error is often a consequence of the first, and the file is fixed
//! and re-checked in seconds; collecting them all would mean validating around missing values.
//!
//! Layout: this module checks the file and its top-level tables (`[admin]`, `[dns]`, `[discovery]`, `[limits]`);
//! a load balancer, its listeners, its health check and the socket collision check each have a child module.
//! All are methods of the same context, `Cx` (`context`).

mod api;
mod backend_ca;
mod binds;
mod cluster;
mod context;
mod health_check;
mod listener;
mod load_balancer;
mod policy;
mod rule;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::config::defaults;
use crate::config::error::ConfigError;
use crate::config::model::{Admin, Config, Discovery, Dns, Limits, LoadBalancer};
use crate::config::names::is_dns_name;
use crate::config::raw;
use crate::config::validate::context::Cx;

/// Validates the file `file` read as `raw`. Relative paths inside it resolve against `file`'s folder.
pub(super) fn config(raw: raw::Config, file: &Path) -> Result<Config, ConfigError> {
    let cx = Cx {
        file,
        base: file.parent().unwrap_or(Path::new("")),
    };
    cx.config(raw)
}

impl Cx<'_> {
    /// The whole file, table by table; the socket collision check needs all of them and comes last.
    fn config(&self, raw: raw::Config) -> Result<Config, ConfigError> {
        let admin = self.admin(raw.admin)?;
        let dns = match raw.dns {
            Some(dns) => Some(self.dns(dns)?),
            None => None,
        };
        let limits = self.limits(raw.limits.unwrap_or_default())?;
        let discovery = self.discovery(raw.discovery)?;
        let state_dir = self.state_dir(raw.state_dir)?;
        let load_balancers = self.load_balancers(raw.load_balancer)?;
        let api = self.api(raw.api)?;
        let instances = self.catalogue(raw.instance)?;
        let cluster = raw.cluster.map(|raw| self.cluster(raw)).transpose()?;
        let config = Config {
            admin,
            dns,
            discovery,
            limits,
            state_dir,
            load_balancers,
            api,
            instances,
            cluster,
        };
        self.check_binds(&config)?;
        Ok(config)
    }

    fn admin(&self, raw: Option<raw::Admin>) -> Result<Admin, ConfigError> {
        Ok(Admin {
            listen: match raw.and_then(|a| a.listen) {
                Some(text) => self.socket_addr("admin.listen", &text)?,
                None => defaults::ADMIN_LISTEN,
            },
        })
    }

    /// Every `[[load_balancer]]`, with names unique regardless of case, because names become DNS names.
    fn load_balancers(
        &self,
        raw: Vec<raw::LoadBalancer>,
    ) -> Result<Vec<LoadBalancer>, ConfigError> {
        let mut load_balancers: Vec<LoadBalancer> = Vec::with_capacity(raw.len());
        for (i, lb) in raw.into_iter().enumerate() {
            let key = format!("load_balancer[{i}]");
            let lb = self.load_balancer(&key, lb)?;
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
        Ok(load_balancers)
    }

    /// Name servers may omit the port (53); the TTL bounds must not cross.
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
            return Err(self.err(
                "discovery.min_ttl",
                format!(
                    "min_ttl {:?} must not be longer than max_ttl {:?}",
                    discovery.min_ttl, discovery.max_ttl
                ),
            ));
        }
        Ok(discovery)
    }

    /// The domain is stored without a trailing dot, so names are built the same way whichever was written.
    fn dns(&self, raw: raw::Dns) -> Result<Dns, ConfigError> {
        let listen = self.socket_addr("dns.listen", &raw.listen)?;
        let domain = raw
            .domain
            .unwrap_or_else(|| defaults::DNS_DOMAIN.to_owned());
        let domain = domain.strip_suffix('.').unwrap_or(&domain).to_owned();
        if !is_dns_name(&domain) {
            return Err(self.err(
                "dns.domain",
                format!("{domain:?} is not a DNS name (dot-separated labels of letters, digits and '-')"),
            ));
        }
        Ok(Dns { listen, domain })
    }

    /// Counts that would refuse every connection or request must not be 0; the head limit must fit a browser's.
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
            listen_backlog: raw.listen_backlog.unwrap_or(d.listen_backlog),
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
        if !(1..=defaults::MAX_LISTEN_BACKLOG).contains(&limits.listen_backlog) {
            return Err(self.err(
                "limits.listen_backlog",
                format!(
                    "must be between 1 and {} (the kernel caps it at net.core.somaxconn), got {}",
                    defaults::MAX_LISTEN_BACKLOG,
                    limits.listen_backlog
                ),
            ));
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
        if limits.max_request_header_bytes > defaults::MAX_REQUEST_HEADER_BYTES_LIMIT {
            return Err(self.err(
                "limits.max_request_header_bytes",
                format!(
                    "must be at most {} (16 MiB), got {}",
                    defaults::MAX_REQUEST_HEADER_BYTES_LIMIT,
                    limits.max_request_header_bytes
                ),
            ));
        }
        Ok(limits)
    }
}
