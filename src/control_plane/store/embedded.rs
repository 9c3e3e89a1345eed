//! The embedded store: redb in `state_dir/store.redb`, for one elbe process.
//!
//! Rule: redb is an ACID embedded database whose commit returns only once the data is on disk (copy-on-write
//! pages, checksummed commit slots: after a crash the file holds the last commit, never half of one). One thread
//! owns the database; writes reach it on a channel, and it takes every write waiting when it is free and commits
//! them in one transaction, one fsync (group commit), each still its own revision, then answers each. The file is
//! locked by the process that writes it (redb's `SingleWriter` mode: a second writer gets [`StoreError::Locked`];
//! readers such as `elbe state show` may read beside it).
//!
//! Trade-off: a dedicated thread rather than `spawn_blocking` per write, so the runtime never blocks on disk,
//! writes are committed in the order they were sent, and concurrent writers share fsyncs instead of queueing one
//! fsync each on redb's write lock. redb over write-fsync-rename of one file: a write costs one small commit, not
//! a rewrite of every record, and the crash safety is redb's, tested, not ours.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::error::Cause;
use super::{Change, Contents, Record, Revision, StateStore, StoreError, StoreFuture, Versioned};

/// The store's file inside `state_dir`.
const FILE: &str = "store.redb";
/// Every record, by its key (`Key`'s path), as JSON of [`Versioned`].
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// The store's revision and format.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
const FORMAT: &str = "format";
/// The layout this elbe writes (the tables above, JSON values); a newer one is refused, not misread.
const FORMAT_VERSION: u64 = 1;
/// The most writes one commit carries: bounds the time the first of them waits for the last.
const MAX_GROUP: usize = 256;
/// redb's page cache: the store is small (a record per registration), the default (1 GiB) is for databases.
const CACHE_BYTES: usize = 8 << 20;

/// The embedded store of this process.
pub(crate) struct EmbeddedStore {
    path: PathBuf,
    requests: mpsc::Sender<Request>,
}

/// Where the writer thread answers a write.
type Answer = oneshot::Sender<Result<Revision, StoreError>>;

enum Request {
    Load(oneshot::Sender<Result<Contents, StoreError>>),
    Apply(Vec<Change>, Answer),
    /// Stops the thread, closing the file, then answers.
    Close(oneshot::Sender<()>),
}

