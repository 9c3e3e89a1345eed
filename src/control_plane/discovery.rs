//! DNS discovery of instances: an instance given as `host:port` is every address its name resolves to.
//!
//! Each such instance has a watcher that resolves the name (hickory-resolver: the system's resolv.conf, or the
//! name servers in `[discovery]`, so it works with any DNS server, Kubernetes headless services and Consul
//! included), hands the addresses to the control plane, and resolves again when the answer's TTL ends, bounded
//! below and above by `min_ttl` and `max_ttl`. When the resolver fails, the last good answer stays in use and the
//! name is tried again after `min_ttl`. New addresses get traffic once published; removed ones get no new requests
//! and their in-flight requests finish.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config;
use crate::control_plane::control::Control;

/// Why a name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot build the resolver: {0}")]
    Resolver(String),
    #[error("cannot resolve {host}: {reason}")]
    Lookup { host: String, reason: String },
}

/// The process's resolver for instance names.
pub struct Discovery {
    resolver: TokioResolver,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl Discovery {
    pub fn new(settings: &config::Discovery) -> Result<Self, DiscoveryError> {
        let provider = TokioRuntimeProvider::default();
        let builder = if settings.name_servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| DiscoveryError::Resolver(e.to_string()))?
        } else {
            let servers = settings
                .name_servers
                .iter()
                .map(|address| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = address.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = address.port();
                    NameServerConfig::new(address.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let resolver = builder
            .build()
            .map_err(|e| DiscoveryError::Resolver(e.to_string()))?;
        Ok(Discovery {
            resolver,
            min_ttl: settings.min_ttl,
            max_ttl: settings.max_ttl,
        })
    }

    /// The shortest time an answer is used.
    pub fn min_ttl(&self) -> Duration {
        self.min_ttl
    }

    /// Every address `host` resolves to now, sorted, and how long the answer may be used (within the bounds).
    pub async fn resolve(&self, host: &str) -> Result<(Vec<IpAddr>, Duration), DiscoveryError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok((vec![ip], self.max_ttl));
        }
        let lookup = self
            .resolver
            .lookup_ip(host)
            .await
            .map_err(|e| DiscoveryError::Lookup {
                host: host.to_owned(),
                reason: e.to_string(),
            })?;
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(std::time::Instant::now())
            .clamp(self.min_ttl, self.max_ttl);
        let mut ips: Vec<IpAddr> = lookup.iter().collect();
        ips.sort();
        ips.dedup();
        Ok((ips, ttl))
    }

    /// Watches one instance's name until the task is aborted (the instance was deregistered) or the control
    /// plane is gone.
    pub async fn watch(
        self: Arc<Self>,
        control: Weak<Control>,
        load_balancer: String,
        instance_id: String,
        host: String,
        mut current: Vec<IpAddr>,
        mut wait: Duration,
    ) {
        loop {
            tokio::time::sleep(wait).await;
            wait = match self.resolve(&host).await {
                Ok((ips, ttl)) => {
                    if ips != current && !ips.is_empty() {
                        let Some(control) = control.upgrade() else {
                            return;
                        };
                        tracing::info!(%load_balancer, instance = %instance_id, %host, addresses = ?ips, "instance addresses changed");
                        control.update_resolved(&load_balancer, &instance_id, ips.clone());
                        current = ips;
                    }
                    ttl
                }
                Err(error) => {
                    tracing::warn!(%load_balancer, instance = %instance_id, %error, "resolving failed; keeping the last answer");
                    self.min_ttl
                }
            };
            if control.strong_count() == 0 {
                return;
            }
        }
    }
}
