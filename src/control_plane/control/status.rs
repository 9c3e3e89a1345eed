//! What the control plane reports: the `/status` document, `/healthz`, the pool gauges and request counts.
//!
//! `/status` (DESIGN.md) lists every load balancer with its DNS name (ELB-SPEC.md §4), its nodes' listeners and
//! its instances with ELB's DescribeInstanceHealth state, reason code and description (ELB-SPEC.md §2), plus the
//! configuration generation and the last refused reload. In cluster mode (issue 16 items 3 and 4) it also lists
//! the live members, and each instance's state is the worst among them (`control/members`) with every member's
//! view beside it. Everything here reads the state under the lock and changes nothing but gauges. The trade-off: the pool gauges are set when scraped, not as connections come and
//! go, so the request path never touches them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use serde::Serialize;

use super::members::{ClusterView, MemberStatus};
use super::{Control, LoadBalancerState, NodeListener, StateChange};
use crate::config::InstanceAddress;
use crate::observability::metrics::Metrics;

impl Control {
    /// Sets the pool gauges (idle connections, outstanding requests per zone) from the live targets: read at
    /// scrape time so the request path never touches a gauge for them.
    pub fn refresh_pool_gauges(&self) {
        // admin API reads (/status, /healthz, /metrics scrapes): control-plane lock, never taken on the request path (see `Control::state`).
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
        // admin API reads (/status, /healthz, /metrics scrapes): control-plane lock, never taken on the request path (see `Control::state`).
        let state = self.lock();
        let mut counts = HashMap::new();
        for ((lb, id, _), target) in &state.targets {
            if **lb == *load_balancer {
                *counts.entry(id.to_string()).or_insert(0) += target.requests();
            }
        }
        counts
    }

    /// Whether every load balancer has an instance in service that this process's nodes may use, and every
    /// listener is bound. A draining instance reports InService but takes no new requests (ELB-SPEC §5), so it
    /// does not count: a keepalived `vrrp_script` on `/healthz` then moves the floating IP to a node that can
    /// serve (DESIGN.md "A floating-IP pair"). Any zone's instance counts, since a node whose own zone has none
    /// routes to the others' (ELB-SPEC §3, `publish::candidates`).
    pub fn healthz(&self) -> Result<(), Unhealthy> {
        // admin API reads (/status, /healthz, /metrics scrapes): control-plane lock, never taken on the request path (see `Control::state`).
        let state = self.lock();
        for lb in &state.load_balancers {
            let usable = lb
                .instances
                .iter()
                .any(|i| i.health.in_service() && i.draining.is_none());
            if !usable {
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
        // admin API reads (/status, /healthz, /metrics scrapes): control-plane lock, never taken on the request path (see `Control::state`).
        let cluster = self.members.view();
        let state = self.lock();
        let domain = state
            .dns
            .as_ref()
            .map(|d| d.domain.as_str())
            .unwrap_or("elb.localhost");
        let load_balancers = state
            .load_balancers
            .iter()
            .map(|lb| load_balancer_status(lb, &state.listeners, domain, &self.metrics, &cluster))
            .collect();
        Status {
            members: cluster.members.clone(),
            load_balancers,
            dns: dns_address.map(|address| DnsStatus {
                address: address.to_string(),
            }),
            config: ConfigStatus {
                generation: state.generation,
                last_reload_error: state.last_reload_error.clone(),
            },
            recent_changes: state.changes.newest_first(),
            store: self.store().status(),
        }
    }
}

/// What the ELB API (`control_plane/api`) reads; kept apart from `/status` above, which it reuses.
impl Control {
    /// Every load balancer's configuration beside its `/status` entry (DNS name, bound listeners, instances and
    /// their health), read under one lock so the two agree: DescribeLoadBalancers, DescribeInstanceHealth and
    /// the registration actions answer from it.
    pub(crate) fn described(&self) -> Vec<(crate::config::LoadBalancer, LoadBalancerStatus)> {
        // admin API reads (the ELB API's Describe calls): control-plane lock, never taken on the request path (see `Control::state`).
        let cluster = self.members.view();
        let state = self.lock();
        let domain = state
            .dns
            .as_ref()
            .map(|d| d.domain.as_str())
            .unwrap_or("elb.localhost");
        state
            .load_balancers
            .iter()
            .map(|lb| {
                let status =
                    load_balancer_status(lb, &state.listeners, domain, &self.metrics, &cluster);
                (lb.config.clone(), status)
            })
            .collect()
    }
}

/// One load balancer's part of `/status`: its DNS name, its nodes' listeners and traffic counts (by enabled
/// zone), its instances with their health as reported across the cluster's members.
fn load_balancer_status(
    lb: &LoadBalancerState,
    listeners: &[NodeListener],
    domain: &str,
    metrics: &Metrics,
    cluster: &ClusterView,
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
                traffic: zone_traffic(metrics, &lb.config.name, &zone.name),
            })
            .collect(),
        instances: lb
            .instances
            .iter()
            .map(|i| {
                let reported =
                    cluster.report(&lb.config.name, &i.id, &i.health, i.draining.is_some());
                InstanceStatus {
                    instance_id: i.id.to_string(),
                    zone: i.zone.to_string(),
                    address: describe_address(
                        &i.address,
                        lb.config.listeners.first().map(|l| l.instance_port),
                    ),
                    state: reported.health.state,
                    reason_code: reported.health.reason_code,
                    description: reported.health.description,
                    member: reported.member,
                    views: reported.views,
                }
            })
            .collect(),
    }
}

