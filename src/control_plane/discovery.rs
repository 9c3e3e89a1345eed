//! DNS discovery of instances: an instance given as `host:port` is every address its name resolves to.
//!
//! Each such instance has a watcher that resolves the name (hickory-resolver: the system's resolv.conf, or the
//! name servers in `[discovery]`, so it works with any DNS server, Kubernetes headless services and Consul
//! included), sends each new answer as a [`DiscoveryEvent`] on a channel, and resolves again when the answer's TTL
//! ends, bounded below and above by `min_ttl` and `max_ttl`. When the resolver fails, the last good answer stays in
//! use and the name is tried again after `min_ttl`. New addresses get traffic once the control plane publishes
//! them; removed ones get no new requests and their in-flight requests finish.
//!
//! Results travel as events, as health results do, so this module knows nothing of the control plane that applies
//! them (DESIGN.md "The shape"): a watcher stops when nobody receives its events any more, or when it is aborted.
//! The trade-off: an event sent just before the receiver goes is lost, which is fine since the receiver only goes
//! with the control plane.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::TokioResolver;
use tokio::sync::mpsc::UnboundedSender;

use crate::config;

/// Why a name could not be resolved. The resolver's error is boxed: it is large, and errors travel up through
/// start, reload and registration results.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The resolver could not be built from the name servers given (or the system's resolv.conf).
    #[error("cannot build the resolver: {0}")]
    Resolver(#[source] Box<NetError>),
    /// A name that did not resolve (no such name, no address, or no answer in time).
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        /// The name asked for.
        host: String,
        #[source]
        /// The resolver's error.
        source: Box<NetError>,
    },
}

/// A watcher's news: a `host:port` instance's name now resolves to these addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryEvent {
    pub load_balancer: String,
    pub instance_id: String,
    /// Every address the name resolves to, sorted; never empty (an empty answer keeps the last one).
    pub addresses: Vec<IpAddr>,
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
            TokioResolver::builder(provider).map_err(|e| DiscoveryError::Resolver(Box::new(e)))?
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
            .map_err(|e| DiscoveryError::Resolver(Box::new(e)))?;
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
        let lookup =
            self.resolver
                .lookup_ip(host)
                .await
                .map_err(|source| DiscoveryError::Lookup {
                    host: host.to_owned(),
                    source: Box::new(source),
                })?;
        // hickory states an answer's lifetime as a std Instant; its TTL bounds a wait on tokio's clock below.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::Instant::now();
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(now)
            .clamp(self.min_ttl, self.max_ttl);
        let mut ips: Vec<IpAddr> = lookup.iter().collect();
        ips.sort();
        ips.dedup();
        Ok((ips, ttl))
    }

    /// Watches one instance's name and sends every changed answer on `events`, until nobody receives them (the
    /// control plane is gone) or the task is aborted (the instance was deregistered).
    pub async fn watch(
        self: Arc<Self>,
        events: UnboundedSender<DiscoveryEvent>,
        load_balancer: String,
        instance_id: String,
        host: String,
        mut current: Vec<IpAddr>,
        mut wait: Duration,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = events.closed() => return,
            }
            wait = match self.resolve(&host).await {
                Ok((ips, ttl)) => {
                    if ips != current && !ips.is_empty() {
                        tracing::info!(%load_balancer, instance = %instance_id, %host, addresses = ?ips, "instance addresses changed");
                        let event = DiscoveryEvent {
                            load_balancer: load_balancer.clone(),
                            instance_id: instance_id.clone(),
                            addresses: ips.clone(),
                        };
                        if events.send(event).is_err() {
                            return;
                        }
                        current = ips;
                    }
                    ttl
                }
                Err(error) => {
                    tracing::warn!(%load_balancer, instance = %instance_id, %error, "resolving failed; keeping the last answer");
                    self.min_ttl
                }
            };
        }
    }
}
