//! Starting, reloading and stopping elbe: the control plane, every node's listeners, the admin listener and the
//! DNS responder.
//!
//! [`start`] binds everything (port 0 means any free port; the bound addresses are read back and reported) and
//! returns a [`Server`] handle; [`start_durable`] does the same with the registrations made at run time kept in
//! the state store under `state_dir` (`elbe run`); [`Server::reload_from`] applies a new configuration file by swapping snapshots
//! (`server/reload`); [`Server::shutdown`] stops accepting, lets in-flight requests finish within the drain
//! deadline, then stops. `elbe run`, the demo and the integration tests all go through these functions.
//!
//! - `server/listeners`: the bound node listeners, one per socket with its kind, bound before they are served.
//! - `server/reload`: what a reload checks, stages and commits.
//! - `server/access_logs`: the access-log writers, one per destination.
//! - `server/cluster` (feature `cluster`): cluster mode, the etcd store and the watch that applies other
//!   processes' changes.
//! - `server/errors`: why a start failed or a reload was refused.
//! - `server/state`: the state store seen from outside a running elbe (`elbe state show`, `elbe state reset`).
#![allow(clippy::disallowed_types)] // the server's bookkeeping lock; see `Server::live`.

mod access_logs;
#[cfg(feature = "cluster")]
mod cluster;
mod errors;
mod listeners;
mod reload;
mod state;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::{Config, InstanceAddress};
use crate::control_plane::admin::{self, Admin};
use crate::control_plane::control::Control;
use crate::control_plane::discovery::Discovery;
use crate::control_plane::state_dir;
use crate::control_plane::store::{EmbeddedStore, MemoryStore, Records, StateStore};
use crate::data_plane::node::Connections;
use crate::data_plane::passive::PassiveFailure;
use crate::observability::metrics::Metrics;
use crate::shutdown::{self, Tracker, Trigger};

use access_logs::AccessLogs;
use listeners::{Listeners, Serving};

pub use crate::control_plane::control::changes::StateChange;
pub use crate::control_plane::control::members::{Member, MemberNode, MemberStatus};
pub use crate::control_plane::control::status::{
    ConfigStatus, DnsStatus, InstanceStatus, ListenerStatus, LoadBalancerStatus, NodeStatus,
    Status, Unhealthy, ZoneTraffic,
};
pub use crate::control_plane::discovery::DiscoveryError;
pub use crate::control_plane::store::StoreError;
pub use crate::data_plane::tls::TlsError;
pub use errors::{ReloadError, StartError, UnresolvedInstance};
pub use listeners::BoundListener;
pub use state::{reset_state, show_state};

