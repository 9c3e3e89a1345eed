//! Reload (SIGHUP, [`Server::reload_from`]): a new configuration file applied while elbe serves, all or nothing.
//!
//! Everything that can fail happens first and changes nothing: the file parses and validates, the process-wide
//! settings a reload does not change are the same ([`Fixed`]), every certificate loads, every `host:port` instance
//! resolves, every new access log opens, every new listener's socket binds. Then the commit, which cannot fail:
//! the control plane takes the new load balancers, zones, instances, checks, policies, rules and attributes and
//! publishes new snapshots; the listeners kept take their new settings without being rebound, the new ones start
//! accepting, the removed ones drain; the DNS responder answers the new names. The trade-off: a reload that
//! touches one of the fixed settings is refused whole, and says which, rather than half-applied.
//!
//! A change through the ELB API goes the same way ([`Core::apply`]): its records are laid on the file as last
//! applied, the result is staged (a listener that cannot bind or a certificate that does not load refuses the
//! call, 409 `InvalidConfigurationRequest`, and nothing is written), then written to the state store (Ok: on
//! disk), then committed. So a created load balancer listens, answers DNS and is health-checked before its call
//! is answered, and an acknowledged change is one a restart finds. The write is compare-and-swap: each key the
//! change writes must still be as this process holds it ([`Guard`]); in cluster mode another process may have
//! written it first, and then everything is loaded from the store and the change planned again.
//!
//! Cluster mode (`server/cluster`): a batch another process wrote comes through the store's watch and goes the
//! same way (`Core::apply_watched`): taken into the records as their revisions say, staged, committed.

use std::net::SocketAddr;
use std::path::Path;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use super::access_logs::StagedLogs;
use super::listeners::{Fresh, Tls};
use super::{resolve_instances, Core, Server, Serving};
use crate::config::{self, Config};
use crate::control_plane::api::{ApiError, Apply, Plan, View};
use crate::control_plane::state_dir;
use crate::control_plane::store::{Change, Guard, Key, Records, Revision, StoreError, Versioned};
use crate::server::ReloadError;

/// The process-wide settings a reload does not change: the admin and DNS sockets, how names are resolved, the
/// limits every connection was built with, where state is kept; the ELB API's keys and instance catalogue, which
/// the admin listener was started with.
pub(super) struct Fixed {
    admin: SocketAddr,
    dns: Option<SocketAddr>,
    discovery: config::Discovery,
    limits: config::Limits,
    state_dir: std::path::PathBuf,
    api: config::Api,
    instances: Vec<config::Instance>,
    /// `[cluster]`: which etcd and which zones this process runs, read once at start.
    cluster: Option<config::Cluster>,
}

impl Fixed {
    pub(super) fn of(config: &Config) -> Fixed {
        Fixed {
            admin: config.admin.listen,
            dns: config.dns.as_ref().map(|dns| dns.listen),
            discovery: config.discovery.clone(),
            limits: config.limits.clone(),
            state_dir: config.state_dir.clone(),
            api: config.api.clone(),
            instances: config.instances.clone(),
            cluster: config.cluster.clone(),
        }
    }

    /// The first fixed setting `config` changes, by its key in the file.
    fn changed_in(&self, config: &Config) -> Option<&'static str> {
        let now = Fixed::of(config);
        if now.admin != self.admin {
            Some("admin.listen")
        } else if now.dns != self.dns {
            Some("dns.listen")
        } else if now.discovery != self.discovery {
            Some("[discovery]")
        } else if now.limits != self.limits {
            Some("[limits]")
        } else if now.state_dir != self.state_dir {
            Some("state_dir")
        } else if now.api != self.api {
            Some("[api]")
        } else if now.instances != self.instances {
            Some("[[instance]]")
        } else if now.cluster != self.cluster {
            Some("[cluster]")
        } else {
            None
        }
    }
}