/// Where the store of `state_dir` is kept.
pub(crate) fn file(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl EmbeddedStore {
    /// Opens the store in `dir` for writing (creating the folder, mode 0700, and the file), or fails with
    /// [`StoreError::Locked`] when another process has it open.
    pub(crate) async fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        let (dir, path) = (dir.to_owned(), file(dir));
        let (requests, queue) = mpsc::channel();
        let (opened, open_result) = oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("elbe-store".into())
            .spawn(move || match open_writer(&dir, &thread_path) {
                Ok(db) => {
                    if opened.send(Ok(())).is_err() {
                        return;
                    }
                    let closing = serve(&db, &thread_path, &queue);
                    // The lock goes with the file: close it before saying it is closed.
                    if let Err(error) = db.close() {
                        tracing::warn!(path = %thread_path.display(), %error, "closing the state store");
                    }
                    if let Some(done) = closing {
                        let _ = done.send(());
                    }
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source: Arc::new(source),
            })?;
        open_result
            .await
            .map_err(|_| StoreError::Stopped { path: path.clone() })??;
        Ok(EmbeddedStore { path, requests })
    }

    /// Reads the store in `dir`: beside a running elbe too. `None` when there is no store yet. A store whose
    /// writer was killed needs redb's repair, which only a writer can make: then, when no process holds it, it is
    /// opened for writing (repaired as the next start would) and read. Blocking: for the `elbe state` command
    /// and tests, not the runtime.
    pub(crate) fn read(dir: &Path) -> Result<Option<Contents>, StoreError> {
        let path = file(dir);
        if !path.exists() {
            return Ok(None);
        }
        match read_only(&path) {
            Err(redb::DatabaseError::RepairAborted) => {}
            opened => {
                let db = opened.map_err(|source| open_error(&path, source))?;
                return read_all(&db, &path).map(Some);
            }
        }
        match open_writer(dir, &path) {
            Ok(db) => read_all(&db, &path).map(Some),
            // A writer started meanwhile (and repaired it): read beside it.
            Err(StoreError::Locked { .. }) => {
                let db = read_only(&path).map_err(|source| open_error(&path, source))?;
                read_all(&db, &path).map(Some)
            }
            Err(error) => Err(error),
        }
    }

    /// The store's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Finishes the writes sent so far, closes the file (releasing its lock) and stops the thread.
    pub(crate) async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.requests.send(Request::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Stopped {
            path: self.path.clone(),
        };
        let (answer, answered) = oneshot::channel();
        self.requests.send(request(answer)).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

impl StateStore for EmbeddedStore {
    fn load(&self) -> StoreFuture<'_, Contents> {
        Box::pin(self.ask(Request::Load))
    }

    fn apply(&self, changes: Vec<Change>) -> StoreFuture<'_, Revision> {
        Box::pin(self.ask(|answer| Request::Apply(changes, answer)))
    }
}

fn read_only(path: &Path) -> Result<redb::ReadOnlyDatabase, redb::DatabaseError> {
    redb::Builder::new()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .set_cache_size(CACHE_BYTES)
        .open_read_only(path)
}

fn open_error(path: &Path, source: redb::DatabaseError) -> StoreError {
    match source {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_owned(),
        },
        source => StoreError::Open {
            path: path.to_owned(),
            source: Arc::new(source),
        },
    }
}

/// Opens (or creates) the file for writing, with its tables, and checks its format.
fn open_writer(dir: &Path, path: &Path) -> Result<Database, StoreError> {
    crate::control_plane::state_dir::create(dir).map_err(|error| StoreError::Open {
        path: error.path.clone(),
        source: Arc::new(error),
    })?;
    let db = redb::Builder::new()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|source| open_error(path, source))?;
    let init = || -> Result<u64, redb::Error> {
        let txn = db.begin_write()?;
        let format = {
            txn.open_table(RECORDS)?;
            let mut meta = txn.open_table(META)?;
            let found = meta.get(FORMAT)?.map(|v| v.value());
            match found {
                Some(found) => found,
                None => {
                    meta.insert(FORMAT, FORMAT_VERSION)?;
                    FORMAT_VERSION
                }
            }
        };
        txn.commit()?;
        Ok(format)
    };
    let found = init().map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source: Arc::new(source),
    })?;
    if found > FORMAT_VERSION {
        return Err(StoreError::Format {
            path: path.to_owned(),
            found,
            known: FORMAT_VERSION,
        });
    }
    Ok(db)
}

/// The writer thread: serves requests until every handle is gone, or until [`Request::Close`] arrives (returned,
/// to be answered once the file is closed).
fn serve(
    db: &Database,
    path: &Path,
    queue: &mpsc::Receiver<Request>,
) -> Option<oneshot::Sender<()>> {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        let mut loads = Vec::new();
        let mut close = None;
        for request in group {
            match request {
                Request::Apply(changes, answer) => writes.push((changes, answer)),
                Request::Load(answer) => loads.push(answer),
                Request::Close(done) => close = Some(done),
            }
        }
        if !writes.is_empty() {
            commit(db, path, writes);
        }
        for answer in loads {
            let _ = answer.send(read_all(db, path));
        }
        if close.is_some() {
            return close;
        }
    }
    None
}

