//! Cluster mode's local copy of the last state (issue 16 item 5; DESIGN.md "The state store"): what this process
//! applied from etcd, kept in `state_dir` so that a process restarted while etcd is down serves it.
//!
//! Rule: one JSON file, `state_dir/cluster-copy.json`, written whole by write-fsync-rename (a temporary file
//! beside it, synced, renamed over it, the folder synced): a reader finds the old copy or the new one, never
//! half of either, whatever instant the process dies at. It says which etcd it came from ([`Origin`]: the
//! endpoints, sorted, and the prefix) and the revision it is at; a copy from another prefix or other endpoints
//! is not used. Writes are off the request path and off the control plane's: [`LocalCopy::keep`] hands the
//! newest state to a writer task (a `watch` channel: a burst of changes while a write runs becomes one write of
//! the newest), which writes on a blocking thread; a failed write is logged and tried again with backoff
//! (100 ms to 30 s), with the newest state by then, and never holds anything up.
//!
//! Trade-off: the whole state per write, rather than redb's per-record commits as the embedded store does: a
//! cluster's state is hundreds of records (kilobytes), the file is readable with `cat` and `jq`, and there is no
//! second database whose lock a restarted process could meet.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Contents, Revision, Versioned};

/// The copy's file inside `state_dir`.
const FILE: &str = "cluster-copy.json";
/// The layout this elbe writes; a newer one is refused, not misread.
const FORMAT_VERSION: u64 = 1;
/// The first wait before writing again after a failed write, doubled up to [`MOST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MOST_RETRY: Duration = Duration::from_secs(30);

/// Which etcd a copy came from: a copy is used only by a process on the same endpoints and prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Origin {
    /// `[cluster] etcd`, sorted (their order does not make another cluster).
    pub(crate) endpoints: Vec<String>,
    /// `[cluster] prefix`, without a trailing `/`.
    pub(crate) prefix: String,
}

impl Origin {
    pub(crate) fn new(endpoints: &[String], prefix: &str) -> Origin {
        let mut endpoints = endpoints.to_vec();
        endpoints.sort();
        endpoints.dedup();
        Origin {
            endpoints,
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }
}

/// The file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Copy {
    format: u64,
    origin: Origin,
    /// The etcd revision the records are at (this process's own writes after it may be there too).
    revision: Revision,
    written_unix_ms: u64,
    records: Vec<Versioned>,
}

/// What [`LocalCopy::read`] found.
#[derive(Debug)]
pub(crate) enum Found {
    /// A copy of this process's etcd: its state, and when it was written (ms since the Unix epoch).
    Copy {
        contents: Contents,
        written_unix_ms: u64,
    },
    /// No copy yet.
    Missing,
    /// A copy from another etcd or prefix, left unused.
    Foreign(Origin),
}

/// Why the copy could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalCopyError {
    #[error("local copy {}: cannot {what}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local copy {}: does not read as a copy: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("local copy {}: cannot encode the state: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("local copy {}: format {found} is newer than this elbe's ({FORMAT_VERSION})", path.display())]
    Format { path: PathBuf, found: u64 },
}

/// Hands the newest applied state to the writer task; dropping it lets the task finish its write and stop.
pub(crate) struct LocalCopy {
    newest: watch::Sender<Option<Contents>>,
    /// Writes that failed so far (each tried again): for tests, which wait for a failure.
    #[cfg(test)]
    failed: Arc<AtomicU64>,
}

impl LocalCopy {
    /// Where the copy of `state_dir` is kept.
    pub(crate) fn file(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Reads the copy in `state_dir` for a process on `origin`. Blocking, once, at start.
    pub(crate) fn read(state_dir: &Path, origin: &Origin) -> Result<Found, LocalCopyError> {
        let path = LocalCopy::file(state_dir);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Found::Missing)
            }
            Err(source) => {
                return Err(LocalCopyError::Io {
                    what: "read",
                    path,
                    source,
                })
            }
        };
        let copy: Copy =
            serde_json::from_slice(&bytes).map_err(|source| LocalCopyError::Decode {
                path: path.clone(),
                source,
            })?;
        if copy.format > FORMAT_VERSION {
            return Err(LocalCopyError::Format {
                path,
                found: copy.format,
            });
        }
        if copy.origin != *origin {
            return Ok(Found::Foreign(copy.origin));
        }
        Ok(Found::Copy {
            contents: Contents {
                revision: copy.revision,
                records: copy.records,
            },
            written_unix_ms: copy.written_unix_ms,
        })
    }

    /// Starts the writer task for `state_dir`'s copy of `origin`'s state.
    pub(crate) fn start(state_dir: PathBuf, origin: Origin) -> LocalCopy {
        let (newest, receiver) = watch::channel(None);
        let failed = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(state_dir, origin, receiver, failed.clone()));
        #[cfg(not(test))]
        drop(failed);
        LocalCopy {
            newest,
            #[cfg(test)]
            failed,
        }
    }

    /// How many writes failed so far.
    #[cfg(test)]
    pub(crate) fn failed_writes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Keeps `contents` (the state just applied) as the copy, soon, replacing any not written yet.
    pub(crate) fn keep(&self, contents: Contents) {
        self.newest.send_replace(Some(contents));
    }
}

/// The writer task: writes the newest state each time there is a new one, until the [`LocalCopy`] is dropped.
async fn writer(
    dir: PathBuf,
    origin: Origin,
    mut newest: watch::Receiver<Option<Contents>>,
    failed: Arc<AtomicU64>,
) {
    while newest.changed().await.is_ok() {
        let mut retry = FIRST_RETRY;
        loop {
            let Some(contents) = newest.borrow_and_update().clone() else {
                break;
            };
            let revision = contents.revision;
            let (dir_, origin_) = (dir.clone(), origin.clone());
            let written =
                tokio::task::spawn_blocking(move || write(&dir_, origin_, contents)).await;
            let error = match written {
                Ok(Ok(())) => {
                    tracing::debug!(revision = revision.0, "local copy of the state written");
                    break;
                }
                Ok(Err(error)) => error.to_string(),
                Err(panicked) => panicked.to_string(),
            };
            failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, revision = revision.0, retry_in = ?retry,
                "cannot write the local copy of the state; serving is not affected, trying again");
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MOST_RETRY);
            // The newest state by now is what is tried again (borrow_and_update above).
        }
    }
}

/// Writes the copy: a temporary file, synced, renamed over the copy, the folder synced.
fn write(dir: &Path, origin: Origin, contents: Contents) -> Result<(), LocalCopyError> {
    let path = LocalCopy::file(dir);
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| LocalCopyError::Io { what, path, source }
    };
    crate::control_plane::state_dir::create(dir).map_err(|error| LocalCopyError::Io {
        what: "create its folder",
        path: error.path,
        source: error.source,
    })?;
    let copy = Copy {
        format: FORMAT_VERSION,
        origin,
        revision: contents.revision,
        written_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        records: contents.records,
    };
    let bytes = serde_json::to_vec(&copy).map_err(|source| LocalCopyError::Encode {
        path: path.clone(),
        source,
    })?;
    let temporary = dir.join(format!(".{FILE}.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io("create", &temporary))?;
    file.write_all(&bytes).map_err(io("write", &temporary))?;
    file.sync_all().map_err(io("sync", &temporary))?;
    drop(file);
    fs::rename(&temporary, &path).map_err(io("rename into place", &path))?;
    File::open(dir)
        .and_then(|folder| folder.sync_all())
        .map_err(io("sync its folder", dir))
}

#[cfg(test)]
mod tests;