impl Server {
    /// Reloads the configuration file (SIGHUP): load balancers, zones, listeners, instances, health checks,
    /// policies, rules, attributes and certificates change without dropping a connection on a listener that
    /// stays. A file that does not parse or validate, a certificate that does not load, a listener that cannot
    /// bind, or a change to a setting only a restart applies is refused: nothing changes, the old configuration
    /// keeps serving and `/status` reports the error. What the ELB API changed is laid on the new file.
    pub async fn reload_from(&self, path: &Path) -> Result<(), ReloadError> {
        self.core.reload_from(path).await
    }
}

/// Everything a commit needs, made by the steps that can fail.
struct Staged {
    /// The file with the store's records on top: what will run.
    running: Config,
    tls: Tls,
    secret: Option<Vec<u8>>,
    resolved: HashMap<String, Vec<IpAddr>>,
    logs: StagedLogs,
    fresh: Fresh,
}

impl Core {
    async fn reload_from(&self, path: &Path) -> Result<(), ReloadError> {
        // One reload or API change at a time, and no registration meanwhile (`Control::exclusive`).
        let _one = self.control.exclusive().await;
        // Log files reopen whatever the new configuration says (logrotate sends SIGHUP after moving them).
        self.live().access_logs.reopen();
        let result = match config::load(path) {
            Ok(config) => self.reload(config).await,
            Err(error) => Err(error.into()),
        };
        self.metrics.reloaded(result.is_ok());
        if let Err(error) = &result {
            tracing::error!(%error, "reload refused; the previous configuration keeps serving");
            self.control.reload_failed(error.to_string());
        }
        result
    }

    async fn reload(&self, file: Config) -> Result<(), ReloadError> {
        if let Some(key) = self.fixed.changed_in(&file) {
            return Err(ReloadError::NeedsRestart { key });
        }
        let staged = self
            .stage(&file, &self.control.records(), &HashMap::new())
            .await?;
        self.commit(&file, staged, true);
        self.live().file = Arc::new(file);
        self.close_retired().await;
        Ok(())
    }

    /// The steps that can fail, for `file` with `records` on top; nothing changes. `host:port` instances in
    /// `known` are not resolved again (an API change keeps the running answers; a reload asks afresh).
    async fn stage(
        &self,
        file: &Config,
        records: &Records,
        known: &HashMap<String, Vec<IpAddr>>,
    ) -> Result<Staged, ReloadError> {
        let running = records.overlay(file).config;
        let tls = super::listeners::tls_acceptors(&running)?;
        let secret =
            state_dir::kept_stickiness_secret(&running).map_err(super::StartError::from)?;
        let resolved = resolve_instances(&running, self.control.discovery(), known).await?;
        let live = self.live();
        let logs = live.access_logs.stage(&running)?;
        let fresh = live.listeners.bind_new(&running, self.control.served())?;
        drop(live);
        Ok(Staged {
            running,
            tls,
            secret,
            resolved,
            logs,
            fresh,
        })
    }

    /// Serves what was staged; cannot fail. The control plane lays its own records on `file` (the same ones
    /// the stage laid, since reloads and API changes take turns).
    fn commit(&self, file: &Config, staged: Staged, from_file: bool) {
        let Staged {
            running,
            tls,
            secret,
            resolved,
            logs,
            fresh,
        } = staged;
        if let Some(secret) = secret {
            self.control.use_stickiness_secret(secret);
        }
        // Read before the control plane takes the change: the load balancers a removed listener belonged to.
        let drain_deadlines = self.control.drain_deadlines();
        let mut live = self.live();
        let addresses = live.listeners.addresses(&fresh);
        self.control.reload(file, &resolved, &addresses, from_file);
        self.control.watch_names();
        let nodes = self
            .control
            .with_listeners(|nodes| super::listeners::nodes(nodes));
        let serving = Serving {
            config: &running,
            metrics: &self.metrics,
            logs: &logs.by_load_balancer,
            tls: &tls,
            passive: &self.passive,
            connections: &self.connections,
            shutdown_grace: self.shutdown_grace,
            drain_deadlines: &drain_deadlines,
        };
        let removed = live.listeners.commit(&nodes, fresh, &serving);
        live.access_logs.commit(logs);
        drop(live);
        if let Some((_, zone)) = &self.dns {
            zone.store(Arc::new(crate::dns::Zone::of(&running)));
        }
        tracing::info!(
            listeners = nodes.len(),
            removed = removed.len(),
            "configuration applied"
        );
    }

