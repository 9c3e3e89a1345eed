//! Registration and health: what changes an instance's place in rotation while elbe serves.
//!
//! Instances are registered and deregistered at run time (the admin API, the ELB API, the test harness: all
//! through [`Control::register`] and [`Control::deregister`]) as RegisterInstancesWithLoadBalancer does: a new
//! instance is out of service until its first passing check (ELB-SPEC.md §2.1), registering it again changes
//! nothing. Every registration and deregistration is written to the state store first (DESIGN.md "The state
//! store"): the call returns Ok only once the store has it on disk, and a write that fails returns the error with
//! the running state unchanged. The running state then takes the record at its revision, unless a newer write of
//! the same instance got there first (`store::Records::take`), so concurrent calls end as the store has them.
//! Health checkers report on a channel that a task per load balancer drains into [`Control::apply_health`];
//! passive failures (real traffic) arrive through [`Control::apply_passive_failure`]. Every change publishes at
//! once. The trade-off: a health event for an instance that was re-registered elsewhere meanwhile is dropped by
//! comparing probe addresses, rather than by versioning each registration.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::publish::probe_address;
use super::{
    find_lb, instance_state, Control, ControlError, InstanceState, LoadBalancerState, State,
    ZoneCheckers,
};
use crate::config::{self, InstanceAddress};
use crate::control_plane::health::{Checker, HealthEvent, InstanceHealth};
use crate::control_plane::store::{Change, Record, Registration, Versioned};
use crate::data_plane::passive::PassiveFailure;

impl Control {
    /// Registers an instance at run time (or replaces the registration with the same id), kept in the state
    /// store before it applies. A `host:port` address is resolved first and then followed at its TTL (DNS
    /// discovery). The admin API, the ELB API and the test harness all come through here.
    pub async fn register(
        self: &Arc<Self>,
        load_balancer: &str,
        instance: config::Instance,
    ) -> Result<(), ControlError> {
        self.register_all(load_balancer, vec![instance]).await
    }

    /// Registers several instances as one change (RegisterInstancesWithLoadBalancer with several ids): every
    /// `host:port` resolves first, then all the records are written in one batch, so either all of them are
    /// registered or (a name that does not resolve, a failed write) none is. It runs in a task of its own, so a
    /// caller that goes away (a client that disconnects) cannot leave a write kept but not applied.
    pub async fn register_all(
        self: &Arc<Self>,
        load_balancer: &str,
        instances: Vec<config::Instance>,
    ) -> Result<(), ControlError> {
        let (this, load_balancer) = (self.clone(), load_balancer.to_owned());
        tokio::spawn(async move { this.register_now(&load_balancer, instances).await })
            .await
            .unwrap_or(Err(ControlError::Interrupted))
    }

    async fn register_now(
        self: &Arc<Self>,
        load_balancer: &str,
        instances: Vec<config::Instance>,
    ) -> Result<(), ControlError> {
        let mut resolved = Vec::with_capacity(instances.len());
        for instance in &instances {
            resolved.push(match &instance.address {
                InstanceAddress::Host { host, .. } => self.discovery.resolve(host).await?.0,
                _ => Vec::new(),
            });
        }
        let _share = self.shared().await;
        let records = instances
            .iter()
            .map(|instance| Record::Registration(Registration::registered(load_balancer, instance)))
            .collect();
        let kept = self.keep(load_balancer, records).await?;
        let mut result = Ok(());
        for ((instance, resolved), kept) in instances.into_iter().zip(resolved).zip(kept) {
            // Every record of the batch is taken, as the store took them all.
            result = result.and(self.register_resolved(load_balancer, instance, resolved, kept));
        }
        self.watch_names();
        result
    }

    /// Deregisters an instance (DeregisterInstancesFromLoadBalancer), kept in the state store before it applies;
    /// returns whether it was registered (one that was not changes nothing and is not written).
    pub async fn deregister(
        self: &Arc<Self>,
        load_balancer: &str,
        instance_id: &str,
    ) -> Result<bool, ControlError> {
        let ids = [instance_id.to_owned()];
        Ok(self.deregister_all(load_balancer, &ids).await? == 1)
    }

    /// Deregisters several instances as one change (one batch in the state store); those not registered are
    /// skipped. Returns how many were registered. Runs in a task of its own, as [`Control::register_all`].
    pub async fn deregister_all(
        self: &Arc<Self>,
        load_balancer: &str,
        instance_ids: &[String],
    ) -> Result<usize, ControlError> {
        let (this, load_balancer, ids) = (
            self.clone(),
            load_balancer.to_owned(),
            instance_ids.to_vec(),
        );
        tokio::spawn(async move { this.deregister_now(&load_balancer, &ids).await })
            .await
            .unwrap_or(Err(ControlError::Interrupted))
    }

