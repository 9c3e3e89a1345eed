//! The control plane: the mutable state of every load balancer, and the snapshots it publishes.
//!
//! It owns the configuration, the registered instances, their health and resolved addresses. Whenever one of them
//! changes it rebuilds the [`NodeSnapshot`] of every node listener and swaps it in (DESIGN.md "The shape"). The
//! state sits behind a `std::sync::Mutex`: it is taken by configuration, registration and health events, never by
//! the request path (which only `load()`s snapshots), and never held across an `.await`.
#![allow(clippy::disallowed_types)] // the control plane's one lock; see above.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{self, InstanceAddress, Limits, Protocol};
use crate::control_plane::discovery::Discovery;
use crate::control_plane::health::{Checker, HealthEvent};
use crate::data_plane::back_end::pool::Pool;
use crate::data_plane::back_end::target::Target;
use crate::data_plane::passive::PassiveFailure;
use crate::data_plane::snapshot::{NodeSnapshot, SharedNodeSnapshot};
use crate::observability::metrics::Metrics;

pub use crate::control_plane::health::InstanceHealth;

/// A live target's identity: (load balancer, instance id, address).
type TargetKey = (Arc<str>, Arc<str>, SocketAddr);

/// One registered instance.
#[derive(Debug, Clone)]
struct InstanceState {
    id: Arc<str>,
    zone: Arc<str>,
    address: InstanceAddress,
    /// Addresses of a `host:port` instance, as last resolved.
    resolved: Vec<IpAddr>,
    health: InstanceHealth,
}

/// One listener of one node, and the snapshot it routes by.
#[derive(Debug)]
pub struct NodeListener {
    pub load_balancer: Arc<str>,
    pub zone: Arc<str>,
    pub node: IpAddr,
    pub listener: config::Listener,
    /// The listener's position in its load balancer's configuration (ports may repeat when they are 0).
    pub listener_index: usize,
    pub routes: SharedNodeSnapshot,
    /// The address actually bound (port 0 resolved), once bound.
    pub bound: Option<SocketAddr>,
}

struct LoadBalancerState {
    config: config::LoadBalancer,
    instances: Vec<InstanceState>,
}

struct State {
    limits: Limits,
    dns: Option<config::Dns>,
    load_balancers: Vec<LoadBalancerState>,
    listeners: Vec<NodeListener>,
    /// Live targets by (load balancer, instance id, address), carried from one snapshot to the next.
    targets: HashMap<TargetKey, Arc<Target>>,
    generation: u64,
    last_reload_error: Option<String>,
    /// Health checkers by load balancer (DESIGN.md: all nodes of the process share their results).
    checkers: HashMap<String, ZoneCheckers>,
    /// DNS watchers of `host:port` instances, by (load balancer, instance id, host).
    watchers: HashMap<(String, String, String), tokio::task::AbortHandle>,
}

/// The control plane.
pub struct Control {
    /// The one lock of elbe, fine here: taken by configuration, registration, health and discovery events and by
    /// the admin API, never by the request path (which reads the published snapshots), never across an `.await`.
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    discovery: Arc<Discovery>,
}

/// One load balancer's health checkers, one per enabled zone, so each zone's probe connection failures count in
/// that zone's BackendConnectionErrors. Instances in a zone that is not enabled are not checked.
#[derive(Default)]
struct ZoneCheckers(HashMap<String, Checker>);

impl ZoneCheckers {
    /// Checks `instance_id` in `zone` at `probe` (or stops checking it with `None`), wherever it was before.
    fn place(&self, instance_id: &Arc<str>, zone: &str, probe: Option<SocketAddr>) {
        for (checker_zone, checker) in &self.0 {
            match probe {
                Some(addr) if checker_zone == zone => checker.add(instance_id.clone(), addr),
                _ => checker.remove(instance_id),
            }
        }
    }
}

/// An error from the control plane's own API (registration and the like).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("There is no ACTIVE Load Balancer named '{0}'")]
    LoadBalancerNotFound(String),
    #[error("{0}")]
    Resolve(String),
}