    /// Waits (a second at most) for the accept loops of the listeners the last commit retired to end, so their
    /// addresses are free once the change is answered (a DeleteLoadBalancer then CreateLoadBalancer of the same
    /// address binds it).
    async fn close_retired(&self) {
        let retired = self.live().listeners.take_retired();
        for accept_loop in retired {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), accept_loop).await;
        }
    }

    /// An ELB API change: plans it against what runs, stages it, keeps it, commits it (module documentation).
    /// The write is guarded (compare-and-swap): each key the batch changes must still be as this process holds
    /// it. When another process wrote one first, everything is loaded afresh and the call planned again, at most
    /// [`ATTEMPTS`] times.
    async fn apply_plan(&self, plan: Plan) -> Result<(), ApiError> {
        let _one = self.control.exclusive().await;
        let file = self.live().file.clone();
        let mut records = self.control.records();
        let mut loaded = false;
        for _ in 0..ATTEMPTS {
            let changes = {
                let running = records.overlay(&file).config;
                plan(&View {
                    config: &running,
                    file: &file,
                    records: &records,
                })?
            };
            if changes.is_empty() {
                return Ok(());
            }
            match self.try_write(&file, &records, changes, loaded).await? {
                Attempt::Done => return Ok(()),
                Attempt::Conflict(error) => {
                    tracing::info!(%error, "an ELB API change met another writer's; planning it again");
                    let contents = self.control.store().load().await.map_err(unavailable)?;
                    records = Records::from_contents(contents);
                    loaded = true;
                }
            }
        }
        Err(ApiError::service_unavailable(format!(
            "the change was not made: other writers changed the same records {ATTEMPTS} times in a row; retry"
        )))
    }

    /// Stages, writes (guarded) and commits one planned attempt of [`Core::apply_plan`] against `records`
    /// (`loaded`: freshly loaded from the store, to replace the ones held once the write succeeds).
    async fn try_write(
        &self,
        file: &Config,
        records: &Records,
        changes: Vec<Change>,
        loaded: bool,
    ) -> Result<Attempt, ApiError> {
        let mut candidate = records.clone();
        take(&mut candidate, &changes, Revision(u64::MAX));
        // What runs keeps its resolved addresses: a change to one load balancer asks no name server.
        let staged = self
            .stage(file, &candidate, &self.control.resolved_now())
            .await
            .map_err(|error| ApiError::invalid_configuration(error.to_string()).caused_by(error))?;
        let guards = changes
            .iter()
            .map(|change| {
                let key = change_key(change);
                let held = records.get(&key);
                Guard::unchanged(key, held)
            })
            .collect();
        let revision = match self
            .control
            .store()
            .apply_guarded(guards, changes.clone())
            .await
        {
            Ok(revision) => revision,
            Err(error) if error.is_conflict() => return Ok(Attempt::Conflict(error)),
            Err(error) => return Err(unavailable(error)),
        };
        self.control.take_records(|held| {
            if loaded {
                *held = records.clone();
            }
            take(held, &changes, revision);
        });
        self.commit(file, staged, false);
        self.close_retired().await;
        Ok(Attempt::Done)
    }

    /// Takes a batch another process wrote (cluster mode: the store's watch) into the records, then stages and
    /// commits them as an API change does. A put not newer than the record held is skipped: this process's own
    /// writes come back through the watch and are applied already. Returns whether a stage failed, so the next
    /// batch (`pending`) stages again even if it takes nothing: the records are kept, the store is the truth.
    #[cfg(feature = "cluster")]
    pub(super) async fn apply_watched(
        &self,
        batch: crate::control_plane::store::WatchBatch,
        pending: bool,
    ) -> bool {
        use crate::control_plane::store::WatchChange;
        let _one = self.control.exclusive().await;
        let mut taken = false;
        self.control.take_records(|held| {
            for change in batch.changes {
                match change {
                    WatchChange::Put(versioned) => {
                        let key = versioned.record.key();
                        if held
                            .get(&key)
                            .is_some_and(|had| had.revision >= versioned.revision)
                        {
                            continue;
                        }
                        taken |= held.take(versioned);
                    }
                    WatchChange::Delete(key) => {
                        if held.get(&key).is_some() {
                            held.forget_at(&key, batch.revision);
                            taken |= held.get(&key).is_none();
                        }
                    }
                }
            }
        });
        if !taken && !pending {
            return false;
        }
        self.restage(batch.revision).await
    }

    /// The watch lost its place (`WatchEvent::Reset`): loads everything, replaces the records wholesale,
    /// stages and commits. Returns the revision loaded (where the watch starts again) and whether the stage
    /// failed (as [`Core::apply_watched`]).
    #[cfg(feature = "cluster")]
    pub(super) async fn reload_store(
        &self,
    ) -> Result<(Revision, bool), crate::control_plane::store::StoreError> {
        let _one = self.control.exclusive().await;
        let contents = self.control.store().load().await?;
        let revision = contents.revision;
        tracing::info!(
            revision = revision.0,
            records = contents.records.len(),
            "state store reloaded"
        );
        self.control
            .take_records(|held| *held = Records::from_contents(contents));
        Ok((revision, self.restage(revision).await))
    }

    /// Stages and commits the records held on the file as last applied; a failure is logged (and shown as the
    /// last reload error) and changes nothing. Returns whether it failed.
    #[cfg(feature = "cluster")]
    async fn restage(&self, revision: Revision) -> bool {
        let file = self.live().file.clone();
        let records = self.control.records();
        match self
            .stage(&file, &records, &self.control.resolved_now())
            .await
        {
            Ok(staged) => {
                self.commit(&file, staged, false);
                self.close_retired().await;
                false
            }
            Err(error) => {
                tracing::error!(revision = revision.0, %error,
                    "the cluster's change cannot be applied here; the records are kept and applying them is tried again at the next change");
                self.control
                    .reload_failed(format!("state store revision {}: {error}", revision.0));
                true
            }
        }
    }
}