/// Commits a group of batches in one transaction and answers each with its revision (or all with the error).
fn commit(db: &Database, path: &Path, writes: Vec<(Vec<Change>, Answer)>) {
    let batches: Vec<&[Change]> = writes
        .iter()
        .map(|(changes, _)| changes.as_slice())
        .collect();
    // Wall-clock time for a log line only (tokio's clock is for the runtime; this is a plain thread).
    let started = std::time::SystemTime::now();
    match write_group(db, &batches) {
        Ok(revisions) => {
            let took = started.elapsed().unwrap_or_default();
            tracing::debug!(writes = writes.len(), ?took, "state store commit");
            for ((_, answer), revision) in writes.into_iter().zip(revisions) {
                let _ = answer.send(Ok(revision));
            }
        }
        Err(source) => {
            tracing::error!(path = %path.display(), error = %source, writes = writes.len(), "state store write failed; nothing of it was kept");
            let source: Cause = Arc::new(source);
            for (_, answer) in writes {
                let _ = answer.send(Err(StoreError::Write {
                    path: path.to_owned(),
                    source: source.clone(),
                }));
            }
        }
    }
}

/// Why a group could not be written: the database, or a record that does not encode.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Database(#[from] redb::Error),
    #[error("cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
}

fn write_group(db: &Database, batches: &[&[Change]]) -> Result<Vec<Revision>, WriteError> {
    let txn = db.begin_write().map_err(redb::Error::from)?;
    let revisions = {
        let mut meta = txn.open_table(META).map_err(redb::Error::from)?;
        let mut records = txn.open_table(RECORDS).map_err(redb::Error::from)?;
        let mut revision = meta
            .get(REVISION)
            .map_err(redb::Error::from)?
            .map_or(0, |v| v.value());
        let mut revisions = Vec::with_capacity(batches.len());
        for batch in batches {
            revision += 1;
            for change in *batch {
                match change {
                    Change::Put(record) => {
                        let value = encode(record, Revision(revision))?;
                        records
                            .insert(record.key().to_string().as_str(), value.as_slice())
                            .map_err(redb::Error::from)?;
                    }
                    Change::Delete(key) => {
                        records
                            .remove(key.to_string().as_str())
                            .map_err(redb::Error::from)?;
                    }
                }
            }
            revisions.push(Revision(revision));
        }
        meta.insert(REVISION, revision).map_err(redb::Error::from)?;
        revisions
    };
    txn.commit().map_err(redb::Error::from)?;
    Ok(revisions)
}

fn encode(record: &Record, revision: Revision) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Versioned {
        revision,
        record: record.clone(),
    })
}

/// Every record and the revision, from one read transaction (a consistent view).
fn read_all(db: &impl ReadableDatabase, path: &Path) -> Result<Contents, StoreError> {
    let read = |source: redb::Error| StoreError::Read {
        path: path.to_owned(),
        source: Arc::new(source),
    };
    let txn = db.begin_read().map_err(|e| read(e.into()))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        // A file made but never initialized (its creator died at once) holds nothing.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Contents::default()),
        Err(error) => return Err(read(error.into())),
    };
    let value = |name| -> Result<u64, StoreError> {
        Ok(meta
            .get(name)
            .map_err(|e| read(e.into()))?
            .map_or(0, |v| v.value()))
    };
    let (revision, format) = (value(REVISION)?, value(FORMAT)?);
    if format > FORMAT_VERSION {
        return Err(StoreError::Format {
            path: path.to_owned(),
            found: format,
            known: FORMAT_VERSION,
        });
    }
    let table = txn.open_table(RECORDS).map_err(|e| read(e.into()))?;
    let mut records = Vec::new();
    for entry in table.iter().map_err(|e| read(e.into()))? {
        let (key, value) = entry.map_err(|e| read(e.into()))?;
        let record =
            serde_json::from_slice(value.value()).map_err(|source| StoreError::Corrupt {
                path: path.to_owned(),
                key: key.value().to_owned(),
                source,
            })?;
        records.push(record);
    }
    Ok(Contents {
        revision: Revision(revision),
        records,
    })
}