impl Control {
    /// Builds the state for a validated configuration; `resolved` holds the addresses of `host:port` instances.
    pub fn new(
        config: &config::Config,
        resolved: &HashMap<String, Vec<IpAddr>>,
        metrics: Arc<Metrics>,
        discovery: Arc<Discovery>,
    ) -> Self {
        let load_balancers = config
            .load_balancers
            .iter()
            .map(|lb| LoadBalancerState {
                config: lb.clone(),
                instances: lb
                    .instances
                    .iter()
                    .map(|instance| instance_state(lb, instance, resolved))
                    .collect(),
            })
            .collect::<Vec<_>>();
        let listeners = config
            .load_balancers
            .iter()
            .flat_map(|lb| {
                lb.availability_zones.iter().flat_map(move |zone| {
                    lb.listeners
                        .iter()
                        .enumerate()
                        .map(move |(listener_index, listener)| NodeListener {
                            load_balancer: lb.name.as_str().into(),
                            zone: zone.name.as_str().into(),
                            node: zone.node,
                            listener: listener.clone(),
                            listener_index,
                            routes: Arc::new(ArcSwap::from_pointee(NodeSnapshot::default())),
                            bound: None,
                        })
                })
            })
            .collect();
        let control = Control {
            state: Mutex::new(State {
                limits: config.limits.clone(),
                dns: config.dns.clone(),
                load_balancers,
                listeners,
                targets: HashMap::new(),
                generation: 1,
                last_reload_error: None,
                checkers: HashMap::new(),
                watchers: HashMap::new(),
            }),
            metrics,
            discovery,
        };
        control.publish(&mut control.lock());
        control
    }

