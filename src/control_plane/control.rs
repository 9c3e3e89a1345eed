//! The control plane: the mutable state of every load balancer, and the snapshots it publishes.
//!
//! It owns the configuration, the registered instances, their health and resolved addresses. Whenever one of them
//! changes it rebuilds the [`NodeSnapshot`] of every node listener and swaps it in (DESIGN.md "The shape"). Health
//! checkers and DNS watchers report on channels; a task per channel applies their events here, so neither knows
//! the control plane. The state sits behind a `std::sync::Mutex`: it is taken by configuration, registration,
//! health and discovery events, never by the request path (which only `load()`s snapshots), and never held across
//! an `.await`. The trade-off: one lock for everything is simple and consistent (every publish sees one state),
//! and contention is no concern at control-plane rates.
//!
//! - [`publish`]: building and swapping the snapshots (candidates per ELB-SPEC.md §3, target and probe addresses,
//!   the pool reapers).
//! - [`registration`]: registering and deregistering instances (kept in the state store before they apply),
//!   health checks and passive failures.
//! - [`names`]: the DNS watchers of `host:port` instances and the task that applies their answers.
//! - [`reload`]: what a configuration reload changes in place.
//! - [`status`]: the `/status` document, `/healthz`, the pool gauges and request counts.
//! - [`changes`]: the ring of recent instance state changes the status page shows.
//! - [`members`]: the cluster's members and their views of instance health (cluster mode), and how an instance's
//!   health is reported across them.
#![allow(clippy::disallowed_types)] // the control plane's one lock; see above.

pub(crate) mod changes;
mod draining;
pub(crate) mod members;
mod names;
mod publish;
mod registration;
mod reload;
pub(crate) mod status;

pub(crate) use changes::StateChange;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::{self, InstanceAddress, Limits};
use crate::control_plane::discovery::{Discovery, DiscoveryError};
use crate::control_plane::health::Checker;
use crate::control_plane::store::{MemoryStore, Records, StateStore, StoreError};
use crate::data_plane::back_end::target::Target;
use crate::data_plane::snapshot::{NodeSnapshot, SharedNodeSnapshot};
use crate::observability::metrics::Metrics;

pub(crate) use crate::control_plane::health::InstanceHealth;

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
    /// Deregistered with connection draining on: no new requests while its requests finish. The number tells
    /// one drain from another (a re-registration ends the drain; a later deregistration starts a new one).
    draining: Option<u64>,
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
    /// DNS watchers of `host:port` instances; they stop when the state goes.
    watchers: names::Watchers,
    /// The secret AWSELB cookies are authenticated with where a load balancer configures no `stickiness_key`:
    /// random per process until the server hands over the one kept in `state_dir` ([`Control::use_stickiness_secret`]).
    stickiness_secret: Vec<u8>,
    /// The last instance state changes, for the status page (`control/changes`).
    changes: changes::Changes,
    /// The state store's records this process has applied, laid on top of the file at start and on reload.
    records: Records,
}

/// The control plane.
pub struct Control {
    /// The one lock of elbe, fine here: taken by configuration, registration, health and discovery events and by
    /// the admin API, never by the request path (which reads the published snapshots), never across an `.await`.
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    discovery: Arc<Discovery>,
    /// Where registrations are kept before they apply (DESIGN.md "The state store").
    store: Arc<dyn StateStore>,
    /// Numbers the drains of deregistered instances (see `control/draining.rs`).
    drains: std::sync::atomic::AtomicU64,
    /// Who may change state now: registrations share it (so concurrent ones still share a store commit);
    /// reloads and ELB API changes take it whole, so none of them plans from a state a registration is changing
    /// (a DeleteLoadBalancer never misses a registration written meanwhile).
    gate: Arc<tokio::sync::Semaphore>,
    /// The zones whose nodes this process runs (the health checkers check every enabled zone, these or not).
    served: ServedZones,
    /// The cluster's members and their health views (empty outside cluster mode), and the signal every publish
    /// sends the cluster's tasks.
    members: members::Members,
}

