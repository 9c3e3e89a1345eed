//! What the control plane reports: the `/status` document, `/healthz`, the pool gauges and request counts.
//!
//! `/status` (DESIGN.md) lists every load balancer with its DNS name (ELB-SPEC.md §4), its nodes' listeners and
//! its instances with ELB's DescribeInstanceHealth state, reason code and description (ELB-SPEC.md §2), plus the
//! configuration generation and the last refused reload. Everything here reads the state under the lock and
//! changes nothing but gauges. The trade-off: the pool gauges are set when scraped, not as connections come and
//! go, so the request path never touches them.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::{Control, LoadBalancerState, NodeListener};
use crate::config::InstanceAddress;

impl Control {
    /// Sets the pool gauges (idle connections, outstanding requests per zone) from the live targets: read at
    /// scrape time so the request path never touches a gauge for them.
    pub fn refresh_pool_gauges(&self) {
        let state = self.lock();
        let mut totals: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
        for ((lb, _, _), target) in &state.targets {
            let entry = totals.entry((lb, &target.zone)).or_default();
            entry.0 += target.pool.idle_len();
            entry.1 += target.outstanding();
        }
        for lb in &state.load_balancers {
            for zone in &lb.config.availability_zones {
                let (idle, active) = totals
                    .get(&(lb.config.name.as_str(), zone.name.as_str()))
                    .copied()
                    .unwrap_or_default();
                let series = self.metrics.zone(&lb.config.name, &zone.name);
                series.backend_idle_connections.set(idle as i64);
                series.backend_active_requests.set(active as i64);
            }
        }
    }

    /// Requests dispatched to each instance so far, by instance id (summed over its addresses and listeners).
    pub fn request_counts(&self, load_balancer: &str) -> HashMap<String, u64> {
        let state = self.lock();
        let mut counts = HashMap::new();
        for ((lb, id, _), target) in &state.targets {
            if **lb == *load_balancer {
                *counts.entry(id.to_string()).or_insert(0) += target.requests();
            }
        }
        counts
    }

    /// Whether every load balancer has an instance in service that this process's nodes may use.
    pub fn healthz(&self) -> Result<(), Unhealthy> {
        let state = self.lock();
        for lb in &state.load_balancers {
            if !lb.instances.iter().any(|i| i.health.in_service()) {
                return Err(Unhealthy::NoInstanceInService {
                    load_balancer: lb.config.name.clone(),
                });
            }
        }
        if let Some(listener) = state.listeners.iter().find(|l| l.bound.is_none()) {
            return Err(Unhealthy::ListenerNotAccepting {
                load_balancer: listener.load_balancer.to_string(),
                node: listener.node,
                port: listener.listener.load_balancer_port,
            });
        }
        Ok(())
    }

    /// The `/status` document (DESIGN.md).
    pub fn status(&self, dns_address: Option<SocketAddr>) -> Status {
        let state = self.lock();
        let domain = state
            .dns
            .as_ref()
            .map(|d| d.domain.as_str())
            .unwrap_or("elb.localhost");
        let load_balancers = state
            .load_balancers
            .iter()
            .map(|lb| load_balancer_status(lb, &state.listeners, domain))
            .collect();
        Status {
            load_balancers,
            dns: dns_address.map(|address| DnsStatus {
                address: address.to_string(),
            }),
            config: ConfigStatus {
                generation: state.generation,
                last_reload_error: state.last_reload_error.clone(),
            },
        }
    }
}