/// How often an ELB API change is planned again after another writer's change got there first.
const ATTEMPTS: usize = 5;

/// What one attempt of an ELB API change came to.
enum Attempt {
    /// Written and committed, or nothing to change.
    Done,
    /// Another writer changed a record the change read: plan again.
    Conflict(StoreError),
}

/// The key a change writes or deletes.
fn change_key(change: &Change) -> Key {
    match change {
        Change::Put(record) => record.key(),
        Change::Delete(key) => key.clone(),
    }
}

/// A store error as the API answers it: nothing is applied here; retry. (A write to an etcd that stopped answering
/// may still land later, and then arrives through the watch like any other process's: so "not confirmed", not
/// "not made".)
fn unavailable(error: StoreError) -> ApiError {
    ApiError::service_unavailable(format!(
        "the change was not confirmed by the state store, and nothing of it is applied: {error}; retry"
    ))
    .caused_by(error)
}

/// Lays a batch's changes on `records`, at `revision`.
fn take(records: &mut Records, changes: &[Change], revision: Revision) {
    for change in changes {
        match change {
            Change::Put(record) => {
                records.take(Versioned {
                    revision,
                    record: record.clone(),
                });
            }
            Change::Delete(key) => records.forget_at(key, revision),
        }
    }
}

impl Apply for Core {
    /// In a task of its own: a caller that goes away (a client that disconnects mid-call) cannot leave a change
    /// kept in the store but not applied.
    fn apply(
        self: Arc<Self>,
        plan: Plan,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send>> {
        Box::pin(async move {
            tokio::spawn(async move { self.apply_plan(plan).await })
                .await
                .unwrap_or_else(|_| Err(ApiError::service_unavailable("elbe is shutting down")))
        })
    }
}
