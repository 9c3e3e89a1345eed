//! Why the state store could not open, read or write: each error names the store's file (or, in cluster mode,
//! etcd's endpoints) and keeps its cause. Every one of them answers an API write 503 `ServiceUnavailable`
//! (`api/error`): nothing was changed, the caller may retry.

use std::path::PathBuf;
use std::sync::Arc;

/// The cause of a store error, shared: one failed commit answers every write it carried.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why the state store (`state_dir`'s `store.redb`) could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open for writing: one elbe per `state_dir`.
    #[error("state store {}: another process has it open (an elbe on the same state_dir?); one elbe per state_dir: stop it first, or give this one its own state_dir", path.display())]
    Locked {
        /// The store's file.
        path: PathBuf,
    },
    /// The folder or the file could not be created or opened.
    #[error("state store {}: cannot open: {source}", path.display())]
    Open {
        /// The store's file (or the folder that could not be created).
        path: PathBuf,
        #[source]
        /// What the file system or the database said.
        source: Cause,
    },
    /// The store was written by a newer elbe, in a format this one does not know.
    #[error("state store {}: format {found} is newer than this elbe's ({known}); run the newer elbe, or `elbe state reset` to forget what it keeps", path.display())]
    Format {
        /// The store's file.
        path: PathBuf,
        /// The format the file has.
        found: u64,
        /// The newest format this elbe reads.
        known: u64,
    },
    /// Reading failed.
    #[error("state store {}: cannot read: {source}", path.display())]
    Read {
        /// The store's file.
        path: PathBuf,
        #[source]
        /// What the database said.
        source: Cause,
    },
    /// A record that does not decode (written by something other than elbe, or damaged).
    #[error("state store {}: record {key} does not read as a record: {source}", path.display())]
    Corrupt {
        /// The store's file (for etcd: `etcd` and its endpoints).
        path: PathBuf,
        /// The record's key.
        key: String,
        #[source]
        /// What decoding said.
        source: serde_json::Error,
    },
    /// Writing failed: nothing of the batch was kept.
    #[error("state store {}: cannot write: {source}", path.display())]
    Write {
        /// The store's file.
        path: PathBuf,
        #[source]
        /// What the database said.
        source: Cause,
    },
    /// A guarded batch was refused: the record under `key` changed since the caller read it (another process
    /// wrote it). Nothing of the batch was written; reload, plan again and retry.
    #[error(
        "state store: {key} changed since it was read (another writer); nothing was written, retry"
    )]
    Conflict {
        /// The record's key, as its path (`registrations/web/i-1`).
        key: String,
    },
    /// etcd (cluster mode) could not be reached in time or refused the request. A write refused by etcd or never
    /// sent (connection refused) kept nothing; one that timed out was sent, and etcd may still apply it (then
    /// the watch delivers it, as any other process's write).
    #[error("state store etcd {endpoints}: cannot {operation}: {source}")]
    Etcd {
        /// The endpoints the store was given, comma-separated.
        endpoints: String,
        /// What was asked (`read`, `write`, `watch`).
        operation: &'static str,
        #[source]
        /// What etcd, the connection or the timeout said.
        source: Cause,
    },
    /// The thread that writes the store is gone (it panicked, or the store was closed).
    #[error("state store {}: its writer thread has stopped", path.display())]
    Stopped {
        /// The store's file.
        path: PathBuf,
    },
}

impl StoreError {
    /// Whether another process holds the store (a second elbe on the same `state_dir`).
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Locked { .. })
    }

    /// Whether a guarded batch was refused because a record changed ([`StoreError::Conflict`]): plan again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}
