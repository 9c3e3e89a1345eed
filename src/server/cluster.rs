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

use super::{start_with, Core, Server, StartError};
use crate::config::Config;
use crate::control_plane::store::{EtcdStore, Records, Revision, StateStore, WatchEvent};

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
    let from = contents.revision;
    tracing::info!(etcd = %endpoints, prefix = %cluster.prefix, node_id = %cluster.node_id,
        zones = ?cluster.zones, records = contents.records.len(), revision = from.0,
        "cluster mode: state loaded from etcd");
    let records = Records::from_contents(contents);
    let mut server = start_with(config, Arc::new(store.clone()), records).await?;
    let core = Arc::downgrade(&server.core);
    server
        .tasks
        .extend(membership::join(&server, &store, &cluster).await);
    server.tasks.push(tokio::spawn(follow(store, core, from)));
    Ok(server)
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
