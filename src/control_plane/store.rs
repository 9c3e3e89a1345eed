//! The state store (DESIGN.md "The state store"): every change made while elbe runs is a typed, versioned record,
//! kept durably, so that a change the caller saw acknowledged survives `kill -9` and restart.
//!
//! Rule: one trait, [`StateStore`], that the embedded store implements now (`store/embedded`: redb in
//! `state_dir`) and the cluster's etcd store will: [`StateStore::load`] reads everything at start;
//! [`StateStore::apply`] writes a batch of changes atomically and durably (Ok means on disk, fsynced) and answers
//! the batch's revision. The store's revision only grows, one step per batch, and every record carries the
//! revision of the batch that last wrote it (etcd's `mod_revision`). The control plane writes first and changes
//! its running state only after the write is acknowledged (a failed write changes nothing), and applies a record
//! only when its revision is not older than the one it holds for that key ([`Records::take`]), so concurrent
//! writes land in memory in the store's order. That is also how a watch will apply other processes' changes: a
//! later `watch(from: Revision)` streams records newer than [`Contents::revision`], and the control plane applies
//! them the same way.
//!
//! Compare-and-swap: when two processes write (cluster mode, `store/etcd`), a caller that planned a change from
//! what it read says so with [`StateStore::apply_guarded`]: "only if key K is still at revision R (or absent)",
//! one [`Guard`] per key it read. A failed guard writes nothing and is [`StoreError::Conflict`], so the caller
//! reloads, plans again and retries; two API calls on two processes never lose one. [`StateStore::apply`] is
//! the same with no guard.
//!
//! - `store/record`: the record model: keys, one kind per object, registrations.
//! - `store/definitions`: the records of a load balancer's own settings (listeners, zones, policies, ...).
//! - `store/records`: the records a process has applied.
//! - `store/overlay`: how they lay on top of the configuration file's load balancers.
//! - `store/embedded`: redb under `state_dir`, written by one thread that commits concurrent writes together.
//! - `store/memory`: the same contract in memory, for an elbe run in-process (the harness, tests, the demo).
//! - `store/etcd` (cargo feature `cluster`): the cluster's store, one etcd key per record, and its watch.
//! - `store/local_copy` (feature `cluster`): the last state applied from etcd, kept in `state_dir` for a start
//!   while etcd is down.
//! - `store/error`: why the store could not open, read or write.
//!
//! Trade-off: the trait's futures are boxed (`StoreFuture`) so the control plane holds any store as
//! `Arc<dyn StateStore>`; one allocation per write is nothing beside an fsync.

pub(crate) mod definitions;
mod embedded;
mod error;
#[cfg(feature = "cluster")]
mod etcd;
#[cfg(feature = "cluster")]
mod local_copy;
mod memory;
pub(crate) mod overlay;
mod record;
mod records;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub(crate) use embedded::{file as embedded_file, EmbeddedStore};
pub use error::StoreError;
#[cfg(feature = "cluster")]
pub(crate) use etcd::{
    Entries, EtcdStore, Lease, LeasedChange, Mirror, Renewed, WatchBatch, WatchChange, WatchEvent,
};
#[cfg(feature = "cluster")]
pub(crate) use local_copy::{Found, LocalCopy, Origin};
pub(crate) use memory::MemoryStore;
pub(crate) use record::{Key, Record, Registration, RegistrationState};
pub(crate) use records::Records;

/// A point in the store's history: the revision of the batch that wrote a record, or the store's latest.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub(crate) struct Revision(pub u64);

/// A record and the revision of the batch that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Versioned {
    pub revision: Revision,
    #[serde(flatten)]
    pub record: Record,
}

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Writes the record under its key (replacing what was there).
    Put(Record),
    /// Forgets the record under the key (`elbe state reset`); nothing when there is none.
    Delete(Key),
}

/// Everything a store holds, and its revision (the last batch's; 0 for a store never written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Contents {
    pub revision: Revision,
    pub records: Vec<Versioned>,
}

/// A condition of a guarded batch ([`StateStore::apply_guarded`]): the record under `key` was last written at
/// `revision`, or, with `None`, there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guard {
    pub key: Key,
    pub revision: Option<Revision>,
}

impl Guard {
    /// The guard that holds while `key` is as `held` (what the caller read: the record and its revision, or none).
    pub(crate) fn unchanged(key: Key, held: Option<&Versioned>) -> Guard {
        Guard {
            key,
            revision: held.map(|versioned| versioned.revision),
        }
    }

    /// Whether the guard holds against the store's `contents`.
    fn holds(&self, contents: &Contents) -> bool {
        let found = contents
            .records
            .iter()
            .find(|versioned| versioned.record.key() == self.key)
            .map(|versioned| versioned.revision);
        found == self.revision
    }
}

/// What `/status` says of a remote store (cluster mode's etcd): whether it answers, since when, and the revision
/// this process applied last. The local stores (embedded, memory) have none: they always answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// `etcd`.
    pub kind: &'static str,
    /// Whether the last call to it got an answer.
    pub reachable: bool,
    /// The store's revision this process applied last (from etcd or from its local copy).
    pub revision: u64,
    /// When `reachable` last changed (or the process started), in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
}

/// What a store's operations return: boxed, so that the control plane can hold any store behind `dyn`.
pub(crate) type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where the changes made at run time are kept (see the module documentation for the contract).
pub(crate) trait StateStore: Send + Sync {
    /// Every record, and the store's revision.
    fn load(&self) -> StoreFuture<'_, Contents>;

    /// Applies `changes` atomically (all or none) and durably (Ok: on disk), as one new revision, which it
    /// returns; every record the batch writes carries it.
    fn apply(&self, changes: Vec<Change>) -> StoreFuture<'_, Revision>;

    /// Applies `changes` as [`StateStore::apply`] does, only if every guard holds; otherwise writes nothing and
    /// fails with [`StoreError::Conflict`] naming the first key that changed.
    ///
    /// The default, for the single-writer stores (embedded, memory), compares against what the store holds
    /// and then writes: atomic against other processes because there are none (the embedded store is locked by
    /// its process), and against this process's own writers as far as they write one planned batch at a time
    /// (the API's change queue does). etcd compares and writes in one transaction.
    /// Whether a remote store answers (`/status`'s `store`); `None` for the local ones, which always do.
    fn status(&self) -> Option<StoreStatus> {
        None
    }

    fn apply_guarded(&self, guards: Vec<Guard>, changes: Vec<Change>) -> StoreFuture<'_, Revision> {
        Box::pin(async move {
            if !guards.is_empty() {
                let contents = self.load().await?;
                if let Some(failed) = guards.iter().find(|guard| !guard.holds(&contents)) {
                    return Err(StoreError::Conflict {
                        key: failed.key.to_string(),
                    });
                }
            }
            self.apply(changes).await
        })
    }
}
