//! Cluster mode (DESIGN.md "The state store", `[cluster]`; issue 16): several `elbe run` processes act as one
//! ELB on one etcd. Each runs the nodes of its own zones (`[cluster] zones`), and every change any of them makes
//! reaches the others through etcd's watch.
//!
//! Rule: at start the whole store is loaded, then a task follows the watch from the loaded revision and applies
//! each batch (`Core::apply_watched`: records taken as their revisions say, then staged and committed as an API
//! change); when the watch loses its place (compaction, a restored etcd, an outage longer than etcd's history)
//! everything is loaded again and replaces the records (`Core::reload_store`). etcd is never on the request
//! path: while it is unreachable the watch retries on its own, API writes answer 503 and traffic keeps flowing
//! on the last state. Outages (`cluster/outage`): every state applied is also kept as a local copy in
//! `state_dir` (`store/local_copy`); a process that starts while etcd does not answer serves that copy and
//! loads everything once etcd answers; whether etcd answers is a gauge, a log line per change and `/status`'s
//! `store` (`store/etcd/reach`), kept current by a probe.
//!
//! Membership and health per node (items 3 and 4) run beside the watch: `cluster/membership` keeps this
//! process's lease, member key and health views in etcd and leaves on SIGTERM; `cluster/view` reads every live
//! member and its views back, for `/status`, DescribeInstanceHealth and the DNS answers.
//!
//! Trade-off: a batch that cannot be applied here (this machine cannot bind an address it names) is kept in the
//! records and tried again at the next batch, rather than refused: the store is the truth and other processes
//! already serve it.

mod identity;
mod membership;
mod view;

use std::sync::{Arc, Weak};
use std::time::Duration;

mod outage;

use super::{start_with, Core, Server, StartError};
use crate::config::Config;
use crate::control_plane::state_dir;
use crate::control_plane::store::{EtcdStore, LocalCopy, Origin, Records, Revision, WatchEvent};

/// The name of the cluster's stickiness key among its shared secrets.
const STICKINESS_SECRET: &str = "stickiness";

/// How long the watch task waits before loading the store again after a load failed (etcd unreachable).
const RELOAD_RETRY: Duration = Duration::from_secs(1);

/// Starts elbe in cluster mode: the store is etcd at `[cluster] etcd` under `[cluster] prefix`, loaded whole
/// before anything binds (or, with etcd unreachable, this process's local copy of the last state:
/// `cluster/outage`), and followed by a watch while the server runs.
pub(super) async fn start(config: Config) -> Result<Server, StartError> {
    let Some(cluster) = config.cluster.clone() else {
        return Err(StartError::NotCluster);
    };
    let endpoints = cluster.etcd.join(",");
    let unreachable = |source| StartError::ClusterStore {
        endpoints: endpoints.clone(),
        source,
    };
    let store = EtcdStore::connect(&cluster.etcd, &cluster.prefix)
        .await
        .map_err(unreachable)?;
    let origin = Origin::new(&cluster.etcd, &cluster.prefix);
    let first = outage::first_state(&store, &config.state_dir, &origin, &cluster)
        .await
        .map_err(unreachable)?;
    store.reach().applied(first.contents.revision);
    if first.from_etcd.is_some() {
        share_stickiness_key(&store, &config).await?;
    }
    let copy = LocalCopy::start(config.state_dir.clone(), origin);
    if first.from_etcd.is_some() {
        copy.keep(first.contents.clone());
    }
    let records = Records::from_contents(first.contents);
    let mut server = start_with(config, Arc::new(store.clone()), records).await?;
    server.core.metrics.register_store(store.reach().metrics());
    let core = Arc::downgrade(&server.core);
    server
        .tasks
        .extend(membership::join(&server, &store, &cluster).await);
    server
        .tasks
        .push(tokio::spawn(outage::probe(store.clone(), core.clone())));
    server
        .tasks
        .push(tokio::spawn(follow(store, core, first.from_etcd, copy)));
    Ok(server)
}