/// The zone's node counters as `/metrics` has them (the status page turns two samples into rates).
fn zone_traffic(metrics: &Metrics, load_balancer: &str, zone: &str) -> ZoneTraffic {
    let series = metrics.zone(load_balancer, zone);
    ZoneTraffic {
        requests: series.requests.get(),
        elb_4xx: series.elb_4xx.get(),
        elb_5xx: series.elb_5xx.get(),
        backend_4xx: series.backend[2].get(),
        backend_5xx: series.backend[3].get(),
        surge_queue_length: series.surge_queue_length.get().max(0) as u64,
        spillover: series.spillover.get(),
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

/// The `/status` document: what elbe serves and how its instances are doing, as of now.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Cluster mode: every live member, this process first (absent without `[cluster]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Every configured load balancer, in configuration order.
    pub load_balancers: Vec<LoadBalancerStatus>,
    /// The DNS responder, when `[dns]` is configured.
    pub dns: Option<DnsStatus>,
    /// Which configuration is running.
    pub config: ConfigStatus,
    /// The last instance state changes, newest first (at most 20; older ones are dropped).
    pub recent_changes: Vec<StateChange>,
    /// Cluster mode's state store (etcd): whether it answers, since when, the revision applied; absent for the
    /// local stores, which always answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::control_plane::store::StoreStatus>,
}

/// One load balancer.
#[derive(Debug, Serialize)]
pub struct LoadBalancerStatus {
    /// Its name, as configured.
    pub name: String,
    /// The DNS name its nodes answer under (ELB-SPEC.md §4).
    pub dns_name: String,
    /// One node per enabled availability zone.
    pub nodes: Vec<NodeStatus>,
    /// The registered instances, with their health.
    pub instances: Vec<InstanceStatus>,
}

/// One load balancer's node in one availability zone.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    /// The availability zone.
    pub zone: String,
    /// The node's listeners, in configuration order.
    pub listeners: Vec<ListenerStatus>,
    /// What the node has served so far.
    pub traffic: ZoneTraffic,
}

/// One listener of one node.
#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    /// `HTTP`, `HTTPS`, `TCP` or `SSL`.
    pub protocol: String,
    /// The address it accepts on (port 0 resolved), once bound.
    pub address: Option<String>,
}

/// A node's counters since start (the `/metrics` series of its zone): rates are the difference of two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ZoneTraffic {
    /// Requests received (CloudWatch RequestCount).
    pub requests: u64,
    /// 4xx responses elbe made itself (HTTPCode_ELB_4XX).
    pub elb_4xx: u64,
    /// 5xx responses elbe made itself (HTTPCode_ELB_5XX).
    pub elb_5xx: u64,
    /// 4xx responses from instances (HTTPCode_Backend_4XX).
    pub backend_4xx: u64,
    /// 5xx responses from instances (HTTPCode_Backend_5XX).
    pub backend_5xx: u64,
    /// Requests waiting in the surge queue now (SurgeQueueLength).
    pub surge_queue_length: u64,
    /// Requests refused because the surge queue was full (SpilloverCount).
    pub spillover: u64,
}

/// One registered instance, as DescribeInstanceHealth reports it (ELB-SPEC.md §2.2, ELB's exact strings).
#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    /// The instance id.
    pub instance_id: String,
    /// Its availability zone.
    pub zone: String,
    /// Its address as registered (`ip:port` or `host:port`).
    pub address: String,
    /// `InService` or `OutOfService`.
    pub state: &'static str,
    /// `N/A`, `ELB` or `Instance`: whose side the reason is on.
    pub reason_code: &'static str,
    /// ELB's description of the state.
    pub description: &'static str,
    /// Cluster mode: the member whose view the state is, when it is another member's (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Cluster mode: every live member's state for the instance, by node id (absent without `[cluster]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub views: BTreeMap<String, &'static str>,
}

