//! Reload: what a new configuration changes while elbe serves (SIGHUP, DESIGN.md "Shutdown and reload").
//!
//! Each existing load balancer takes the new instances and attributes (idle timeout, cross-zone, health check)
//! in place. Listeners and zones are bound sockets, so changing them (or adding a load balancer) needs a
//! restart: the load balancer keeps its old ones and the caller is told. An unchanged instance keeps its health
//! (no new "registration in progress", ELB-SPEC.md §2.1); new thresholds or a new target restart the checks.
//! The trade-off: a reload is all-or-nothing for what it can change, and silent about nothing: what it cannot
//! change is named, never half-applied.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::publish::probe_address;
use super::{instance_state, Control, InstanceState, State};
use crate::config;
use crate::control_plane::health::InstanceHealth;

impl Control {
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
            let (instances, changed) = reloaded_instances(&updated, &old, resolved);
            lb.instances = instances;
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
}

/// The instances of a reloaded load balancer, and the ids of those that are new or moved (to check afresh). An
/// instance with the same id, address and resolved addresses as before keeps its health.
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
        instances.push(fresh);
    }
    (instances, changed)
}