/// One load balancer's part of `/status`: its DNS name, its nodes' listeners (by enabled zone), its instances.
fn load_balancer_status(
    lb: &LoadBalancerState,
    listeners: &[NodeListener],
    domain: &str,
) -> LoadBalancerStatus {
    LoadBalancerStatus {
        name: lb.config.name.clone(),
        dns_name: crate::dns::dns_name(&lb.config.name, &lb.config.region, domain),
        nodes: lb
            .config
            .availability_zones
            .iter()
            .map(|zone| NodeStatus {
                zone: zone.name.clone(),
                listeners: listeners
                    .iter()
                    .filter(|l| *l.load_balancer == *lb.config.name && *l.zone == *zone.name)
                    .map(|l| ListenerStatus {
                        protocol: l.listener.protocol.to_string(),
                        address: l.bound.map(|a| a.to_string()),
                    })
                    .collect(),
            })
            .collect(),
        instances: lb
            .instances
            .iter()
            .map(|i| InstanceStatus {
                instance_id: i.id.to_string(),
                zone: i.zone.to_string(),
                address: describe_address(
                    &i.address,
                    lb.config.listeners.first().map(|l| l.instance_port),
                ),
                state: i.health.state,
                reason_code: i.health.reason_code,
                description: i.health.description,
            })
            .collect(),
    }
}

/// An instance's address as registered: `ip:port` with the first listener's instance port (80 without one),
/// or as given.
fn describe_address(address: &InstanceAddress, instance_port: Option<u16>) -> String {
    match address {
        InstanceAddress::Ip(ip) => SocketAddr::new(*ip, instance_port.unwrap_or(80)).to_string(),
        InstanceAddress::Socket(addr) => addr.to_string(),
        InstanceAddress::Host { host, port } => format!("{host}:{port}"),
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub load_balancers: Vec<LoadBalancerStatus>,
    pub dns: Option<DnsStatus>,
    pub config: ConfigStatus,
}

#[derive(Debug, Serialize)]
pub struct LoadBalancerStatus {
    pub name: String,
    pub dns_name: String,
    pub nodes: Vec<NodeStatus>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub zone: String,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    pub protocol: String,
    pub address: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    pub instance_id: String,
    pub zone: String,
    pub address: String,
    pub state: &'static str,
    pub reason_code: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Serialize)]
pub struct DnsStatus {
    pub address: String,
}

#[derive(Debug, Serialize)]
pub struct ConfigStatus {
    pub generation: u64,
    pub last_reload_error: Option<String>,
}

/// Why this process cannot serve (`/healthz` answers 503 with this as its one-line reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("load balancer {load_balancer} has no InService instance")]
    NoInstanceInService { load_balancer: String },
    #[error("listener {node}:{port} of {load_balancer} is not accepting")]
    ListenerNotAccepting {
        load_balancer: String,
        node: std::net::IpAddr,
        port: u16,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::super::Control;
    use crate::config;
    use crate::control_plane::discovery::Discovery;
    use crate::observability::metrics::Metrics;

    const CONFIG: &str = r#"
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
[[load_balancer.instance]]
id = "i-a"
zone = "zone-a"
address = "127.0.0.21"
"#;

    fn control() -> Control {
        let mut config = config::parse(CONFIG, std::path::Path::new("<test>")).unwrap();
        // Asks no name server (nothing here resolves a name).
        config.discovery.name_servers = vec!["127.0.0.1:9".parse().unwrap()];
        let discovery = Arc::new(Discovery::new(&config.discovery).unwrap());
        Control::new(
            &config,
            &HashMap::new(),
            Arc::new(Metrics::new()),
            discovery,
        )
    }

    #[test]
    fn status_lists_nodes_instances_and_the_configuration() {
        let status = serde_json::to_value(control().status(None)).unwrap();
        let lb = &status["load_balancers"][0];
        assert_eq!(lb["name"], "web");
        assert_eq!(lb["nodes"][0]["zone"], "zone-a");
        assert_eq!(lb["nodes"][0]["listeners"][0]["protocol"], "HTTP");
        assert!(lb["nodes"][0]["listeners"][0]["address"].is_null());
        let instance = &lb["instances"][0];
        assert_eq!(instance["instance_id"], "i-a");
        assert_eq!(instance["address"], "127.0.0.21:8000");
        assert_eq!(instance["state"], "OutOfService");
        assert!(status["dns"].is_null());
        assert_eq!(status["config"]["generation"], 1);
        assert!(status["config"]["last_reload_error"].is_null());
    }

    #[test]
    fn healthz_names_a_load_balancer_without_an_instance_in_service() {
        let error = control().healthz().unwrap_err();
        assert_eq!(
            error.to_string(),
            "load balancer web has no InService instance"
        );
    }
}
