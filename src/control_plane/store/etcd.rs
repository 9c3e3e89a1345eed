//! The cluster's state store (DESIGN.md "The state store", `[cluster]`; issue 16): the same contract as the
//! embedded store, kept in etcd so that every elbe process of a cluster sees one history.
//!
//! Rule: each record is one etcd key, `{prefix}/{Key as path}` (`/elbe/registrations/web/i-1`), whose value is the
//! record's JSON (serde of `Record`, as the embedded store keeps it, without the revision: etcd keeps that). A
//! record's [`Revision`] is etcd's `mod_revision`, the store's revision is the header revision of the read, and
//! a batch is one etcd transaction (all or none), so one batch is one etcd revision, as the trait says. A guarded
//! batch adds one `Compare` per guard (`mod_revision == R`, or `version == 0` for "absent") and, when one fails,
//! reads the guarded keys in the same transaction to name the one that changed ([`StoreError::Conflict`]).
//! Deletes are etcd deletes. Keys under the prefix that are not in a record folder (`store/etcd/path`: cluster
//! membership) are skipped, not misread.
//!
//! etcd is never on the request path: only the control plane calls it, and every call is bounded by
//! [`REQUEST_TIMEOUT`] (connecting by [`CONNECT_TIMEOUT`]), so a write while etcd is down fails within about two
//! seconds with [`StoreError::Etcd`], which the API answers 503 `ServiceUnavailable`.
//!
//! Reachability: every call and the watch report whether etcd answered (`etcd/reach`); [`EtcdStore::probe`]
//! asks etcd where it is, so a process with nothing to write still learns that etcd stopped answering.
//!
//! - `etcd/path`: etcd keys back to record keys.
//! - `etcd/reach`: whether etcd answers (the gauge, the log line per change, `/status`).
//! - `etcd/watch`: the watch that never misses a change.
//! - `etcd/lease`: leases, and keys written under one (cluster membership and health per node).
//! - `etcd/folder`: a folder of keys outside the records (`members/`, `health/`) mirrored in memory.
//! - `etcd/secret`: secrets every process shares (the stickiness key), written once.
//!
//! Trade-off: a batch that names one key twice keeps only its last change (etcd refuses a transaction that
//! names a key twice; applied in order the last one wins anyway). etcd caps a transaction at `--max-txn-ops`
//! operations (128 by default): a batch larger than that is refused whole, with etcd's reason, rather than split
//! into batches that would not be atomic. A batch that changes nothing (no change, or deletes of keys that are
//! not there) takes no new revision in etcd; it answers the revision etcd is at.

mod folder;
mod lease;
mod path;
mod reach;
mod secret;
#[cfg(test)]
mod tests;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};

pub(crate) use folder::{Entries, Mirror};
pub(crate) use lease::{Lease, LeasedChange, Renewed};
#[cfg(test)]
pub(crate) use watch::Watch;
pub(crate) use watch::{WatchBatch, WatchChange, WatchEvent};

use super::Versioned;
use super::{
    Change, Contents, Guard, Key, Record, Revision, StateStore, StoreError, StoreFuture,
    StoreStatus,
};
use path::Parsed;
pub(crate) use reach::Reach;

/// The longest any one call to etcd may take (a read, a transaction, opening a watch): the time an API write
/// waits before answering 503 while etcd is unreachable.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a connection to an endpoint may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on the connection (and how long an answer may take), so a watch on an etcd that stopped
/// answering (SIGSTOP, a network partition) is noticed and reopened. etcd refuses pings more often than every
/// 5 s (`--grpc-keepalive-min-time`).
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));

/// A state store in etcd. Cloning shares the connection.
#[derive(Clone)]
pub(crate) struct EtcdStore {
    client: Client,
    /// `{prefix}/`: every key of this store starts with it.
    prefix: String,
    /// The endpoints, comma-separated, for errors.
    endpoints: Arc<str>,
    /// Whether etcd answers, from every call of every clone.
    reach: Arc<Reach>,
}

/// A call that took longer than [`REQUEST_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
struct TimedOut(Duration);