/// Makes this process's stickiness key the cluster's (`store/etcd/secret`): the first process offers the key in
/// its `state_dir`, every other one takes that one into its own `state_dir`, where the server reads it as
/// without a cluster. So an AWSELB cookie issued through any process's node is honoured by every other.
///
/// A start from the local copy (etcd down) skips this: the key file holds the cluster's key since the start that
/// last reached etcd. So does a start whose etcd stops answering between the load and this call, with a warning:
/// refusing to start would be worse than honouring only this process's cookies until the next start.
async fn share_stickiness_key(store: &EtcdStore, config: &Config) -> Result<(), StartError> {
    let own = state_dir::stickiness_secret(&config.state_dir)?;
    let shared = match store.shared_secret(STICKINESS_SECRET, &own).await {
        Ok(shared) => shared,
        Err(error) => {
            tracing::warn!(%error, "cluster mode: cannot share the stickiness key; this process's own is used");
            return Ok(());
        }
    };
    if state_dir::adopt_stickiness_secret(&config.state_dir, &shared)? {
        tracing::info!("cluster mode: took the cluster's stickiness key");
    }
    Ok(())
}

/// The watch task: applies every batch after `from` (with `None`, loads everything first: the process started
/// from its local copy), reloads everything on a reset, keeps the local copy of each state applied, and stops
/// when the server is gone (or shut down: its task is aborted).
async fn follow(store: EtcdStore, core: Weak<Core>, from: Option<Revision>, copy: LocalCopy) {
    // A stage failed and has not succeeded since: stage again at the next batch.
    let mut pending = false;
    let mut from = match from {
        Some(from) => from,
        None => match reload(&store, &core, &copy).await {
            Some((revision, failed)) => {
                pending = failed;
                revision
            }
            None => return,
        },
    };
    loop {
        let mut watch = store.watch(from);
        while let Some(event) = watch.next().await {
            let Some(core) = core.upgrade() else {
                return;
            };
            match event {
                // The watch resumes after the last batch by itself; a reset reloads and says where to start.
                WatchEvent::Batch(batch) => {
                    let revision = batch.revision;
                    pending = core.apply_watched(batch, pending).await;
                    kept(&store, &core, &copy, revision);
                }
                WatchEvent::Reset(reason) => {
                    tracing::warn!(%reason, "cluster mode: reloading the whole state from etcd");
                    break;
                }
            }
        }
        drop(watch);
        match reload(&store, &core, &copy).await {
            Some((revision, failed)) => {
                from = revision;
                pending = failed;
            }
            None => return,
        }
    }
}

/// Loads everything from etcd and applies it, trying again every [`RELOAD_RETRY`] until etcd answers (asked
/// first with a probe); the revision loaded and whether the stage failed, or `None` once the server is gone.
async fn reload(
    store: &EtcdStore,
    core: &Weak<Core>,
    copy: &LocalCopy,
) -> Option<(Revision, bool)> {
    loop {
        // Asked first without the control plane's gate: a load that waits out its timeout holds the gate, and
        // with it every registration, for as long.
        if store.probe().await.is_err() {
            if core.strong_count() == 0 {
                return None;
            }
            tokio::time::sleep(RELOAD_RETRY).await;
            continue;
        }
        let core = core.upgrade()?;
        match core.reload_store().await {
            Ok((revision, failed)) => {
                kept(store, &core, copy, revision);
                return Some((revision, failed));
            }
            // While etcd is away, `store/etcd/reach` has said so once; each attempt is not news.
            Err(error) if !store.reach().reachable() => {
                tracing::debug!(%error, retry_in = ?RELOAD_RETRY, "cluster mode: etcd still unreachable");
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?RELOAD_RETRY, "cluster mode: cannot reload the state from etcd");
            }
        }
        drop(core);
        tokio::time::sleep(RELOAD_RETRY).await;
    }
}

/// The state at `revision` is applied: `/status` says so, and the local copy keeps it.
fn kept(store: &EtcdStore, core: &Core, copy: &LocalCopy, revision: Revision) {
    store.reach().applied(revision);
    copy.keep(core.control.records().contents(revision));
}