    pub(super) async fn deregister_now(
        self: &Arc<Self>,
        load_balancer: &str,
        instance_ids: &[String],
    ) -> Result<usize, ControlError> {
        let _share = self.shared().await;
        let registered: Vec<&String> = {
            // admin API deregistration: control-plane lock, never taken on the request path (see `Control::state`).
            let mut state = self.lock();
            let lb = find_lb(&mut state, load_balancer)?;
            instance_ids
                .iter()
                .filter(|id| lb.instances.iter().any(|i| &*i.id == id.as_str()))
                .collect()
        };
        if registered.is_empty() {
            return Ok(0);
        }
        let records = registered
            .iter()
            .map(|id| Record::Registration(Registration::deregistered(load_balancer, id)))
            .collect();
        let kept = self.keep(load_balancer, records).await?;
        let mut result = Ok(registered.len());
        for (id, kept) in registered.iter().zip(kept) {
            if let Err(error) = self.deregister_kept(load_balancer, id, kept) {
                result = Err(error);
            }
        }
        result
    }

    /// Writes `records` to the state store in one batch (Ok: on disk), but those the store holds already, and
    /// returns each with its revision, for the running state to take. Refuses a load balancer the running state
    /// does not have before anything is written.
    async fn keep(
        &self,
        load_balancer: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Versioned>, ControlError> {
        let held: Vec<Option<Versioned>> = {
            // admin API registration: control-plane lock, never taken on the request path (see `Control::state`).
            let mut state = self.lock();
            find_lb(&mut state, load_balancer)?;
            records
                .iter()
                .map(|record| {
                    state
                        .records
                        .get(&record.key())
                        .filter(|held| held.record == *record)
                        .cloned()
                })
                .collect()
        };
        let new: Vec<Change> = records
            .iter()
            .zip(&held)
            .filter(|(_, held)| held.is_none())
            .map(|(record, _)| Change::Put(record.clone()))
            .collect();
        let revision = if new.is_empty() {
            None
        } else {
            Some(self.store.apply(new).await?)
        };
        Ok(records
            .into_iter()
            .zip(held)
            .map(|(record, held)| {
                held.unwrap_or_else(|| Versioned {
                    // Some whenever a record was not held: it is in `new`.
                    revision: revision.unwrap_or_default(),
                    record,
                })
            })
            .collect())
    }

    /// Registers an instance whose addresses are already resolved and whose record is kept, unless a newer
    /// write of the same instance was applied meanwhile.
    fn register_resolved(
        &self,
        load_balancer: &str,
        instance: config::Instance,
        resolved: Vec<IpAddr>,
        kept: Versioned,
    ) -> Result<(), ControlError> {
        // admin API registration: control-plane lock, never taken on the request path (see `Control::state`).
        let mut state = self.lock();
        // Taken even if the load balancer went meanwhile (a reload): the record is kept, as the store has it.
        if !state.records.take(kept) {
            return Ok(()); // a newer registration or deregistration of this instance was applied first
        }
        let lb = find_lb(&mut state, load_balancer)?;
        let mut new = instance_state(
            &lb.config,
            &instance,
            &HashMap::from([(instance.id.clone(), resolved)]),
        );
        // A draining instance registered again is a new registration: its drain ends.
        let unchanged = lb.instances.iter().find(|i| {
            i.id == new.id
                && i.draining.is_none()
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

    /// Starts the health checkers of every load balancer that has none (one per enabled zone); their results
    /// come back through [`Control::apply_health`]. Needs a tokio runtime.
    pub fn start_health_checks(self: &Arc<Self>) {
        // start and reload: control-plane lock, never taken on the request path (see `Control::state`).
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
            // Every enabled zone, those this process runs no node of included: as each ELB node checks every
            // instance, so a node routes across zones by its own checks, and in cluster mode every member has a
            // view of every instance (`control/members`: the worst one is reported).
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
                // Every event queued by now is applied under one lock and one publish: at start, or when many
                // instances change at once, a publish per verdict would rebuild every snapshot n times.
                let mut events = Vec::new();
                while results.recv_many(&mut events, HEALTH_EVENT_BATCH).await > 0 {
                    let Some(control) = control.upgrade() else {
                        return;
                    };
                    control.apply_health(&name, events.drain(..));
                }
            });
            checkers.insert(lb.config.name.clone(), zones);
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
        // the test harness's forced health: control-plane lock, never taken on the request path (see
        // `Control::state`).
        let mut state = self.lock();
        let Ok(lb) = find_lb(&mut state, load_balancer) else {
            return false;
        };
        let Some(instance) = lb.instances.iter_mut().find(|i| &*i.id == instance_id) else {
            return false;
        };
        let previous = std::mem::replace(&mut instance.health, health.clone());
        let id = instance.id.clone();
        state.changes.record(load_balancer, &id, &previous, &health);
        self.publish(&mut state);
        true
    }

    /// Health checkers reported state changes: each is applied in order, then every snapshot is published once.
    pub fn apply_health(&self, load_balancer: &str, events: impl IntoIterator<Item = HealthEvent>) {
        // a health checker's events, drained by the load balancer's task: control-plane lock, never taken on the
        // request path (see `Control::state`).
        let mut state = self.lock();
        let mut changed = false;
        let mut index = InstanceIndex::default();
        for event in events {
            changed |= apply_health_event(&mut state, load_balancer, event, &mut index);
        }
        if changed {
            self.publish(&mut state);
        }
    }

    /// A connection to an instance failed during real traffic (passive health checks): the instance leaves
    /// rotation at once and its active checks start afresh, so its next passing check brings it back.
    pub fn apply_passive_failure(&self, failure: PassiveFailure) {
        // a passive failure, reported on a channel and drained off the request path: control-plane lock (see
        // `Control::state`).
        let mut state = self.lock();
        let State {
            load_balancers,
            checkers,
            changes,
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
        let previous = std::mem::replace(
            &mut instance.health,
            InstanceHealth::FAILED_UNHEALTHY_THRESHOLD,
        );
        changes.record(
            &config.name,
            &instance.id,
            &previous,
            &InstanceHealth::FAILED_UNHEALTHY_THRESHOLD,
        );
        if let (Some(zones), Some(addr)) =
            (checkers.get(&config.name), probe_address(config, instance))
        {
            zones.place(&instance.id, &instance.zone, Some(addr));
        }
        self.publish(&mut state);
    }

    /// Moves an instance's health check to `probe` (or stops it with `None`), when its load balancer is checked.
    pub(super) fn sync_checker(
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
}

/// Health events applied under one lock and one publish, at most (a bound on how long the lock is held).
const HEALTH_EVENT_BATCH: usize = 1024;

/// One health checker's verdict, applied to the instance it names; false when it no longer applies (the load
/// balancer or instance is gone, the instance was re-registered at another address, or its zone is disabled).
fn apply_health_event(
    state: &mut State,
    load_balancer: &str,
    event: HealthEvent,
    index: &mut InstanceIndex,
) -> bool {
    let Ok(lb) = find_lb(state, load_balancer) else {
        return false;
    };
    let LoadBalancerState { config, instances } = lb;
    let Some(instance) = index.find(instances, &event.instance_id) else {
        return false; // deregistered meanwhile
    };
    if probe_address(config, instance) != Some(event.addr) {
        return false; // re-registered at another address meanwhile
    }
    if instance.health == InstanceHealth::ZONE_NOT_ENABLED {
        return false;
    }
    tracing::info!(%load_balancer, instance = %event.instance_id, state = event.health.state, reason = event.health.description, "instance health changed");
    let previous = std::mem::replace(&mut instance.health, event.health.clone());
    let id = instance.id.clone();
    state
        .changes
        .record(load_balancer, &id, &previous, &event.health);
    true
}

/// Where each instance of one load balancer is in its list, for one batch of health events: the list cannot
/// change while the batch holds the lock. One event (an instance changing, the usual case) scans the list; from
/// the second on they are looked up, so a batch of 1,024 over 10,000 instances (at start, or when a zone's
/// instances fail together) is not up to ten million comparisons under the control plane's lock.
#[derive(Default)]
struct InstanceIndex {
    lookups: usize,
    positions: HashMap<Arc<str>, usize>,
}

impl InstanceIndex {
    fn find<'a>(
        &mut self,
        instances: &'a mut [InstanceState],
        id: &str,
    ) -> Option<&'a mut InstanceState> {
        self.lookups += 1;
        if self.lookups == 1 {
            return instances.iter_mut().find(|i| *i.id == *id);
        }
        if self.positions.is_empty() {
            self.positions = instances
                .iter()
                .enumerate()
                .map(|(n, instance)| (instance.id.clone(), n))
                .collect();
        }
        let n = *self.positions.get(id)?;
        instances.get_mut(n)
    }
}

#[cfg(test)]
mod tests;
