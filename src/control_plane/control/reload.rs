//! Reload: a new configuration applied while elbe serves (SIGHUP, DESIGN.md "Shutdown and reload").
//!
//! Everything a load balancer is made of changes here by swapping snapshots: load balancers come and go, so do
//! their zones, listeners, instances, health checks, policies, rules and attributes. The server binds the new
//! listeners first (a bind failure refuses the whole reload before anything here runs), so this part cannot fail.
//! A node listener on the same socket as before ([`SocketKey`]) keeps its shared snapshot, so the connections open
//! on it see the new routes at once. An unchanged instance keeps its health (no new "registration in progress",
//! ELB-SPEC.md §2.1); an instance the file no longer lists is deregistered as DeregisterInstancesFromLoadBalancer
//! does (ELB-SPEC §5: it drains with connection draining on, its requests are cut with it off); a removed load
//! balancer's checks stop at once and its instances drain by its own `connection_draining`. New thresholds, a new
//! target or new zones restart a load balancer's checks. The state store's records are laid on top of the new file
//! first, under the lock (DESIGN.md "The state store"), so a registration made through the API survives the reload
//! and a deregistered file instance stays gone. The trade-off: the whole state is rebuilt under the one lock and
//! published once, so no request ever sees half a reload.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::draining::drain_then_remove;
use super::publish::probe_address;
use super::{
    instance_state, node_listeners, Control, InstanceState, LoadBalancerState, NodeListener, State,
};
use crate::config;
use crate::control_plane::health::InstanceHealth;
use crate::data_plane::back_end::target::Target;
use crate::data_plane::node::SocketKey;

/// Every (load balancer, zone) of `load_balancers`.
fn zones_of<'a>(
    load_balancers: impl Iterator<Item = &'a config::LoadBalancer>,
) -> std::collections::HashSet<(String, String)> {
    load_balancers
        .flat_map(|lb| {
            lb.availability_zones
                .iter()
                .map(|zone| (lb.name.clone(), zone.name.clone()))
        })
        .collect()
}

/// A drain the reload started: an instance the file no longer lists, with connection draining on.
struct Drain {
    load_balancer: String,
    instance_id: String,
    number: u64,
    timeout: Duration,
}

impl NodeListener {
    /// The socket this node listener is served on (kept across reloads while the key stays the same).
    pub(crate) fn socket_key(&self) -> SocketKey {
        SocketKey::of(
            &self.load_balancer,
            self.node,
            self.listener_index,
            self.listener.load_balancer_port,
        )
    }
}

impl Control {
    /// A reload failed: the old configuration keeps serving, `/status` shows why.
    pub fn reload_failed(&self, error: String) {
        // SIGHUP reload: control-plane lock, never taken on the request path (see `Control::state`).
        self.lock().last_reload_error = Some(error);
    }

    /// Applies a new configuration, with the state store's records laid on top. `bound` holds the address of
    /// every node listener's socket, kept or newly bound (the server binds before calling); `resolved` the
    /// addresses of `host:port` instances (those of [`Control::overlaid`]).
    ///
    /// `from_file`: a reload of the configuration file (a new generation, its last error cleared), or (`false`)
    /// the records of an ELB API change laid on the same file, which leaves both as they were.
    pub(crate) fn reload(
        self: &Arc<Self>,
        config: &config::Config,
        resolved: &HashMap<String, Vec<IpAddr>>,
        bound: &HashMap<SocketKey, SocketAddr>,
        from_file: bool,
    ) {
        // SIGHUP reload: control-plane lock, never taken on the request path (see `Control::state`).
        let mut state = self.lock();
        let overlaid = state.records.overlay(config);
        overlaid.warn_ignored();
        let config = &overlaid.config;
        let resolved = &with_resolved_of_running(&state, resolved);
        let zones_before = zones_of(state.load_balancers.iter().map(|lb| &lb.config));
        state.dns = config.dns.clone();
        state.listeners = reloaded_listeners(config, &state.listeners, bound);
        self.remove_load_balancers(&mut state, config);
        let mut drains = Vec::new();
        let mut restart_checks = false;
        for new in &config.load_balancers {
            restart_checks |= self.reload_load_balancer(&mut state, new, resolved, &mut drains);
        }
        let retiring = drains
            .iter()
            .map(|drain| retire_targets(&state, &drain.load_balancer, &drain.instance_id))
            .collect::<Vec<_>>();
        if from_file {
            state.generation += 1;
            state.last_reload_error = None;
        }
        self.publish(&mut state);
        drop(state);
        // The CloudWatch series of a node that is gone (its load balancer deleted, its zone disabled) go too, so
        // `/metrics` lists what runs; a listener still draining counts into series no longer exported.
        let zones_after = zones_of(config.load_balancers.iter());
        for (load_balancer, zone) in zones_before.difference(&zones_after) {
            self.metrics.forget_zone(load_balancer, zone);
        }
        if restart_checks {
            self.start_health_checks();
            self.stop_checking_draining();
        }
        for (drain, targets) in drains.into_iter().zip(retiring) {
            tracing::info!(load_balancer = %drain.load_balancer, instance = %drain.instance_id, timeout = ?drain.timeout, "removed by the reload; draining");
            tokio::spawn(drain_then_remove(
                Arc::downgrade(self),
                drain.load_balancer,
                drain.instance_id,
                drain.number,
                targets,
                drain.timeout,
            ));
        }
    }