/// The DNS responder.
#[derive(Debug, Serialize)]
pub struct DnsStatus {
    /// The address it answers on.
    pub address: String,
}

/// The running configuration.
#[derive(Debug, Serialize)]
pub struct ConfigStatus {
    /// 1 at start, one more for every reload that applied.
    pub generation: u64,
    /// Why the last reload was refused, if it was (the previous configuration kept serving).
    pub last_reload_error: Option<String>,
}

/// Why this process cannot serve (`/healthz` answers 503 with this as its one-line reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    /// A load balancer has no instance that could take a request (none InService, or only draining ones).
    #[error("load balancer {load_balancer} has no InService instance")]
    NoInstanceInService {
        /// The load balancer.
        load_balancer: String,
    },
    /// A listener has not bound its address.
    #[error("listener {node}:{port} of {load_balancer} is not accepting")]
    ListenerNotAccepting {
        /// The load balancer.
        load_balancer: String,
        /// The node's address.
        node: std::net::IpAddr,
        /// The listener's configured port.
        port: u16,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::super::{Control, InstanceHealth};
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
        assert_eq!(lb["nodes"][0]["traffic"]["requests"], 0);
        assert_eq!(lb["nodes"][0]["traffic"]["surge_queue_length"], 0);
        assert_eq!(status["recent_changes"], serde_json::json!([]));
    }

    #[test]
    fn status_lists_health_changes_newest_first() {
        let control = control();
        assert!(control.force_health("web", "i-a", InstanceHealth::IN_SERVICE));
        assert!(control.force_health("web", "i-a", InstanceHealth::FAILED_UNHEALTHY_THRESHOLD));
        let changes = control.status(None).recent_changes;
        let seen: Vec<_> = changes.iter().map(|c| (c.from, c.to)).collect();
        assert_eq!(
            seen,
            [("InService", "OutOfService"), ("OutOfService", "InService")]
        );
        assert_eq!(changes[0].instance_id, "i-a");
        assert_eq!(changes[0].reason_code, "Instance");
    }

    #[test]
    fn healthz_names_a_load_balancer_without_an_instance_in_service() {
        let error = control().healthz().unwrap_err();
        assert_eq!(
            error.to_string(),
            "load balancer web has no InService instance"
        );
    }

    /// A listener not bound fails `/healthz`; so does a deregistered instance that is draining when it is the
    /// last one: it still reports InService but takes no new requests, so keepalived must move the floating IP
    /// away from a node that cannot serve.
    #[tokio::test]
    async fn healthz_does_not_count_a_draining_instance() {
        let text = CONFIG.replace(
            "[[load_balancer.instance]]",
            "[load_balancer.connection_draining]\nenabled = true\ntimeout = \"300s\"\n[[load_balancer.instance]]",
        );
        let mut config = config::parse(&text, std::path::Path::new("<test>")).unwrap();
        config.discovery.name_servers = vec!["127.0.0.1:9".parse().unwrap()];
        let discovery = Arc::new(Discovery::new(&config.discovery).unwrap());
        let metrics = Arc::new(Metrics::new());
        let control = Arc::new(Control::new(&config, &HashMap::new(), metrics, discovery));
        assert!(control.force_health("web", "i-a", InstanceHealth::IN_SERVICE));
        assert_eq!(
            control.healthz().unwrap_err().to_string(),
            "listener 127.0.0.11:8080 of web is not accepting",
            "not bound yet"
        );
        control.with_listeners(|nodes| {
            for node in nodes.iter_mut() {
                node.bound = Some("127.0.0.11:8080".parse().unwrap());
            }
        });
        assert_eq!(control.healthz(), Ok(()));
        // Not through the spawned `deregister`: awaiting its task would let the drain (nothing in flight)
        // finish before the status is read.
        let ids = ["i-a".to_owned()];
        assert_eq!(control.deregister_now("web", &ids).await.unwrap(), 1);
        let status = serde_json::to_value(control.status(None)).unwrap();
        assert_eq!(
            status["load_balancers"][0]["instances"][0]["state"], "InService",
            "still reported InService while it drains"
        );
        assert_eq!(
            control.healthz().unwrap_err().to_string(),
            "load balancer web has no InService instance"
        );
    }
}