impl EtcdStore {
    /// A store on the etcd cluster at `endpoints` (`http://10.0.0.5:2379`), with its records under `prefix`
    /// (`/elbe`). Connections are opened on first use, so this succeeds while etcd is down; only endpoints
    /// that are not URLs fail here.
    pub(crate) async fn connect(
        endpoints: &[String],
        prefix: &str,
    ) -> Result<EtcdStore, StoreError> {
        let joined: Arc<str> = endpoints.join(",").into();
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
            .with_keep_alive_while_idle(true);
        // No tonic request timeout: `bounded` is the one bound, around every call, with one message.
        let connecting = Client::connect(endpoints, Some(options));
        let client = bounded(&joined, "connect", connecting).await?;
        Ok(EtcdStore {
            client,
            prefix: format!("{}/", prefix.trim_end_matches('/')),
            reach: Arc::new(Reach::new(&joined)),
            endpoints: joined,
        })
    }

    /// Whether etcd answers, as every call so far says.
    pub(crate) fn reach(&self) -> &Reach {
        &self.reach
    }

    /// Asks etcd where it is, only so that [`EtcdStore::reach`] learns whether it answers.
    pub(crate) async fn probe(&self) -> Result<(), StoreError> {
        self.position().await.map(|_| ())
    }

    /// The etcd key of `key`.
    fn etcd_key(&self, key: &Key) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The record an etcd key and value hold: `None` for a key that is not a record's.
    fn decode(&self, kv: &KeyValue) -> Result<Option<Versioned>, StoreError> {
        let key = String::from_utf8_lossy(kv.key());
        let path = key.strip_prefix(&self.prefix).unwrap_or(&key);
        let corrupt = |source| StoreError::Corrupt {
            path: format!("etcd {}", self.endpoints).into(),
            key: key.to_string(),
            source,
        };
        match path::parse(path) {
            Parsed::Other => Ok(None),
            Parsed::Damaged => Err(corrupt(serde::de::Error::custom(
                "the key is not a record's key",
            ))),
            Parsed::Record(expected) => {
                let record: Record = serde_json::from_slice(kv.value()).map_err(corrupt)?;
                if record.key() != expected {
                    return Err(corrupt(serde::de::Error::custom(format!(
                        "the record is {}'s",
                        record.key()
                    ))));
                }
                Ok(Some(Versioned {
                    revision: revision(kv.mod_revision()),
                    record,
                }))
            }
        }
    }

    /// Every record under the prefix, and the revision of the read.
    async fn read(&self) -> Result<Contents, StoreError> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_prefix();
        let response = self
            .bounded("read", kv.get(self.prefix.as_str(), Some(options)))
            .await?;
        let mut records = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            if let Some(versioned) = self.decode(kv)? {
                records.push(versioned);
            }
        }
        Ok(Contents {
            revision: revision(response.header().map_or(0, |h| h.revision())),
            records,
        })
    }

    /// The revision etcd is at and the cluster it is (for the watch's checks after a reconnection).
    async fn position(&self) -> Result<(Revision, u64), StoreError> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_prefix().with_count_only();
        let response = self
            .bounded("read", kv.get(self.prefix.as_str(), Some(options)))
            .await?;
        let header = response.header();
        Ok((
            revision(header.map_or(0, |h| h.revision())),
            header.map_or(0, |h| h.cluster_id()),
        ))
    }

    /// One transaction: the guards' compares, then the changes; on a failed compare, the guarded keys' reads.
    async fn write(
        &self,
        guards: Vec<Guard>,
        changes: Vec<Change>,
    ) -> Result<Revision, StoreError> {
        let compares: Vec<Compare> = guards
            .iter()
            .map(|guard| {
                let key = self.etcd_key(&guard.key);
                match guard.revision {
                    Some(at) => Compare::mod_revision(key, CompareOp::Equal, etcd_revision(at)),
                    None => Compare::version(key, CompareOp::Equal, 0),
                }
            })
            .collect();
        let mut operations = Vec::with_capacity(changes.len());
        for change in last_change_per_key(changes) {
            operations.push(match change {
                Change::Put(record) => {
                    let value = serde_json::to_vec(&record).map_err(|source| StoreError::Etcd {
                        endpoints: self.endpoints.to_string(),
                        operation: "encode a record",
                        source: Arc::new(source),
                    })?;
                    TxnOp::put(self.etcd_key(&record.key()), value, None)
                }
                Change::Delete(key) => TxnOp::delete(self.etcd_key(&key), None),
            });
        }
        let reads: Vec<TxnOp> = guards
            .iter()
            .map(|guard| TxnOp::get(self.etcd_key(&guard.key), None))
            .collect();
        let txn = Txn::new()
            .when(compares)
            .and_then(operations)
            .or_else(reads);
        let mut kv = self.client.kv_client();
        let response = self.bounded("write", kv.txn(txn)).await?;
        if response.succeeded() {
            return Ok(revision(response.header().map_or(0, |h| h.revision())));
        }
        let found = response.op_responses().into_iter().map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| revision(kv.mod_revision())),
            _ => None,
        });
        let changed = guards
            .iter()
            .zip(found)
            .find(|(guard, found)| guard.revision != *found)
            .map_or(&guards[0], |(guard, _)| guard);
        Err(StoreError::Conflict {
            key: changed.key.to_string(),
        })
    }

    /// `call`, bounded by [`REQUEST_TIMEOUT`], its failure named as `operation` on this store's endpoints; its
    /// outcome tells [`EtcdStore::reach`] whether etcd answered.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, call).await;
        match &outcome {
            Ok(Ok(_)) => self.reach.answered(),
            Ok(Err(error)) if etcd_answered(error) => self.reach.answered(),
            Ok(Err(error)) => self.reach.failed(error),
            Err(_) => self.reach.failed(&TimedOut(REQUEST_TIMEOUT)),
        }
        answer(&self.endpoints, operation, outcome)
    }
}