    /// Load balancers the new configuration no longer has: their checks stop at once (the checkers are dropped),
    /// their instances leave with them, and the requests in flight on those instances drain by the load
    /// balancer's own `connection_draining` (or are cut now with it off).
    fn remove_load_balancers(&self, state: &mut State, config: &config::Config) {
        let wanted = |lb: &LoadBalancerState| {
            config
                .load_balancers
                .iter()
                .any(|new| new.name == lb.config.name)
        };
        let (kept, removed): (Vec<_>, Vec<_>) = std::mem::take(&mut state.load_balancers)
            .into_iter()
            .partition(wanted);
        state.load_balancers = kept;
        for lb in removed {
            let name = lb.config.name.as_str();
            state.checkers.remove(name);
            let keys: Vec<_> = state
                .targets
                .keys()
                .filter(|key| *key.0 == *name)
                .cloned()
                .collect();
            let targets: Vec<Arc<Target>> = keys
                .iter()
                .filter_map(|key| state.targets.remove(key))
                .collect();
            tracing::info!(load_balancer = %name, instances = lb.instances.len(), "load balancer removed by the reload");
            let draining = &lb.config.connection_draining;
            if draining.enabled {
                tokio::spawn(drain_then_cut(targets, draining.timeout));
            } else {
                for target in targets {
                    target.cut();
                }
            }
        }
    }

    /// Applies one load balancer of the new configuration (added, or changed in place). Returns whether its
    /// health checks must start afresh.
    fn reload_load_balancer(
        &self,
        state: &mut State,
        new: &config::LoadBalancer,
        resolved: &HashMap<String, Vec<IpAddr>>,
        drains: &mut Vec<Drain>,
    ) -> bool {
        let State {
            load_balancers,
            checkers,
            ..
        } = state;
        let Some(lb) = load_balancers
            .iter_mut()
            .find(|lb| lb.config.name == new.name)
        else {
            tracing::info!(load_balancer = %new.name, "load balancer added by the reload");
            load_balancers.push(LoadBalancerState {
                config: new.clone(),
                instances: new
                    .instances
                    .iter()
                    .map(|instance| instance_state(new, instance, resolved))
                    .collect(),
            });
            return true;
        };
        let old = std::mem::take(&mut lb.instances);
        let (mut instances, changed) = reloaded_instances(new, &old, resolved);
        let gone: Vec<&InstanceState> = old
            .iter()
            .filter(|o| !instances.iter().any(|i| i.id == o.id))
            .collect();
        for gone in gone {
            if let Some(zones) = checkers.get(&new.name) {
                zones.place(&gone.id, &gone.zone, None);
            }
            if let Some(drain) = self.keep_draining(new, gone, &mut instances) {
                drains.push(drain);
            }
        }
        let traffic_ports = |lb: &config::LoadBalancer| {
            let mut ports: Vec<u16> = lb.listeners.iter().map(|l| l.instance_port).collect();
            ports.sort_unstable();
            ports.dedup();
            ports
        };
        let restart = lb.config.health_check != new.health_check
            || lb.config.availability_zones != new.availability_zones
            || traffic_ports(&lb.config) != traffic_ports(new);
        if restart {
            // New thresholds, target, zones or traffic ports (which decide the probe port): checks start afresh.
            checkers.remove(&new.name);
        } else if let Some(zones) = checkers.get(&new.name) {
            for instance in instances.iter().filter(|i| changed.contains(&i.id)) {
                zones.place(&instance.id, &instance.zone, probe_address(new, instance));
            }
        }
        lb.instances = instances;
        lb.config = new.clone();
        restart
    }

