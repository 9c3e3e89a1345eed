//! The watch on the store's prefix: every change after a revision, in order, batch by batch, across etcd's
//! restarts and dropped connections (issue 16 item 2).
//!
//! Rule: the watch remembers the last revision it delivered and, whenever its stream breaks, opens a new one
//! from the revision after it, so nothing is missed and nothing is delivered twice. Before each (re)opening it
//! asks etcd where it is: a revision lower than the one delivered (an etcd restored from an older copy, or a
//! new one) or another cluster id means the history it was following is gone, and so does a compaction past the
//! revision it asks for; each ends the watch with [`WatchEvent::Reset`]: the caller reloads everything with
//! `load` and starts a new watch from the loaded revision. Reconnections back off from 100 ms to 2 s; a lost
//! stream is logged once, the attempts after it at debug (that etcd is unreachable is `etcd/reach`'s one line).
//!
//! Trade-off: a record that does not decode is logged and left out (the watch goes on for every other key; the
//! next `load` reports it as corrupt), rather than ending the watch of every process on one bad write by
//! something other than elbe.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::{Key, Revision, StoreError, Versioned};
use super::{etcd_revision, path, revision, EtcdStore};

/// The first wait before reconnecting, doubled after each failed attempt up to [`MOST_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MOST_BACKOFF: Duration = Duration::from_secs(2);
/// Batches waiting for the caller: a slow caller holds the watch back (etcd keeps the history meanwhile).
const QUEUE: usize = 64;

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// The changes of one etcd revision (one batch), in revision order.
    Batch(WatchBatch),
    /// The history after the last delivered revision is gone (compacted, or etcd went back or is another
    /// cluster): reload everything with `load`, then watch again from the loaded revision. The watch has ended.
    Reset(String),
}

/// The changes one batch made, all at `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchBatch {
    pub revision: Revision,
    pub changes: Vec<WatchChange>,
}

/// One change of a watched batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchChange {
    /// The record written, with the batch's revision.
    Put(Versioned),
    /// The record under the key was deleted.
    Delete(Key),
}

/// A running watch; dropping it stops it.
pub(crate) struct Watch {
    events: mpsc::Receiver<WatchEvent>,
    task: JoinHandle<()>,
}

