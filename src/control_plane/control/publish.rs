//! Publishing: rebuilds every node listener's [`NodeSnapshot`] from the state and swaps it in.
//!
//! A listener's candidates are its own zone's in-service instances, or every enabled zone's with cross-zone load
//! balancing on or when its own zone has none (ELB-SPEC.md §3). Each (load balancer, instance, address) is one
//! [`Target`], carried from one snapshot to the next so its request counts and pooled connections survive a
//! rebuild; a target's pool is reaped by a task that lives as long as the target is routed. The trade-off: every
//! change rebuilds every listener's snapshot, which is cheap at control-plane rates and keeps one code path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Control, InstanceState, LoadBalancerState, NodeListener, State, TargetKey};
use crate::config::{self, InstanceAddress, Limits};
use crate::data_plane::back_end::pool::Pool;
use crate::data_plane::back_end::target::Target;
use crate::data_plane::headers::sticky_cookie::CookieKey;
use crate::data_plane::snapshot::{NodeSnapshot, Stickiness, StickyPolicy};

impl Control {
    /// Rebuilds and swaps in every node listener's snapshot.
    pub(super) fn publish(&self, state: &mut State) {
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
            let stickiness = stickiness(lb, listener, &state.stickiness_secret, &candidates);
            listener.routes.store(Arc::new(NodeSnapshot {
                candidates,
                idle_timeout: lb.config.idle_timeout,
                stickiness,
                rules: listener_rules(lb, listener),
            }));
        }
        // Targets of instances still registered are kept even while out of service, so their request counts
        // survive a health flip; targets of deregistered instances are dropped here (their idle pooled
        // connections close with them).
        // One set of what is registered, not a scan of every load balancer's instances per target (which made a
        // publish O(n^2) in the instances).
        let registered: HashSet<(&str, &str)> = state
            .load_balancers
            .iter()
            .flat_map(|lb| lb.instances.iter().map(|i| (&*lb.config.name, &*i.id)))
            .collect();
        for (key, target) in std::mem::take(&mut state.targets) {
            if registered.contains(&(&*key.0, &*key.1)) {
                live.entry(key).or_insert(target);
            } else {
                // Gone (deregistered, with its drain over if it had one): its requests still in flight end with
                // ELB's 504, its idle connections close (ELB-SPEC §5).
                target.cut();
            }
        }
        state.targets = live;
        self.set_host_counts(state);
        // Nodes, registrations or health may have changed: the cluster's tasks (cluster mode) look again.
        self.members.changed();
    }

    /// HealthyHostCount / UnHealthyHostCount per zone, counted by the instances' own zones.
    fn set_host_counts(&self, state: &State) {
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
}

/// The listener's sticky-session policy (its `policy_names`, ELB-SPEC §6), keyed with the load balancer's
/// `stickiness_key` or else the process's secret, and bound to the load balancer and the listener's instance port.
fn stickiness(
    lb: &LoadBalancerState,
    listener: &NodeListener,
    process_secret: &[u8],
    candidates: &[Arc<Target>],
) -> Option<Stickiness> {
    let policy = listener
        .listener
        .policy_names
        .iter()
        .find_map(|name| lb.config.policies.iter().find(|p| p.name == *name))?;
    let secret = lb
        .config
        .stickiness_key
        .as_deref()
        .map_or(process_secret, str::as_bytes);
    let key = CookieKey::new(secret, &lb.config.name, listener.listener.instance_port);
    Some(Stickiness::new(
        StickyPolicy::new(&policy.kind)?,
        key,
        candidates,
    ))
}

/// The rules of the listener on this port, in the order they are tried (validation sorted them).
fn listener_rules(lb: &LoadBalancerState, listener: &NodeListener) -> Arc<[config::Rule]> {
    lb.config
        .rules
        .iter()
        .filter(|rule| rule.load_balancer_port == listener.listener.load_balancer_port)
        .cloned()
        .collect()
}

/// Where an instance is health-checked (DESIGN.md "Health-check port"): the target's port on the instance's IP.
/// An instance given as `ip:port` or `host:port` (the first resolved address) serves the listeners'
/// `instance_port` at its own port, so a target on a listener's `instance_port` is probed there; a target on any
/// other port is a separate health port, probed at that port on the instance's address.
pub(super) fn probe_address(
    lb: &config::LoadBalancer,
    instance: &InstanceState,
) -> Option<SocketAddr> {
    let target_port = lb.health_check.target.port();
    let (ip, own_port) = match &instance.address {
        InstanceAddress::Ip(ip) => return Some(SocketAddr::new(*ip, target_port)),
        InstanceAddress::Socket(addr) => (addr.ip(), addr.port()),
        InstanceAddress::Host { port, .. } => (*instance.resolved.first()?, *port),
    };
    let traffic_port = lb.listeners.iter().any(|l| l.instance_port == target_port);
    Some(SocketAddr::new(
        ip,
        if traffic_port { own_port } else { target_port },
    ))
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
    // A draining instance reports InService but takes no new requests (ELB-SPEC §5).
    let routable: Vec<&InstanceState> = lb
        .instances
        .iter()
        .filter(|i| i.health.in_service() && i.draining.is_none())
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
            // A target retired by a drain that a re-registration ended is not reused: it takes no connections back.
            let target = live
                .get(&key)
                .or_else(|| existing.get(&key))
                .filter(|target| !target.is_retired())
                .cloned()
                .unwrap_or_else(|| new_target(lb, instance, addr, limits));
            live.insert(key, target.clone());
            targets.push(target);
        }
    }
    targets
}

/// A target seen for the first time: an empty pool, and its reaper.
fn new_target(
    lb: &LoadBalancerState,
    instance: &InstanceState,
    addr: SocketAddr,
    limits: &Limits,
) -> Arc<Target> {
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
