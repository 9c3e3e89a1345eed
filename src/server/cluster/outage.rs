//! Cluster mode when etcd does not answer (issue 16 item 5; DESIGN.md "The state store"): the state a process
//! starts from, and the probe that keeps "is etcd reachable" current.
//!
//! Rule: at start etcd is asked first. When it does not answer within its timeouts (`store/etcd`: about two
//! seconds), the process starts from its local copy of the last state it applied (`store/local_copy`), says so
//! (`serving from the local copy of revision R`, with when it was written), and the watch task loads everything
//! once etcd answers and converges with no restart (`server/cluster`'s `follow`). No usable copy (none, a damaged
//! one, or one of another etcd or prefix, which is never used) fails the start as before, saying both why etcd
//! and why the copy could not serve. An etcd that answers with an error (a record that does not read) fails the
//! start: the copy is for an unreachable etcd, not for one that disagrees.
//!
//! Trade-off: after a start from the copy everything is loaded, not watched from the copy's revision: the copy
//! may be old enough that etcd compacted past it, or etcd may have been restored meanwhile, and a load is one
//! read of hundreds of records.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config;
use crate::control_plane::store::{
    Contents, EtcdStore, Found, LocalCopy as Copy, Origin, Revision, StateStore, StoreError,
};
use crate::server::Core;

/// How often the probe asks etcd where it is: a process that writes nothing and whose watch is quiet learns
/// within about this (plus the two-second call bound) that etcd stopped answering; the HTTP/2 pings alone take
/// up to 15 s.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The state a process starts from.
pub(super) struct First {
    pub(super) contents: Contents,
    /// The revision loaded from etcd, where the watch starts; `None`: the contents are the local copy's, and
    /// everything is loaded once etcd answers.
    pub(super) from_etcd: Option<Revision>,
}

/// etcd's state, or with etcd unreachable the local copy in `state_dir` (module documentation).
pub(super) async fn first_state(
    store: &EtcdStore,
    state_dir: &Path,
    origin: &Origin,
    cluster: &config::Cluster,
) -> Result<First, StoreError> {
    let error = match store.load().await {
        Ok(contents) => {
            tracing::info!(etcd = %origin.endpoints.join(","), prefix = %cluster.prefix, node_id = %cluster.node_id,
                zones = ?cluster.zones, records = contents.records.len(), revision = contents.revision.0,
                "cluster mode: state loaded from etcd");
            return Ok(First {
                from_etcd: Some(contents.revision),
                contents,
            });
        }
        Err(error) if store.reach().reachable() => return Err(error),
        Err(error) => error,
    };
    let (dir, wanted) = (state_dir.to_owned(), origin.clone());
    let path = Copy::file(state_dir);
    let found = match tokio::task::spawn_blocking(move || Copy::read(&dir, &wanted)).await {
        Ok(found) => found,
        Err(panicked) => return Err(and_no_copy(error, panicked.to_string())),
    };
    let why = match found {
        Ok(Found::Copy {
            contents,
            written_unix_ms,
        }) => {
            let age = now_unix_ms().saturating_sub(written_unix_ms) / 1000;
            tracing::warn!(revision = contents.revision.0, written_unix_ms, age_s = age,
                records = contents.records.len(), path = %path.display(), %error,
                "cluster mode: serving from the local copy of revision {} written {age} s ago, etcd unreachable; \
                 trying etcd in the background", contents.revision.0);
            return Ok(First {
                contents,
                from_etcd: None,
            });
        }
        Ok(Found::Missing) => format!(
            "there is no local copy of the last state to start from ({} is not there: it is written once a state is loaded from etcd)",
            path.display()
        ),
        Ok(Found::Foreign(other)) => format!(
            "the local copy {} is of etcd {} under prefix {:?}, not this process's: not used",
            path.display(),
            other.endpoints.join(","),
            other.prefix
        ),
        Err(copy) => format!("the local copy cannot serve: {copy}"),
    };
    Err(and_no_copy(error, why))
}

/// etcd's error, with why the local copy could not serve either.
fn and_no_copy(error: StoreError, why: String) -> StoreError {
    match error {
        StoreError::Etcd {
            endpoints,
            operation,
            source,
        } => StoreError::Etcd {
            endpoints,
            operation,
            source: Arc::new(NoCopy { etcd: source, why }),
        },
        other => other,
    }
}

/// etcd did not answer, and the local copy could not serve.
#[derive(Debug, thiserror::Error)]
#[error("{etcd}; and {why}")]
struct NoCopy {
    #[source]
    etcd: Arc<dyn std::error::Error + Send + Sync>,
    why: String,
}

/// Asks etcd where it is every [`PROBE_EVERY`] (its answer, or none, is what `store/etcd/reach` records),
/// until the server is gone.
pub(super) async fn probe(store: EtcdStore, core: Weak<Core>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if core.strong_count() == 0 {
            return;
        }
        let _ = store.probe().await;
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
