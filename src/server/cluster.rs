//! Cluster mode (DESIGN.md "The state store", `[cluster]`; issue 16): several `elbe run` processes act as one
//! ELB on one etcd. Each runs the nodes of its own zones (`[cluster] zones`), and every change any of them makes
//! reaches the others through etcd's watch.
//!
//! Rule: at start the whole store is loaded (etcd must answer then: the local copy for a start while etcd is
//! down is a later slice), then a task follows the watch from the loaded revision and applies each batch
//! (`Core::apply_watched`: records taken as their revisions say, then staged and committed as an API change);
//! when the watch loses its place (compaction, a restored etcd) everything is loaded again and replaces the
//! records (`Core::reload_store`). etcd is never on the request path: while it is unreachable the watch retries
//! on its own, API writes answer 503 and traffic keeps flowing on the last state.
//!
//! Trade-off: a batch that cannot be applied here (this machine cannot bind an address it names) is kept in the
//! records and tried again at the next batch, rather than refused: the store is the truth and other processes
//! already serve it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{start_with, Core, Server, StartError};
use crate::config::Config;
use crate::control_plane::state_dir;
use crate::control_plane::store::{EtcdStore, Records, Revision, StateStore, WatchEvent};

/// The name of the cluster's stickiness key among its shared secrets.
const STICKINESS_SECRET: &str = "stickiness";

/// How long the watch task waits before loading the store again after a load failed (etcd unreachable).
const RELOAD_RETRY: Duration = Duration::from_secs(1);

/// Starts elbe in cluster mode: the store is etcd at `[cluster] etcd` under `[cluster] prefix`, loaded whole
/// before anything binds, and followed by a watch while the server runs.
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
    let contents = store.load().await.map_err(unreachable)?;
    share_stickiness_key(&store, &config, &endpoints).await?;
    let from = contents.revision;
    tracing::info!(etcd = %endpoints, prefix = %cluster.prefix, node_id = %cluster.node_id,
        zones = ?cluster.zones, records = contents.records.len(), revision = from.0,
        "cluster mode: state loaded from etcd");
    let records = Records::from_contents(contents);
    let mut server = start_with(config, Arc::new(store.clone()), records).await?;
    let core = Arc::downgrade(&server.core);
    server.tasks.push(tokio::spawn(follow(store, core, from)));
    Ok(server)
}

/// Makes this process's stickiness key the cluster's (`store/etcd/secret`): the first process offers the key in
/// its `state_dir`, every other one takes that one into its own `state_dir`, where the server reads it as
/// without a cluster. So an AWSELB cookie issued through any process's node is honoured by every other.
async fn share_stickiness_key(
    store: &EtcdStore,
    config: &Config,
    endpoints: &str,
) -> Result<(), StartError> {
    let own = state_dir::stickiness_secret(&config.state_dir)?;
    let shared = store
        .shared_secret(STICKINESS_SECRET, &own)
        .await
        .map_err(|source| StartError::ClusterStore {
            endpoints: endpoints.to_owned(),
            source,
        })?;
    if state_dir::adopt_stickiness_secret(&config.state_dir, &shared)? {
        tracing::info!("cluster mode: took the cluster's stickiness key");
    }
    Ok(())
}

/// The watch task: applies every batch after `from`, reloads everything on a reset, and stops when the server
/// is gone (or shut down: its task is aborted).
async fn follow(store: EtcdStore, core: Weak<Core>, mut from: Revision) {
    // A stage failed and has not succeeded since: stage again at the next batch.
    let mut pending = false;
    loop {
        let mut watch = store.watch(from);
        while let Some(event) = watch.next().await {
            let Some(core) = core.upgrade() else {
                return;
            };
            match event {
                // The watch resumes after the last batch by itself; a reset reloads and says where to start.
                WatchEvent::Batch(batch) => pending = core.apply_watched(batch, pending).await,
                WatchEvent::Reset(reason) => {
                    tracing::warn!(%reason, "cluster mode: reloading the whole state from etcd");
                    break;
                }
            }
        }
        drop(watch);
        loop {
            let Some(core) = core.upgrade() else {
                return;
            };
            match core.reload_store().await {
                Ok((revision, failed)) => {
                    from = revision;
                    pending = failed;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?RELOAD_RETRY, "cluster mode: cannot reload the state from etcd");
                }
            }
            drop(core);
            tokio::time::sleep(RELOAD_RETRY).await;
        }
    }
}
