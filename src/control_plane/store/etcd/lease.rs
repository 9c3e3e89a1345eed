//! Leases: keys that live only while this process keeps telling etcd it is alive (issue 16 items 3 and 4: a
//! member's key and its health views, `{prefix}/members/...` and `{prefix}/health/...`).
//!
//! Rule: [`EtcdStore::grant`] asks etcd for a lease of a TTL; [`Lease::renew`] sends one keep-alive on a stream
//! kept open from one renewal to the next (opened again after it broke) and says whether the lease still lives
//! (etcd answers a TTL of 0, or "lease not found", for one that expired while etcd could not be reached);
//! [`EtcdStore::write_leased`] puts and deletes keys under it, a transaction per [`TXN_OPS`] changes;
//! [`EtcdStore::revoke`] ends it, and etcd deletes every key under it at once (one revision: the others see the
//! member and its views go together). Every call is bounded by [`REQUEST_TIMEOUT`], as the store's are.
//!
//! Trade-off: a lease that expired is reported as [`Renewed::Expired`] (the caller grants a new one and writes
//! everything again), told apart from an etcd that does not answer by etcd's words ("lease not found"), which
//! is what etcd-client gives; anything else is an error to retry.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp};

use super::{EtcdStore, TimedOut, REQUEST_TIMEOUT};
use crate::control_plane::store::StoreError;

/// The most changes one transaction of [`EtcdStore::write_leased`] carries (etcd's `--max-txn-ops` is 128).
const TXN_OPS: usize = 100;

/// A lease this process holds.
pub(crate) struct Lease {
    id: i64,
    /// The keep-alive stream, once opened.
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// Whether a lease still lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    Alive,
    /// Gone (it expired): its keys are deleted.
    Expired,
}

/// One change under a lease, at a path below the prefix (`members/lb-1a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeasedChange {
    Put(String, Vec<u8>),
    Delete(String),
}

/// Why a call on a lease failed.
enum Failure {
    /// etcd says the lease does not exist.
    NotFound,
    /// etcd could not be reached, or said something else.
    Etcd(Arc<dyn std::error::Error + Send + Sync>),
}

impl Failure {
    fn of(error: etcd_client::Error) -> Failure {
        if error.to_string().contains("lease not found") {
            Failure::NotFound
        } else {
            Failure::Etcd(Arc::new(error))
        }
    }
}

/// The keep-alive stream ended without an answer (etcd closed it).
#[derive(Debug, thiserror::Error)]
#[error("etcd closed the lease keep-alive stream")]
struct StreamEnded;

impl EtcdStore {
    /// A new lease of `ttl` (whole seconds, at least one).
    pub(crate) async fn grant(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut leases = self.client.lease_client();
        let granted = self
            .bounded("grant a lease", leases.grant(seconds, None))
            .await?;
        Ok(Lease {
            id: granted.id(),
            stream: None,
        })
    }

    /// Puts and deletes `changes` under `lease`, in order; `Ok(Renewed::Expired)` when the lease is gone (nothing
    /// after the failed transaction was written). A failure leaves the transactions before it written.
    pub(crate) async fn write_leased(
        &self,
        lease: &Lease,
        changes: Vec<LeasedChange>,
    ) -> Result<Renewed, StoreError> {
        for chunk in changes.chunks(TXN_OPS) {
            let operations: Vec<TxnOp> = chunk
                .iter()
                .map(|change| match change {
                    LeasedChange::Put(path, value) => TxnOp::put(
                        format!("{}{path}", self.prefix),
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease.id)),
                    ),
                    LeasedChange::Delete(path) => {
                        TxnOp::delete(format!("{}{path}", self.prefix), None)
                    }
                })
                .collect();
            let mut kv = self.client.kv_client();
            let txn = kv.txn(Txn::new().and_then(operations));
            match self.call(txn).await {
                Ok(_) => {}
                Err(Failure::NotFound) => return Ok(Renewed::Expired),
                Err(Failure::Etcd(source)) => {
                    return Err(self.failed("write under the lease", source))
                }
            }
        }
        Ok(Renewed::Alive)
    }

    /// Ends `lease`: etcd deletes every key under it.
    pub(crate) async fn revoke(&self, lease: Lease) -> Result<(), StoreError> {
        let mut leases = self.client.lease_client();
        match self.call(leases.revoke(lease.id)).await {
            Ok(_) | Err(Failure::NotFound) => Ok(()),
            Err(Failure::Etcd(source)) => Err(self.failed("revoke the lease", source)),
        }
    }

    /// `call`, bounded by [`REQUEST_TIMEOUT`], its failure told apart as [`Failure`].
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(Failure::of(error)),
            Err(_) => Err(Failure::Etcd(Arc::new(TimedOut(REQUEST_TIMEOUT)))),
        }
    }

    fn failed(
        &self,
        operation: &'static str,
        source: Arc<dyn std::error::Error + Send + Sync>,
    ) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.to_string(),
            operation,
            source,
        }
    }
}

impl Lease {
    /// etcd's id of the lease.
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// One keep-alive: whether the lease still lives. An error (etcd unreachable) says nothing about the lease;
    /// the stream is opened again at the next renewal.
    pub(crate) async fn renew(&mut self, store: &EtcdStore) -> Result<Renewed, StoreError> {
        let renewed = store.call(self.keep_alive(store)).await;
        match renewed {
            Ok(renewed) => Ok(renewed),
            Err(Failure::NotFound) => {
                self.stream = None;
                Ok(Renewed::Expired)
            }
            Err(Failure::Etcd(source)) => {
                self.stream = None;
                Err(store.failed("keep the lease alive", source))
            }
        }
    }

    async fn keep_alive(&mut self, store: &EtcdStore) -> Result<Renewed, etcd_client::Error> {
        let Some((keeper, stream)) = self.stream.as_mut() else {
            // Opening the stream sends the first keep-alive and reads its answer: that is this renewal.
            let opened = store.client.lease_client().keep_alive(self.id).await?;
            self.stream = Some(opened);
            return Ok(Renewed::Alive);
        };
        keeper.keep_alive().await?;
        match stream.message().await? {
            Some(answer) if answer.ttl() > 0 => Ok(Renewed::Alive),
            Some(_) => Ok(Renewed::Expired),
            None => Err(etcd_client::Error::IoError(std::io::Error::other(
                StreamEnded,
            ))),
        }
    }
}