impl Watch {
    /// The next event; `None` after a [`WatchEvent::Reset`].
    pub(crate) async fn next(&mut self) -> Option<WatchEvent> {
        self.events.recv().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EtcdStore {
    /// Watches every record changed after `from` (the revision of a `load`, or the last batch applied).
    pub(crate) fn watch(&self, from: Revision) -> Watch {
        let (sender, events) = mpsc::channel(QUEUE);
        let task = tokio::spawn(follow(self.clone(), from, sender));
        Watch { events, task }
    }
}

/// Why one watch stream ended.
enum Ended {
    /// The caller dropped the watch.
    Closed,
    /// The history is gone: tell the caller to reload.
    Reset(String),
    /// The stream broke (or could not open): reconnect. `opened`: it had been opened (the backoff starts over).
    Lost { error: String, opened: bool },
}

/// The watch's task: streams, reconnects, and ends with a reset or when the caller is gone.
async fn follow(store: EtcdStore, from: Revision, sender: mpsc::Sender<WatchEvent>) {
    let mut at = Position {
        delivered: from,
        cluster: None,
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        match stream(&store, &mut at, &sender).await {
            Ended::Closed => return,
            Ended::Reset(reason) => {
                tracing::warn!(%reason, delivered = at.delivered.0, "state store watch: reload everything");
                let _ = sender.send(WatchEvent::Reset(reason)).await;
                return;
            }
            Ended::Lost { error, opened } => {
                if opened {
                    backoff = FIRST_BACKOFF;
                    tracing::warn!(%error, delivered = at.delivered.0, "state store watch lost; resuming after the last delivered revision");
                } else {
                    // Each attempt while etcd is away: `etcd/reach` says once that it is unreachable.
                    tracing::debug!(%error, delivered = at.delivered.0, retry_in = ?backoff, "state store watch: cannot resume yet");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = sender.closed() => return,
                }
                backoff = (backoff * 2).min(MOST_BACKOFF);
            }
        }
    }
}

/// Where the watch is: the last revision delivered, and the cluster it was delivered from.
struct Position {
    delivered: Revision,
    cluster: Option<u64>,
}

/// Opens one watch stream after `at.delivered` and delivers from it until it ends.
async fn stream(store: &EtcdStore, at: &mut Position, sender: &mpsc::Sender<WatchEvent>) -> Ended {
    let lost = |error: StoreError| Ended::Lost {
        error: error.to_string(),
        opened: false,
    };
    let (now, cluster) = match store.position().await {
        Ok(position) => position,
        Err(error) => return lost(error),
    };
    if at.cluster.is_some_and(|known| known != cluster) {
        return Ended::Reset(format!(
            "etcd is another cluster now (id {cluster:x}, was {:x})",
            at.cluster.unwrap_or_default()
        ));
    }
    at.cluster = Some(cluster);
    if now < at.delivered {
        return Ended::Reset(format!(
            "etcd's revision went back to {} from {} (restored or replaced)",
            now.0, at.delivered.0
        ));
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(etcd_revision(at.delivered).saturating_add(1));
    let mut client = store.client.watch_client();
    let opening = client.watch(store.prefix.as_str(), Some(options));
    let mut watch = match store.bounded("watch", opening).await {
        Ok(watch) => watch,
        Err(error) => return lost(error),
    };
    loop {
        let message = tokio::select! {
            message = watch.message() => message,
            () = sender.closed() => return Ended::Closed,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return lost_opened("etcd closed the watch stream".into()),
            Err(error) => {
                if super::etcd_answered(&error) {
                    store.reach.answered();
                } else {
                    store.reach.failed(&error);
                }
                return lost_opened(error.to_string());
            }
        };
        store.reach.answered();
        if response.compact_revision() > 0 {
            return Ended::Reset(format!(
                "etcd compacted its history to revision {}, past {}",
                response.compact_revision(),
                at.delivered.0 + 1
            ));
        }
        if response.canceled() {
            return lost_opened(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            ));
        }
        let (batches, seen) = batches(store, &response);
        for batch in batches {
            let revision = batch.revision;
            if sender.send(WatchEvent::Batch(batch)).await.is_err() {
                return Ended::Closed;
            }
            at.delivered = revision;
        }
        // Revisions that changed only other keys (membership) were seen too: resume after them.
        at.delivered = at.delivered.max(seen);
    }
}

fn lost_opened(error: String) -> Ended {
    Ended::Lost {
        error,
        opened: true,
    }
}

/// The response's events as batches, one per revision, in order, keys that are not records left out; and the
/// last revision the response saw.
fn batches(store: &EtcdStore, response: &WatchResponse) -> (Vec<WatchBatch>, Revision) {
    let mut batches: Vec<WatchBatch> = Vec::new();
    let mut seen = Revision(0);
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        let at = revision(kv.mod_revision());
        seen = seen.max(at);
        let Some(change) = change(store, event.event_type(), kv) else {
            continue;
        };
        match batches.last_mut() {
            Some(last) if last.revision == at => last.changes.push(change),
            _ => batches.push(WatchBatch {
                revision: at,
                changes: vec![change],
            }),
        }
    }
    (batches, seen)
}

/// The change one event made to a record; `None` for a key that is not a record's (or does not decode).
fn change(store: &EtcdStore, kind: EventType, kv: &etcd_client::KeyValue) -> Option<WatchChange> {
    match kind {
        EventType::Put => match store.decode(kv) {
            Ok(versioned) => versioned.map(WatchChange::Put),
            Err(error) => {
                tracing::error!(%error, "state store watch: a record that does not decode is left out");
                None
            }
        },
        EventType::Delete => {
            let key = String::from_utf8_lossy(kv.key());
            match path::parse(key.strip_prefix(&store.prefix).unwrap_or(&key)) {
                path::Parsed::Record(key) => Some(WatchChange::Delete(key)),
                path::Parsed::Damaged | path::Parsed::Other => None,
            }
        }
    }
}