impl StateStore for EtcdStore {
    fn load(&self) -> StoreFuture<'_, Contents> {
        Box::pin(self.read())
    }

    fn apply(&self, changes: Vec<Change>) -> StoreFuture<'_, Revision> {
        Box::pin(self.write(Vec::new(), changes))
    }

    fn apply_guarded(&self, guards: Vec<Guard>, changes: Vec<Change>) -> StoreFuture<'_, Revision> {
        Box::pin(self.write(guards, changes))
    }

    fn status(&self) -> Option<StoreStatus> {
        Some(self.reach.status())
    }
}

async fn bounded<T>(
    endpoints: &str,
    operation: &'static str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    answer(
        endpoints,
        operation,
        tokio::time::timeout(REQUEST_TIMEOUT, call).await,
    )
}

/// A bounded call's outcome as the store answers it.
fn answer<T>(
    endpoints: &str,
    operation: &'static str,
    outcome: Result<Result<T, etcd_client::Error>, tokio::time::error::Elapsed>,
) -> Result<T, StoreError> {
    let error = |source: Arc<dyn std::error::Error + Send + Sync>| StoreError::Etcd {
        endpoints: endpoints.to_owned(),
        operation,
        source,
    };
    match outcome {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(source)) => Err(error(Arc::new(source))),
        Err(_) => Err(error(Arc::new(TimedOut(REQUEST_TIMEOUT)))),
    }
}

/// gRPC's codes for "no answer came" (the connection or the deadline, not etcd): `CANCELLED`, `UNKNOWN`,
/// `DEADLINE_EXCEEDED`, `UNAVAILABLE` (grpc/doc/statuscodes.md; tonic's `Code` as `i32`).
const NO_ANSWER_CODES: [i32; 4] = [1, 2, 4, 14];

/// Whether a failed call got its failure from etcd (an answer: etcd is reachable), not from the transport.
fn etcd_answered(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            !NO_ANSWER_CODES.contains(&i32::from(status.code()))
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => false,
        _ => true,
    }
}

/// The changes of a batch, the last one per key only, in the order their last changes came.
fn last_change_per_key(changes: Vec<Change>) -> Vec<Change> {
    let key = |change: &Change| match change {
        Change::Put(record) => record.key(),
        Change::Delete(key) => key.clone(),
    };
    let mut kept: Vec<Change> = Vec::with_capacity(changes.len());
    for change in changes {
        let this = key(&change);
        kept.retain(|earlier| key(earlier) != this);
        kept.push(change);
    }
    kept
}

/// etcd's revisions are `i64` and start at 1; elbe's are `u64`.
fn revision(etcd: i64) -> Revision {
    Revision(u64::try_from(etcd).unwrap_or(0))
}

fn etcd_revision(revision: Revision) -> i64 {
    i64::try_from(revision.0).unwrap_or(i64::MAX)
}