/// The gate's permits: one per registration in flight, all of them for a reload or an API change.
const GATE_PERMITS: u32 = 1 << 16;

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
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// ELB's `LoadBalancerNotFound` (ELB-SPEC §13): no load balancer of this name.
    #[error("There is no ACTIVE Load Balancer named '{0}'")]
    LoadBalancerNotFound(String),
    /// A `host:port` instance being registered does not resolve.
    #[error("{0}")]
    Resolve(#[from] DiscoveryError),
    /// The change could not be kept in the state store: nothing changed.
    #[error("the change was not made: {0}")]
    Store(#[from] StoreError),
    /// The task making the change stopped before it answered (elbe is shutting down).
    #[error("the change was interrupted: elbe is shutting down")]
    Interrupted,
}

impl Control {
    /// Builds the state for a validated configuration; `resolved` holds the addresses of `host:port` instances.
    /// Registrations are kept in memory only (`Control::with_store` keeps them in a state store).
    pub fn new(
        config: &config::Config,
        resolved: &HashMap<String, Vec<IpAddr>>,
        metrics: Arc<Metrics>,
        discovery: Arc<Discovery>,
    ) -> Self {
        let store = Arc::new(MemoryStore::default());
        Self::with_store(
            config,
            resolved,
            metrics,
            discovery,
            store,
            Records::default(),
        )
    }

    /// Builds the state for a validated configuration with `records` (what `store` holds) laid on top, keeping
    /// every registration made from now on in `store` before it applies. `resolved` holds the addresses of
    /// `host:port` instances, the store's included.
    pub(crate) fn with_store(
        config: &config::Config,
        resolved: &HashMap<String, Vec<IpAddr>>,
        metrics: Arc<Metrics>,
        discovery: Arc<Discovery>,
        store: Arc<dyn StateStore>,
        records: Records,
    ) -> Self {
        let overlaid = records.overlay(config);
        overlaid.warn_ignored();
        let config = &overlaid.config;
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
        let control = Control {
            state: Mutex::new(State {
                limits: config.limits.clone(),
                dns: config.dns.clone(),
                load_balancers,
                listeners: node_listeners(config),
                targets: HashMap::new(),
                generation: 1,
                last_reload_error: None,
                checkers: HashMap::new(),
                watchers: names::Watchers::default(),
                stickiness_secret: crate::control_plane::state_dir::random_secret(),
                changes: changes::Changes::default(),
                records,
            }),
            metrics,
            discovery,
            store,
            drains: std::sync::atomic::AtomicU64::new(0),
            gate: Arc::new(tokio::sync::Semaphore::new(GATE_PERMITS as usize)),
            served: ServedZones::of(config),
            members: members::Members::default(),
        };
        // start, bind and reload: control-plane lock, never taken on the request path (see `Control::state`).
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
        // start, bind and reload: control-plane lock, never taken on the request path (see `Control::state`).
        f(&mut self.lock().listeners)
    }

    /// Authenticates AWSELB cookies with `secret` from now on (the one kept in `state_dir`, so cookies survive a
    /// restart), and republishes.
    pub fn use_stickiness_secret(&self, secret: Vec<u8>) {
        // start, bind and reload: control-plane lock, never taken on the request path (see `Control::state`).
        let mut state = self.lock();
        state.stickiness_secret = secret;
        self.publish(&mut state);
    }

    /// The resolver for `host:port` instances.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// The whole gate: no registration, reload or API change runs until the permit is dropped. The gate is never
    /// closed, so waiting cannot fail.
    pub(crate) async fn exclusive(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.gate
            .clone()
            .acquire_many_owned(GATE_PERMITS)
            .await
            .ok()
    }

    /// A share of the gate, for one registration.
    async fn shared(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.gate.clone().acquire_owned().await.ok()
    }

    /// Where changes are kept before they apply.
    pub(crate) fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// The state store's records this process has applied (a copy, for an API change to plan against).
    pub(crate) fn records(&self) -> Records {
        // ELB API changes and reloads: control-plane lock, never taken on the request path (see `Control::state`).
        self.lock().records.clone()
    }

    /// The `ConnectionDraining` timeout of every running load balancer that has it on, by name: how long a
    /// listener it loses lets its connections finish.
    pub(crate) fn drain_deadlines(&self) -> HashMap<String, std::time::Duration> {
        // reloads and ELB API changes: control-plane lock, never taken on the request path (see `Control::state`).
        self.lock()
            .load_balancers
            .iter()
            .filter(|lb| lb.config.connection_draining.enabled)
            .map(|lb| {
                (
                    lb.config.name.clone(),
                    lb.config.connection_draining.timeout,
                )
            })
            .collect()
    }

    /// The addresses every running `host:port` instance resolved to, by instance id.
    pub(crate) fn resolved_now(&self) -> HashMap<String, Vec<IpAddr>> {
        // ELB API changes: control-plane lock, never taken on the request path (see `Control::state`).
        let state = self.lock();
        let mut resolved = HashMap::new();
        for lb in &state.load_balancers {
            for instance in lb.instances.iter().filter(|i| !i.resolved.is_empty()) {
                resolved.insert(instance.id.to_string(), instance.resolved.clone());
            }
        }
        resolved
    }

    /// The zones whose nodes this process runs.
    pub(crate) fn served(&self) -> &ServedZones {
        &self.served
    }

    /// Changes the records held (a batch the store acknowledged); the next reload lays them on the file.
    pub(crate) fn take_records(&self, f: impl FnOnce(&mut Records)) {
        // ELB API changes: control-plane lock, never taken on the request path (see `Control::state`).
        f(&mut self.lock().records);
    }
}

/// The zones whose nodes this process runs: every zone, or in cluster mode only `[cluster] zones` (DESIGN.md
/// "The state store": the other zones' nodes run in other processes). The one place that decides it: node
/// listeners and the sockets bound for them ask here. (Health checks are not limited by it: every process checks
/// every enabled zone's instances, as every ELB node does, see `control/registration`.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServedZones(Option<Arc<[String]>>);

impl ServedZones {
    /// What `config` says: `[cluster] zones`, or every zone without `[cluster]`.
    pub(crate) fn of(config: &config::Config) -> ServedZones {
        ServedZones(
            config
                .cluster
                .as_ref()
                .map(|cluster| cluster.zones.as_slice().into()),
        )
    }

    /// Whether this process runs the nodes of `zone`.
    pub(crate) fn serves(&self, zone: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|zones| zones.iter().any(|z| z == zone))
    }
}

/// One node listener per (load balancer, enabled zone this process serves, listener), each with an empty
/// snapshot until the first publish.
fn node_listeners(config: &config::Config) -> Vec<NodeListener> {
    let served = ServedZones::of(config);
    config
        .load_balancers
        .iter()
        .flat_map(|lb| {
            let served = served.clone();
            lb.availability_zones
                .iter()
                .filter(move |zone| served.serves(&zone.name))
                .flat_map(move |zone| {
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
        .collect()
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
        draining: None,
    }
}
