//! A folder of keys under the prefix, mirrored in memory (issue 16 items 3 and 4: `members/` and `health/`, what
//! every process reads of the others).
//!
//! Rule: a task loads the folder whole (one range read, at one revision) and publishes it, then watches the
//! folder from the revision after and publishes it again after every response that changed it. When the watch
//! breaks, or etcd compacted its history past it, the task loads the folder whole again (after a backoff from
//! 100 ms to 2 s) and watches from there. While etcd cannot be reached the entries last published stay: a member
//! is not forgotten because etcd is away.
//!
//! Trade-off: reloading the folder at every reconnection, rather than resuming after the last revision as the
//! store's watch does (`etcd/watch`), costs one read of a few keys per member, and needs none of the checks a
//! resume needs (a compaction, an etcd restored from an older copy or replaced): the folders are small.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::EtcdStore;

/// The first wait before loading again, doubled after each failed attempt up to [`MOST_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MOST_BACKOFF: Duration = Duration::from_secs(2);

/// A folder's keys (the path below the folder: `lb-1a` for `{prefix}/members/lb-1a`) and values.
pub(crate) type Entries = Arc<BTreeMap<String, Vec<u8>>>;

/// A folder mirrored by a task; dropping it stops the task.
pub(crate) struct Mirror {
    /// `None` until the first load.
    entries: watch::Receiver<Option<Entries>>,
    task: JoinHandle<()>,
}

impl Mirror {
    /// The entries as last loaded or watched; `changed()` wakes at every change.
    pub(crate) fn entries(&self) -> watch::Receiver<Option<Entries>> {
        self.entries.clone()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EtcdStore {
    /// Mirrors the folder `folder` (`members`) under the prefix.
    pub(crate) fn mirror(&self, folder: &str) -> Mirror {
        let (sender, entries) = watch::channel(None);
        let under = format!("{}{}/", self.prefix, folder.trim_matches('/'));
        let task = tokio::spawn(follow(self.clone(), under, sender));
        Mirror { entries, task }
    }
}

/// The mirror's task: loads, watches, and loads again whenever the watch ends.
async fn follow(store: EtcdStore, under: String, sender: watch::Sender<Option<Entries>>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (error, watched) = mirror_once(&store, &under, &sender).await;
        if watched {
            backoff = FIRST_BACKOFF;
        }
        tracing::warn!(folder = %under, %error, retry_in = ?backoff, "cluster folder watch lost; loading it again (the last entries stay meanwhile)");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MOST_BACKOFF);
    }
}

/// Loads the folder, publishes it, and publishes every change until the watch ends: why it ended, and whether
/// the watch had opened.
async fn mirror_once(
    store: &EtcdStore,
    under: &str,
    sender: &watch::Sender<Option<Entries>>,
) -> (String, bool) {
    let mut kv = store.client.kv_client();
    let read = kv.get(under, Some(GetOptions::new().with_prefix()));
    let response = match store.bounded("read a cluster folder", read).await {
        Ok(response) => response,
        Err(error) => return (error.to_string(), false),
    };
    let path = |key: &[u8]| {
        let key = String::from_utf8_lossy(key);
        key.strip_prefix(under).unwrap_or(&key).to_owned()
    };
    let mut entries: BTreeMap<String, Vec<u8>> = response
        .kvs()
        .iter()
        .map(|kv| (path(kv.key()), kv.value().to_vec()))
        .collect();
    let revision = response.header().map_or(0, |h| h.revision());
    sender.send_replace(Some(Arc::new(entries.clone())));
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision.saturating_add(1));
    let mut client = store.client.watch_client();
    let opening = client.watch(under, Some(options));
    let mut stream = match store.bounded("watch a cluster folder", opening).await {
        Ok(stream) => stream,
        Err(error) => return (error.to_string(), false),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return ("etcd closed the watch stream".into(), true),
            Err(error) => return (error.to_string(), true),
        };
        if response.compact_revision() > 0 {
            return (
                format!(
                    "etcd compacted its history to revision {}",
                    response.compact_revision()
                ),
                true,
            );
        }
        if response.canceled() {
            return (
                format!("etcd cancelled the watch: {}", response.cancel_reason()),
                true,
            );
        }
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            changed = true;
            match event.event_type() {
                EventType::Put => entries.insert(path(kv.key()), kv.value().to_vec()),
                EventType::Delete => entries.remove(&path(kv.key())),
            };
        }
        if changed {
            sender.send_replace(Some(Arc::new(entries.clone())));
        }
    }
}