    /// Every use of the control plane's lock goes through here (see [`Control::state`] for why a lock is fine).
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as consistent as the last publish; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` over every node listener (to bind them, or to read their snapshots).
    pub fn with_listeners<R>(&self, f: impl FnOnce(&mut [NodeListener]) -> R) -> R {
        f(&mut self.lock().listeners)
    }

    /// Rebuilds and swaps in every node listener's snapshot.
    fn publish(&self, state: &mut State) {
        let mut live = HashMap::new();
        for index in 0..state.listeners.len() {
            let listener = &state.listeners[index];
            let Some(lb) = state
                .load_balancers
                .iter()
                .find(|lb| *lb.config.name == *listener.load_balancer)
            else {
                continue;
            };
            let candidates = candidates(lb, listener, &state.limits, &state.targets, &mut live);
            listener.routes.store(Arc::new(NodeSnapshot {
                candidates,
                idle_timeout: lb.config.idle_timeout,
            }));
        }
        // Targets of instances still registered are kept even while out of service, so their request counts
        // survive a health flip; targets of deregistered instances are dropped here (their idle pooled
        // connections close with them).
        for (key, target) in std::mem::take(&mut state.targets) {
            let registered = state
                .load_balancers
                .iter()
                .any(|lb| *lb.config.name == *key.0 && lb.instances.iter().any(|i| i.id == key.1));
            if registered {
                live.entry(key).or_insert(target);
            }
        }
        state.targets = live;
        // HealthyHostCount / UnHealthyHostCount per zone, counted by the instances' own zones.
        for lb in &state.load_balancers {
            for zone in &lb.config.availability_zones {
                let here = lb.instances.iter().filter(|i| *i.zone == *zone.name);
                let healthy = here.clone().filter(|i| i.health.in_service()).count();
                let series = self.metrics.zone(&lb.config.name, &zone.name);
                series.healthy_hosts.set(healthy as i64);
                series.unhealthy_hosts.set((here.count() - healthy) as i64);
            }
        }
    }

    /// Registers an instance at run time (or replaces the registration with the same id). A `host:port` address
    /// is resolved first and then followed at its TTL (DNS discovery). The admin API and the test harness both
    /// come through here.
    pub async fn register(
        self: &Arc<Self>,
        load_balancer: &str,
        instance: config::Instance,
    ) -> Result<(), ControlError> {
        let resolved = match &instance.address {
            InstanceAddress::Host { host, .. } => {
                self.discovery
                    .resolve(host)
                    .await
                    .map_err(|e| ControlError::Resolve(e.to_string()))?
                    .0
            }
            _ => Vec::new(),
        };
        self.register_resolved(load_balancer, instance, resolved)?;
        self.watch_names();
        Ok(())
    }

    /// Registers an instance whose addresses are already resolved.
    fn register_resolved(
        &self,
        load_balancer: &str,
        instance: config::Instance,
        resolved: Vec<IpAddr>,
    ) -> Result<(), ControlError> {
        let mut state = self.lock();
        let lb = find_lb(&mut state, load_balancer)?;
        let mut new = instance_state(
            &lb.config,
            &instance,
            &HashMap::from([(instance.id.clone(), resolved)]),
        );
        let unchanged = lb.instances.iter().find(|i| {
            i.id == new.id
                && i.zone == new.zone
                && i.address == new.address
                && i.resolved == new.resolved
        });
        if let Some(existing) = unchanged {
            // Registering a registered instance again changes nothing (as RegisterInstancesWithLoadBalancer):
            // it keeps its health and its checks.
            new.health = existing.health.clone();
            lb.instances.retain(|existing| existing.id != new.id);
            lb.instances.push(new);
            return Ok(());
        }
        lb.instances.retain(|existing| existing.id != new.id);
        let probe = probe_address(&lb.config, &new);
        let (id, zone) = (new.id.clone(), new.zone.clone());
        lb.instances.push(new);
        Self::sync_checker(&mut state, load_balancer, &id, &zone, probe);
        self.publish(&mut state);
        Ok(())
    }

    /// Deregisters an instance; returns whether it was registered.
    pub fn deregister(&self, load_balancer: &str, instance_id: &str) -> Result<bool, ControlError> {
        let mut state = self.lock();
        let lb = find_lb(&mut state, load_balancer)?;
        let before = lb.instances.len();
        lb.instances.retain(|existing| &*existing.id != instance_id);
        let removed = lb.instances.len() != before;
        Self::sync_checker(&mut state, load_balancer, &instance_id.into(), "", None);
        state.watchers.retain(|(lb, id, _), watcher| {
            let gone = lb == load_balancer && id == instance_id;
            if gone {
                watcher.abort();
            }
            !gone
        });
        self.publish(&mut state);
        Ok(removed)
    }

    /// Starts the health checkers of every load balancer that has none (one per enabled zone); their results
    /// come back through [`Control::apply_health`]. Needs a tokio runtime.
    pub fn start_health_checks(self: &Arc<Self>) {
        let mut state = self.lock();
        let State {
            load_balancers,
            checkers,
            ..
        } = &mut *state;
        for lb in load_balancers.iter() {
            if checkers.contains_key(&lb.config.name) {
                continue;
            }
            let (events, mut results) = tokio::sync::mpsc::unbounded_channel();
            let mut zones = ZoneCheckers::default();
            for zone in &lb.config.availability_zones {
                let probes = lb
                    .instances
                    .iter()
                    .filter(|i| *i.zone == *zone.name)
                    .filter_map(|i| probe_address(&lb.config, i).map(|a| (i.id.clone(), a)))
                    .collect();
                let errors = self
                    .metrics
                    .zone(&lb.config.name, &zone.name)
                    .backend_connection_errors;
                let checker = Checker::start(
                    lb.config.health_check.clone(),
                    probes,
                    events.clone(),
                    errors,
                );
                zones.0.insert(zone.name.clone(), checker);
            }
            let control = Arc::downgrade(self);
            let name = lb.config.name.clone();
            tokio::spawn(async move {
                while let Some(event) = results.recv().await {
                    let Some(control) = control.upgrade() else {
                        return;
                    };
                    control.apply_health(&name, event);
                }
            });
            checkers.insert(lb.config.name.clone(), zones);
        }
    }

    /// The resolver for `host:port` instances.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// New addresses for a `host:port` instance (DNS discovery): published at once; removed addresses get no new
    /// requests, their in-flight requests finish.
    pub fn update_resolved(&self, load_balancer: &str, instance_id: &str, resolved: Vec<IpAddr>) {
        let mut state = self.lock();
        let State {
            load_balancers,
            checkers,
            ..
        } = &mut *state;
        let Some(lb) = load_balancers
            .iter_mut()
            .find(|lb| lb.config.name == load_balancer)
        else {
            return;
        };
        let config = &lb.config;
        let Some(instance) = lb.instances.iter_mut().find(|i| &*i.id == instance_id) else {
            return;
        };
        instance.resolved = resolved;
        let probe = probe_address(config, instance);
        if let Some(zones) = checkers.get(&config.name) {
            zones.place(&instance.id, &instance.zone, probe);
        }
        self.publish(&mut state);
    }

    /// Starts a DNS watcher for every registered `host:port` instance that has none, and stops the watchers of
    /// instances gone. Needs a tokio runtime.
    pub fn watch_names(self: &Arc<Self>) {
        let mut state = self.lock();
        let mut wanted = Vec::new();
        for lb in &state.load_balancers {
            for instance in &lb.instances {
                if let InstanceAddress::Host { host, .. } = &instance.address {
                    let key = (
                        lb.config.name.clone(),
                        instance.id.to_string(),
                        host.clone(),
                    );
                    wanted.push((key, instance.resolved.clone()));
                }
            }
        }
        state.watchers.retain(|key, watcher| {
            let keep = wanted.iter().any(|(k, _)| k == key);
            if !keep {
                watcher.abort();
            }
            keep
        });
        for (key, resolved) in wanted {
            if state.watchers.contains_key(&key) {
                continue;
            }
            let (lb, id, host) = key.clone();
            let first_wait = self.discovery.min_ttl();
            let task = tokio::spawn(self.discovery.clone().watch(
                Arc::downgrade(self),
                lb,
                id,
                host,
                resolved,
                first_wait,
            ));
            state.watchers.insert(key, task.abort_handle());
        }
    }

    /// Sets an instance's health by hand (the test harness flips health with it); its health checks go on and
    /// the next state change they see replaces it. Returns whether the instance is registered.
    pub fn force_health(
        &self,
        load_balancer: &str,
        instance_id: &str,
        health: InstanceHealth,
    ) -> bool {
        let mut state = self.lock();
        let Ok(lb) = find_lb(&mut state, load_balancer) else {
            return false;
        };
        let Some(instance) = lb.instances.iter_mut().find(|i| &*i.id == instance_id) else {
            return false;
        };
        instance.health = health;
        self.publish(&mut state);
        true
    }

    /// A health checker reported a state change.
    pub fn apply_health(&self, load_balancer: &str, event: HealthEvent) {
        let mut state = self.lock();
        let Ok(lb) = find_lb(&mut state, load_balancer) else {
            return;
        };
        let config = lb.config.clone();
        let Some(instance) = lb.instances.iter_mut().find(|i| i.id == event.instance_id) else {
            return; // deregistered meanwhile
        };
        if probe_address(&config, instance) != Some(event.addr) {
            return; // re-registered at another address meanwhile
        }
        if instance.health == InstanceHealth::ZONE_NOT_ENABLED {
            return;
        }
        tracing::info!(%load_balancer, instance = %event.instance_id, state = event.health.state, reason = event.health.description, "instance health changed");
        instance.health = event.health;
        self.publish(&mut state);
    }

    /// A connection to an instance failed during real traffic (passive health checks): the instance leaves
    /// rotation at once and its active checks start afresh, so its next passing check brings it back.
    pub fn apply_passive_failure(&self, failure: PassiveFailure) {
        let mut state = self.lock();
        let State {
            load_balancers,
            checkers,
            ..
        } = &mut *state;
        let Some(lb) = load_balancers
            .iter_mut()
            .find(|lb| *lb.config.name == *failure.load_balancer)
        else {
            return;
        };
        let config = &lb.config;
        let Some(instance) = lb
            .instances
            .iter_mut()
            .find(|i| i.id == failure.instance_id)
        else {
            return;
        };
        if !instance.health.in_service() {
            return;
        }
        tracing::warn!(load_balancer = %failure.load_balancer, instance = %failure.instance_id, addr = %failure.addr,
            "instance failed during traffic; out of rotation until it passes a health check");
        instance.health = InstanceHealth::FAILED_UNHEALTHY_THRESHOLD;
        if let (Some(zones), Some(addr)) =
            (checkers.get(&config.name), probe_address(config, instance))
        {
            zones.place(&instance.id, &instance.zone, Some(addr));
        }
        self.publish(&mut state);
    }

    fn sync_checker(
        state: &mut State,
        load_balancer: &str,
        instance_id: &Arc<str>,
        zone: &str,
        probe: Option<SocketAddr>,
    ) {
        if let Some(zones) = state.checkers.get(load_balancer) {
            zones.place(instance_id, zone, probe);
        }
    }

    /// A reload failed: the old configuration keeps serving, `/status` shows why.
    pub fn reload_failed(&self, error: String) {
        self.lock().last_reload_error = Some(error);
    }

    /// Applies what a reload may change while serving: each existing load balancer's instances and attributes
    /// (idle timeout, cross-zone). Listeners and zones are bound sockets: changing them needs a restart, and the
    /// returned list says which load balancers had such changes (they keep their old listeners).
    pub fn reload(
        self: &Arc<Self>,
        config: &config::Config,
        resolved: &HashMap<String, Vec<IpAddr>>,
    ) -> Vec<String> {
        let mut state = self.lock();
        let mut needs_restart = Vec::new();
        let mut restart_checks = false;
        let State {
            load_balancers,
            checkers,
            ..
        } = &mut *state;
        for new in &config.load_balancers {
            let Some(lb) = load_balancers
                .iter_mut()
                .find(|lb| lb.config.name == new.name)
            else {
                needs_restart.push(new.name.clone());
                continue;
            };
            if lb.config.listeners != new.listeners
                || lb.config.availability_zones != new.availability_zones
            {
                needs_restart.push(new.name.clone());
            }
            let mut updated = new.clone();
            updated.listeners = lb.config.listeners.clone();
            updated.availability_zones = lb.config.availability_zones.clone();
            let old = std::mem::take(&mut lb.instances);
            let mut changed = Vec::new();
            for instance in &new.instances {
                let mut fresh = instance_state(&updated, instance, resolved);
                let kept = old.iter().find(|o| {
                    o.id == fresh.id && o.address == fresh.address && o.resolved == fresh.resolved
                });
                match kept {
                    // An unchanged instance keeps its health (no new "registration in progress").
                    Some(kept) if fresh.health != InstanceHealth::ZONE_NOT_ENABLED => {
                        fresh.health = kept.health.clone()
                    }
                    Some(_) => {}
                    None => changed.push(fresh.id.clone()),
                }
                lb.instances.push(fresh);
            }
            if lb.config.health_check != updated.health_check {
                // New thresholds or target: start the checks afresh.
                checkers.remove(&new.name);
                restart_checks = true;
            } else if let Some(zones) = checkers.get(&new.name) {
                for gone in old
                    .iter()
                    .filter(|o| !lb.instances.iter().any(|i| i.id == o.id))
                {
                    zones.place(&gone.id, &gone.zone, None);
                }
                for instance in lb.instances.iter().filter(|i| changed.contains(&i.id)) {
                    zones.place(
                        &instance.id,
                        &instance.zone,
                        probe_address(&updated, instance),
                    );
                }
            }
            lb.config = updated;
        }
        state.generation += 1;
        state.last_reload_error = None;
        self.publish(&mut state);
        drop(state);
        if restart_checks {
            self.start_health_checks();
        }
        needs_restart
    }

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
    pub fn healthz(&self) -> Result<(), String> {
        let state = self.lock();
        for lb in &state.load_balancers {
            if !lb.instances.iter().any(|i| i.health.in_service()) {
                return Err(format!(
                    "load balancer {} has no InService instance",
                    lb.config.name
                ));
            }
        }
        if let Some(listener) = state.listeners.iter().find(|l| l.bound.is_none()) {
            return Err(format!(
                "listener {}:{} of {} is not accepting",
                listener.node, listener.listener.load_balancer_port, listener.load_balancer
            ));
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
            .map(|lb| LoadBalancerStatus {
                name: lb.config.name.clone(),
                dns_name: crate::dns::dns_name(&lb.config.name, &lb.config.region, domain),
                nodes: lb
                    .config
                    .availability_zones
                    .iter()
                    .map(|zone| NodeStatus {
                        zone: zone.name.clone(),
                        listeners: state
                            .listeners
                            .iter()
                            .filter(|l| {
                                *l.load_balancer == *lb.config.name && *l.zone == *zone.name
                            })
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
            })
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

fn find_lb<'a>(
    state: &'a mut State,
    name: &str,
) -> Result<&'a mut LoadBalancerState, ControlError> {
    state
        .load_balancers
        .iter_mut()
        .find(|lb| lb.config.name == name)
        .ok_or_else(|| ControlError::LoadBalancerNotFound(name.to_string()))
}

fn instance_state(
    lb: &config::LoadBalancer,
    instance: &config::Instance,
    resolved: &HashMap<String, Vec<IpAddr>>,
) -> InstanceState {
    let zone_enabled = lb
        .availability_zones
        .iter()
        .any(|z| z.name == instance.zone);
    InstanceState {
        id: instance.id.as_str().into(),
        zone: instance.zone.as_str().into(),
        address: instance.address.clone(),
        resolved: resolved.get(&instance.id).cloned().unwrap_or_default(),
        // ELB-SPEC.md §2.1: a new instance is out of service until its first passing check.
        health: if zone_enabled {
            InstanceHealth::REGISTRATION_IN_PROGRESS
        } else {
            InstanceHealth::ZONE_NOT_ENABLED
        },
    }
}

/// Where an instance is health-checked (DESIGN.md): the target's port on the instance's IP, or the instance's own
/// port when it was given as `ip:port` or `host:port` (the first resolved address).
fn probe_address(lb: &config::LoadBalancer, instance: &InstanceState) -> Option<SocketAddr> {
    let target_port = lb.health_check.target.port();
    match &instance.address {
        InstanceAddress::Ip(ip) => Some(SocketAddr::new(*ip, target_port)),
        InstanceAddress::Socket(addr) => Some(*addr),
        InstanceAddress::Host { port, .. } => instance
            .resolved
            .first()
            .map(|ip| SocketAddr::new(*ip, *port)),
    }
}

/// The addresses one listener reaches an instance on.
fn target_addresses(instance: &InstanceState, instance_port: u16) -> Vec<SocketAddr> {
    match &instance.address {
        InstanceAddress::Ip(ip) => vec![SocketAddr::new(*ip, instance_port)],
        InstanceAddress::Socket(addr) => vec![*addr],
        InstanceAddress::Host { port, .. } => instance
            .resolved
            .iter()
            .map(|ip| SocketAddr::new(*ip, *port))
            .collect(),
    }
}

/// ELB-SPEC.md §3: own zone's in-service instances; all enabled zones' with cross-zone on, or when the own zone
/// has none (the 2012 behaviour).
fn candidates(
    lb: &LoadBalancerState,
    listener: &NodeListener,
    limits: &Limits,
    existing: &HashMap<TargetKey, Arc<Target>>,
    live: &mut HashMap<TargetKey, Arc<Target>>,
) -> Vec<Arc<Target>> {
    let routable: Vec<&InstanceState> = lb
        .instances
        .iter()
        .filter(|i| i.health.in_service())
        .collect();
    let own: Vec<&InstanceState> = routable
        .iter()
        .copied()
        .filter(|i| i.zone == listener.zone)
        .collect();
    let chosen = if lb.config.cross_zone_load_balancing || own.is_empty() {
        routable
    } else {
        own
    };
    let mut targets = Vec::new();
    for instance in chosen {
        for addr in target_addresses(instance, listener.listener.instance_port) {
            let key = (listener.load_balancer.clone(), instance.id.clone(), addr);
            let target = live
                .get(&key)
                .or_else(|| existing.get(&key))
                .cloned()
                .unwrap_or_else(|| {
                    let pool = Pool::new(
                        addr,
                        limits.backend_idle_connections,
                        lb.config.idle_timeout,
                        limits.backend_connect_timeout,
                    );
                    let target = Arc::new(Target::new(
                        instance.id.clone(),
                        instance.zone.clone(),
                        addr,
                        pool,
                    ));
                    reap_while_routed(&target);
                    target
                });
            live.insert(key, target.clone());
            targets.push(target);
        }
    }
    targets
}

/// Runs the target's pool reaper until the target is no longer in any snapshot (the last `Arc` is gone).
fn reap_while_routed(target: &Arc<Target>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = target.pool.reap_every();
    let target = Arc::downgrade(target);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(target) = target.upgrade() else {
                return;
            };
            target.pool.reap();
        }
    });
}

fn describe_address(address: &InstanceAddress, instance_port: Option<u16>) -> String {
    match address {
        InstanceAddress::Ip(ip) => SocketAddr::new(*ip, instance_port.unwrap_or(80)).to_string(),
        InstanceAddress::Socket(addr) => addr.to_string(),
        InstanceAddress::Host { host, port } => format!("{host}:{port}"),
    }
}

/// Listener protocols the node serves today.
pub fn is_served(protocol: Protocol) -> bool {
    protocol.is_http()
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