    /// An instance the file no longer lists, deregistered as the admin API would: with connection draining on it
    /// stays (InService, "deregistration in progress", no new requests) until its requests end or the timeout
    /// passes; with it off it is gone now, and publishing cuts its requests. One already draining goes on.
    fn keep_draining(
        &self,
        lb: &config::LoadBalancer,
        gone: &InstanceState,
        instances: &mut Vec<InstanceState>,
    ) -> Option<Drain> {
        if gone.draining.is_some() {
            instances.push(gone.clone());
            return None;
        }
        if !lb.connection_draining.enabled {
            return None;
        }
        let number = self.next_drain();
        let mut draining = gone.clone();
        draining.draining = Some(number);
        draining.health = InstanceHealth::DEREGISTRATION_IN_PROGRESS;
        instances.push(draining);
        Some(Drain {
            load_balancer: lb.name.clone(),
            instance_id: gone.id.to_string(),
            number,
            timeout: lb.connection_draining.timeout,
        })
    }

    /// Checks started afresh include every registered instance; a draining one is not checked (its state is the
    /// drain's until it ends).
    fn stop_checking_draining(&self) {
        // SIGHUP reload: control-plane lock, never taken on the request path (see `Control::state`).
        let state = self.lock();
        for lb in &state.load_balancers {
            let Some(zones) = state.checkers.get(&lb.config.name) else {
                continue;
            };
            for instance in lb.instances.iter().filter(|i| i.draining.is_some()) {
                zones.place(&instance.id, &instance.zone, None);
            }
        }
    }
}

/// The node listeners of the new configuration. One on the same socket as an old one takes over its shared
/// snapshot, so the connections open on that socket follow the new routes.
fn reloaded_listeners(
    config: &config::Config,
    old: &[NodeListener],
    bound: &HashMap<SocketKey, SocketAddr>,
) -> Vec<NodeListener> {
    let mut listeners = node_listeners(config);
    for listener in &mut listeners {
        let key = listener.socket_key();
        if let Some(before) = old.iter().find(|o| o.socket_key() == key) {
            listener.routes = before.routes.clone();
        }
        listener.bound = bound.get(&key).copied();
    }
    listeners
}

/// `resolved` completed with the running instances' addresses: a `host:port` instance registered after the server
/// resolved the reload's instances (and before the reload took the lock) was resolved by its registration.
fn with_resolved_of_running(
    state: &State,
    resolved: &HashMap<String, Vec<IpAddr>>,
) -> HashMap<String, Vec<IpAddr>> {
    let mut all = resolved.clone();
    for lb in &state.load_balancers {
        for instance in lb.instances.iter().filter(|i| !i.resolved.is_empty()) {
            all.entry(instance.id.to_string())
                .or_insert_with(|| instance.resolved.clone());
        }
    }
    all
}

/// Retires the targets of an instance that starts draining (no connection goes back to its pool; its idle ones
/// close) and returns them for the drain to wait on.
fn retire_targets(state: &State, load_balancer: &str, instance_id: &str) -> Vec<Arc<Target>> {
    let targets: Vec<Arc<Target>> = state
        .targets
        .iter()
        .filter(|(key, _)| *key.0 == *load_balancer && *key.1 == *instance_id)
        .map(|(_, target)| target.clone())
        .collect();
    for target in &targets {
        target.retire();
    }
    targets
}

/// The instances of a removed load balancer: no new requests (nothing routes to them any more), their requests in
/// flight finish until `timeout`, then whatever is left is cut (ELB's 504).
async fn drain_then_cut(targets: Vec<Arc<Target>>, timeout: Duration) {
    for target in &targets {
        target.retire();
    }
    let drained = async {
        for target in &targets {
            target.drained().await;
        }
    };
    if tokio::time::timeout(timeout, drained).await.is_err() {
        tracing::info!(
            "drain timeout of a removed load balancer passed; cutting the requests left"
        );
    }
    for target in targets {
        target.cut();
    }
}

/// The instances of a reloaded load balancer, and the ids of those that are new or changed (to check afresh). An
/// instance with the same id, zone, address and resolved addresses as before keeps its health, unless its zone
/// was or is not enabled, or it was draining (listing it again is a new registration: its drain ends).
fn reloaded_instances(
    updated: &config::LoadBalancer,
    old: &[InstanceState],
    resolved: &HashMap<String, Vec<IpAddr>>,
) -> (Vec<InstanceState>, Vec<Arc<str>>) {
    let mut instances = Vec::new();
    let mut changed = Vec::new();
    for instance in &updated.instances {
        let mut fresh = instance_state(updated, instance, resolved);
        let kept = old.iter().find(|o| {
            o.id == fresh.id
                && o.zone == fresh.zone
                && o.address == fresh.address
                && o.resolved == fresh.resolved
                && o.draining.is_none()
                && o.health != InstanceHealth::ZONE_NOT_ENABLED
        });
        match kept {
            Some(kept) if fresh.health != InstanceHealth::ZONE_NOT_ENABLED => {
                fresh.health = kept.health.clone()
            }
            Some(_) => {}
            None => changed.push(fresh.id.clone()),
        }
        instances.push(fresh);
    }
    (instances, changed)
}