/// A running elbe.
pub struct Server {
    /// What reloads and API changes work on (shared with the admin listener, which applies the ELB API's changes).
    core: Arc<Core>,
    admin_address: SocketAddr,
    trigger: Trigger,
    tracker: Tracker,
    /// The admin and DNS tasks.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The part of a running elbe that a reload (SIGHUP) and a change through the ELB API both change: one at a
/// time, through the same stage-then-commit steps (`server/reload`).
pub(crate) struct Core {
    /// The DNS responder's address and the zone it answers from, when configured.
    dns: Option<(SocketAddr, crate::dns::SharedZone)>,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    connections: Arc<Connections>,
    /// Where listeners report instances failing under traffic (passive health checks).
    passive: tokio::sync::mpsc::UnboundedSender<PassiveFailure>,
    /// What a reload may not change (the process-wide settings), as the running configuration has them.
    fixed: reload::Fixed,
    /// The bound listeners, the access-log writers and the file they serve. A lock is fine here: it is taken by
    /// start, reload, API changes, shutdown and [`Server::listeners`], never by the request path, never across
    /// an `.await`.
    live: Mutex<Live>,
    shutdown_grace: Duration,
}

/// What the server changes as it reloads.
struct Live {
    listeners: Listeners,
    access_logs: AccessLogs,
    /// The configuration file as last applied (at start, or by the last reload that succeeded): what the
    /// store's records are laid on when the ELB API changes something.
    file: Arc<Config>,
}

/// Resolves `host:port` instances at start and on reload (their watchers re-resolve them at their TTL
/// afterwards), but those in `known` (already resolved and followed by the running state).
async fn resolve_instances(
    config: &Config,
    discovery: &Discovery,
    known: &HashMap<String, Vec<IpAddr>>,
) -> Result<HashMap<String, Vec<IpAddr>>, UnresolvedInstance> {
    let mut resolved = HashMap::new();
    for lb in &config.load_balancers {
        for instance in &lb.instances {
            if known.contains_key(&instance.id) {
                continue;
            }
            if let InstanceAddress::Host { host, .. } = &instance.address {
                let (ips, _) =
                    discovery
                        .resolve(host)
                        .await
                        .map_err(|source| UnresolvedInstance {
                            instance: instance.id.clone(),
                            host: host.clone(),
                            source,
                        })?;
                resolved.insert(instance.id.clone(), ips);
            }
        }
    }
    Ok(resolved)
}

/// Checks what validating the file cannot: every HTTPS listener's certificates load and its policy is known
/// (`elbe check`). `start` and reload run the same checks.
pub fn check(config: &Config) -> Result<(), StartError> {
    listeners::tls_acceptors(config).map(|_| ())
}

/// Starts elbe for a validated configuration, keeping the registrations made while it runs in memory only: for
/// an elbe run in-process (the harness, tests, the demo), which is not restarted and may share its working folder
/// with others. [`start_durable`] keeps them on disk.
pub async fn start(config: Config) -> Result<Server, StartError> {
    start_with(config, Arc::new(MemoryStore::default()), Records::default()).await
}

/// Starts elbe as `elbe run` does (DESIGN.md "The state store"): the state store under `state_dir` is opened
/// (one elbe per `state_dir`: [`StartError::Store`] with [`StoreError::Locked`] otherwise), its records are laid
/// on top of the file's load balancers, and every registration made from now on is on disk before it is
/// acknowledged, so it survives `kill -9`.
///
/// With `[cluster]` it starts in cluster mode instead ([`start_cluster`]).
pub async fn start_durable(config: Config) -> Result<Server, StartError> {
    if config.cluster.is_some() {
        return start_cluster(config).await;
    }
    let store = EmbeddedStore::open(&config.state_dir).await?;
    let contents = store.load().await?;
    tracing::info!(path = %store.path().display(), records = contents.records.len(),
        revision = contents.revision.0, "state store opened");
    start_with(config, Arc::new(store), Records::from_contents(contents)).await
}

/// Starts elbe in cluster mode (`[cluster]`, DESIGN.md "The state store"): the state is etcd's, loaded whole at
/// start (etcd unreachable: [`StartError::ClusterStore`]) and followed by a watch, so every process of the
/// cluster applies every change; this process binds the nodes of `[cluster] zones` only (`server/cluster`).
#[cfg(feature = "cluster")]
pub async fn start_cluster(config: Config) -> Result<Server, StartError> {
    cluster::start(config).await
}

/// Without the `cluster` feature: [`StartError::ClusterNotBuilt`], which says how to build it.
#[cfg(not(feature = "cluster"))]
pub async fn start_cluster(_config: Config) -> Result<Server, StartError> {
    Err(StartError::ClusterNotBuilt)
}

async fn start_with(
    config: Config,
    store: Arc<dyn StateStore>,
    records: Records,
) -> Result<Server, StartError> {
    let discovery = Arc::new(Discovery::new(&config.discovery).map_err(StartError::Discovery)?);
    // What runs: the file with the store's records on top (load balancers created through the API included).
    let running = records.overlay(&config).config;
    let resolved = resolve_instances(&running, &discovery, &HashMap::new()).await?;
    let metrics = Arc::new(Metrics::new());
    let control = Arc::new(Control::with_store(
        &config,
        &resolved,
        metrics.clone(),
        discovery,
        store,
        records,
    ));
    if let Some(secret) = state_dir::kept_stickiness_secret(&running)? {
        control.use_stickiness_secret(secret);
    }
    let tls = listeners::tls_acceptors(&running)?;
    let mut access_logs = AccessLogs::default();
    let logs = access_logs.stage(&running)?;

    // Bind every listener first, so a bind failure leaves nothing half-started.
    let mut listeners = Listeners::default();
    let fresh = listeners.bind_new(&running, control.served())?;
    let backlog = crate::data_plane::node::listen_backlog(config.limits.listen_backlog);
    let (admin_socket, admin_address) = listeners::bind(config.admin.listen, "admin", backlog)?;
    let dns = match &config.dns {
        Some(dns) => {
            Some(
                crate::dns::bind(dns.listen)
                    .await
                    .map_err(|source| StartError::Bind {
                        address: dns.listen,
                        what: "DNS responder".into(),
                        source,
                    })?,
            )
        }
        None => None,
    };

    control.start_health_checks();
    control.watch_names();
    let passive = passive_reports(&control);
    let tracker = Tracker::new();
    let connections = Arc::new(Connections::new(&config.limits, tracker.clone()));
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = Vec::new();

    let addresses = listeners.addresses(&fresh);
    let nodes = control.with_listeners(|nodes| {
        for node in nodes.iter_mut() {
            node.bound = addresses.get(&node.socket_key()).copied();
        }
        listeners::nodes(nodes)
    });
    let serving = Serving {
        config: &running,
        metrics: &metrics,
        logs: &logs.by_load_balancer,
        tls: &tls,
        passive: &passive,
        connections: &connections,
        shutdown_grace: config.limits.shutdown_grace,
        drain_deadlines: &HashMap::new(),
    };
    listeners.commit(&nodes, fresh, &serving);
    access_logs.commit(logs);

    // Every load balancer's DNS name, in the log whether or not the responder runs (`/status` shows it too).
    let zone = crate::dns::Zone::of(&running);
    for (name, nodes) in &zone.names {
        tracing::info!(dns_name = %name, ?nodes, "load balancer DNS name");
    }
    let dns = dns.map(|(udp, tcp, bound)| {
        let zone = crate::dns::SharedZone::new(zone);
        tracing::info!(address = %bound, "DNS responder listening (UDP and TCP)");
        tasks.push(tokio::spawn(crate::dns::serve_udp(
            udp,
            zone.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(crate::dns::serve_tcp(
            tcp,
            zone.clone(),
            shutdown.clone(),
        )));
        (bound, zone)
    });

    let core = Arc::new(Core {
        dns,
        control: control.clone(),
        metrics: metrics.clone(),
        connections,
        passive,
        fixed: reload::Fixed::of(&config),
        live: Mutex::new(Live {
            listeners,
            access_logs,
            file: Arc::new(config),
        }),
        shutdown_grace: running.limits.shutdown_grace,
    });
    let weak = Arc::downgrade(&core);
    let changes: std::sync::Weak<dyn crate::control_plane::api::Apply> = weak;
    let admin = Arc::new(Admin {
        control,
        metrics,
        dns_address: core.dns.as_ref().map(|(address, _)| *address),
        access_logs: core.live().access_logs.logs(),
        api: crate::control_plane::api::Api::new(&running, changes),
    });
    tracing::info!(address = %admin_address, "admin listening (/status, /healthz, /metrics, the ELB API at POST /)");
    tasks.push(tokio::spawn(admin::serve(admin_socket, admin, shutdown)));

    Ok(Server {
        core,
        admin_address,
        trigger,
        tracker,
        tasks,
    })
}

/// The task that applies passive health-check failures, and where listeners send them.
fn passive_reports(control: &Arc<Control>) -> tokio::sync::mpsc::UnboundedSender<PassiveFailure> {
    let (passive_events, mut passive_failures) = tokio::sync::mpsc::unbounded_channel();
    let control = Arc::downgrade(control);
    tokio::spawn(async move {
        while let Some(failure) = passive_failures.recv().await {
            let Some(control) = control.upgrade() else {
                return;
            };
            control.apply_passive_failure(failure);
        }
    });
    passive_events
}

impl Core {
    /// Every use of the bookkeeping lock goes through here (see [`Core::live`] for why a lock is fine).
    fn live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding it leaves the listeners as the last commit left them; keep serving.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Server {
    /// The bookkeeping lock (see [`Core::live`]).
    fn live(&self) -> MutexGuard<'_, Live> {
        self.core.live()
    }

    /// The `/status` document: load balancers, DNS names, nodes, listeners, instance health as
    /// DescribeInstanceHealth says it.
    pub fn status(&self) -> Status {
        self.core.control.status(self.dns_address())
    }

    /// Whether this process can serve (what `/healthz` answers): every listener accepting and every load balancer
    /// with an InService instance its nodes may use.
    pub fn healthz(&self) -> Result<(), Unhealthy> {
        self.core.control.healthz()
    }

    /// The admin listener's bound address (`/status`, `/healthz`, `/metrics`, registration), read back after port 0.
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// The DNS responder's address (UDP and TCP), when `[dns]` is configured.
    pub fn dns_address(&self) -> Option<SocketAddr> {
        self.core.dns.as_ref().map(|(address, _)| *address)
    }

    /// Every bound node listener, in configuration order (as of the last reload).
    pub fn listeners(&self) -> Vec<BoundListener> {
        self.live().listeners.infos()
    }

    /// The bound address of a load balancer's (first) listener in a zone.
    pub fn listener(&self, load_balancer: &str, zone: &str) -> Option<SocketAddr> {
        self.listeners()
            .into_iter()
            .find(|l| l.load_balancer == load_balancer && l.zone == zone)
            .map(|l| l.address)
    }

    /// The control plane: configuration, registrations, health; what `/status` and the admin API read and change.
    pub fn control(&self) -> &Arc<Control> {
        &self.core.control
    }

    /// The process's metrics registry (ELB's CloudWatch metrics as Prometheus series, ELB-SPEC §10).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.core.metrics
    }

    /// Client connections open now.
    pub fn live_connections(&self) -> usize {
        self.core.connections.live()
    }

    /// Stops accepting, lets in-flight requests finish within the shutdown grace, then stops every task.
    /// Returns whether every connection finished in time.
    pub async fn shutdown(self) -> bool {
        self.trigger.trigger();
        self.live().listeners.drain_all();
        self.tracker.close();
        let drained = tokio::time::timeout(self.core.shutdown_grace, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                live = self.tracker.len(),
                "shutdown grace ran out; closing remaining connections"
            );
        }
        self.live().listeners.cut_all();
        for task in &self.tasks {
            task.abort();
        }
        let writers = self.live().access_logs.take_handles();
        for writer in writers {
            writer.flush_and_stop().await;
        }
        drained
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> bool {
        signal.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        self.shutdown().await
    }
}
