//! The writer: one background task owns the destination (a file or stdout) and turns queued entries into lines.
//!
//! [`AccessLog::log`] is on the request path and never blocks: it `try_send`s into a bounded channel and, when the
//! channel is full or the writer has stopped, drops the entry and counts it ([`AccessLog::dropped`]). ELB-SPEC
//! §11 calls ELB's access logs best effort; elbe takes the same side of the trade-off: a slow disk costs log
//! lines, never request latency. The task formats what is queued into one reused buffer (up to
//! [`MAX_BATCH_LINES`] entries or `MAX_BATCH_BYTES`) and writes and flushes each batch at once: one write
//! and flush per burst, not per line. [`AccessLog::reopen`] (SIGHUP, logrotate) is a flag the task checks between
//! batches; a failed reopen keeps the old file. [`WriterHandle::flush_and_stop`] drains the queue at shutdown.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::entry::Entry;

/// The writer takes at most this many queued entries into one write.
pub(crate) const MAX_BATCH_LINES: u64 = 1024;
/// ...or stops taking more once the batch is this large.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    Stdout,
    /// Appended to; created if missing.
    File(PathBuf),
}

/// Opening the access log file failed; the `io::Error` returned by [`AccessLog::start`] wraps this.
#[derive(Debug, thiserror::Error)]
#[error("cannot open access log file {}", path.display())]
pub(crate) struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// State shared by the handles and the writer task.
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    reopen_failures: AtomicU64,
    reopen_requested: AtomicBool,
    /// Wakes an idle writer so a reopen does not wait for the next request.
    wake: Notify,
}

/// A cheap clonable handle to the access log; [`AccessLog::log`] never blocks.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    entries: mpsc::Sender<Entry>,
    shared: Arc<Shared>,
}

impl AccessLog {
    /// Opens the destination and starts the writer task on the current tokio runtime. `capacity` bounds
    /// the entries waiting to be written (at least 1). Fails when the file cannot be opened (the error
    /// names the path, see [`OpenError`]) or when called outside a runtime.
    pub(crate) fn start(
        destination: Destination,
        capacity: usize,
    ) -> Result<(AccessLog, WriterHandle), io::Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let sink = match &destination {
            Destination::Stdout => Sink::Stdout(tokio::io::stdout()),
            Destination::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| open_error(path, source))?;
                Sink::File(tokio::fs::File::from_std(file))
            }
        };
        let (entries, receiver) = mpsc::channel(capacity.max(1));
        let (stop, stop_signal) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            destination,
            sink,
            entries: receiver,
            shared: Arc::clone(&shared),
            failing: false,
        };
        let task = runtime.spawn(writer.run(stop_signal));
        Ok((AccessLog { entries, shared }, WriterHandle { stop, task }))
    }

    /// Queues one entry. When the channel is full (or the writer has stopped) the entry is dropped and
    /// counted in [`AccessLog::dropped`].
    pub(crate) fn log(&self, entry: Entry) {
        if self.entries.try_send(entry).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries that never became a line: the channel was full, the writer had stopped, or the write
    /// failed.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines written (and flushed) so far.
    #[cfg(test)]
    pub(crate) fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Reopen attempts that failed (the old file stayed in use).
    #[cfg(test)]
    pub(crate) fn reopen_failures(&self) -> u64 {
        self.shared.reopen_failures.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen the file at its path (SIGHUP after logrotate renamed it). Returns at
    /// once; the writer reopens before writing its next batch, so every entry logged after this call
    /// goes to the new file (entries queued before it may land in either). A failure is logged, counted
    /// (`reopen_failures`), and keeps the old file. No effect on stdout.
    pub(crate) fn reopen(&self) {
        self.shared.reopen_requested.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

fn open_error(path: &Path, source: io::Error) -> io::Error {
    let kind = source.kind();
    io::Error::new(
        kind,
        OpenError {
            path: path.to_owned(),
            source,
        },
    )
}

/// Owns the writer task. Dropping it leaves the task running until every [`AccessLog`] is dropped.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl WriterHandle {
    /// Stops taking entries (later [`AccessLog::log`] calls count as dropped), writes everything already
    /// queued, flushes, and waits for the task to end. Used at shutdown and in tests.
    pub(crate) async fn flush_and_stop(self) {
        // An error means the task already ended (every handle was dropped): nothing left to drain.
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "access log writer task failed");
        }
    }
}

enum Sink {
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File),
}

impl Sink {
    async fn write_and_flush(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => {
                out.write_all(bytes).await?;
                out.flush().await
            }
            Sink::File(file) => {
                file.write_all(bytes).await?;
                file.flush().await
            }
        }
    }
}

/// The task that owns the destination.
struct Writer {
    destination: Destination,
    sink: Sink,
    entries: mpsc::Receiver<Entry>,
    shared: Arc<Shared>,
    /// The last write failed: warn once per outage, not once per batch.
    failing: bool,
}

impl Writer {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut batch = String::with_capacity(64 * 1024);
        let mut stop_pending = true;
        loop {
            let first = tokio::select! {
                entry = self.entries.recv() => match entry {
                    Some(entry) => Some(entry),
                    // Every handle dropped, or stopped and drained.
                    None => break,
                },
                signal = &mut stop, if stop_pending => {
                    stop_pending = false;
                    // Err: the WriterHandle was dropped without stopping; keep running.
                    if signal.is_ok() {
                        // Queued entries stay receivable; `recv` returns None once they are drained.
                        self.entries.close();
                    }
                    None
                }
                () = self.shared.wake.notified() => None,
            };
            // Checked after receiving: an entry logged after `reopen()` sees the flag set here.
            if self.shared.reopen_requested.swap(false, Ordering::AcqRel) {
                self.reopen().await;
            }
            let Some(first) = first else { continue };
            batch.clear();
            first.format(&mut batch);
            batch.push('\n');
            let mut lines: u64 = 1;
            while lines < MAX_BATCH_LINES && batch.len() < MAX_BATCH_BYTES {
                let Ok(entry) = self.entries.try_recv() else {
                    break;
                };
                entry.format(&mut batch);
                batch.push('\n');
                lines += 1;
            }
            self.write(batch.as_bytes(), lines).await;
            if batch.capacity() > 4 * MAX_BATCH_BYTES {
                // One huge batch (long user agents) should not pin its memory for good.
                batch = String::with_capacity(64 * 1024);
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], lines: u64) {
        match self.sink.write_and_flush(bytes).await {
            Ok(()) => {
                self.shared.written.fetch_add(lines, Ordering::Relaxed);
                if self.failing {
                    self.failing = false;
                    tracing::info!(destination = ?self.destination, "access log writes work again");
                }
            }
            Err(error) => {
                self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(destination = ?self.destination, %error,
                        "cannot write the access log; dropping lines until writes work again");
                }
            }
        }
    }

    async fn reopen(&mut self) {
        let Destination::File(path) = &self.destination else {
            return;
        };
        let opened = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await;
        match opened {
            Ok(file) => {
                // Everything written so far was flushed batch by batch; the old file simply closes.
                self.sink = Sink::File(file);
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(source) => {
                self.shared.reopen_failures.fetch_add(1, Ordering::Relaxed);
                let error = open_error(path, source);
                tracing::error!(%error, "cannot reopen the access log; still writing to the old file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observability::access_log::entry::tests::{dispatched, parse};
    use std::time::Duration;

    fn lines_of(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn numbered(n: u64) -> Entry {
        Entry {
            sent_bytes: n,
            ..dispatched()
        }
    }

    /// Waits (bounded) until the writer has written `n` lines.
    async fn wait_written(log: &AccessLog, n: u64) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while log.written() < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("writer did not catch up");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_one_line_per_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 65_536).unwrap();
        for n in 0..5000 {
            log.log(numbered(n));
        }
        writer.flush_and_stop().await;
        let lines = lines_of(&path);
        assert_eq!(lines.len(), 5000);
        assert_eq!((log.written(), log.dropped()), (5000, 0));
        for (n, line) in lines.iter().enumerate() {
            let fields = parse(line);
            assert_eq!(fields.len(), 15);
            assert_eq!(fields[10], n.to_string(), "lines keep their order");
        }
        // After stopping, entries are dropped and counted.
        log.log(numbered(0));
        assert_eq!(log.dropped(), 1);
    }

    #[tokio::test]
    async fn appends_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "old line\n").unwrap();
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        log.log(numbered(1));
        writer.flush_and_stop().await;
        let lines = lines_of(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "old line");
    }

    #[tokio::test]
    async fn reopen_after_rename_writes_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 1024).unwrap();
        for n in 0..3 {
            log.log(numbered(n));
        }
        wait_written(&log, 3).await;
        // logrotate: rename, then SIGHUP.
        std::fs::rename(&path, &rotated).unwrap();
        log.log(numbered(3)); // before the reopen: goes to the renamed file
        wait_written(&log, 4).await;
        log.reopen();
        for n in 4..6 {
            log.log(numbered(n));
        }
        writer.flush_and_stop().await;
        let sent = |lines: Vec<String>| -> Vec<String> {
            lines.iter().map(|line| parse(line)[10].clone()).collect()
        };
        assert_eq!(sent(lines_of(&rotated)), ["0", "1", "2", "3"]);
        assert_eq!(sent(lines_of(&path)), ["4", "5"]);
        assert_eq!(log.reopen_failures(), 0);
    }

    #[tokio::test]
    async fn reopen_when_idle_creates_the_file_without_waiting_for_a_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        std::fs::remove_file(&path).unwrap();
        log.reopen();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !path.exists() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("file was not reopened");
        writer.flush_and_stop().await;
    }

    #[tokio::test]
    async fn failed_reopen_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("access.log");
        let rotated = dir.path().join("access.log.1");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        log.log(numbered(0));
        wait_written(&log, 1).await;
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::remove_dir(&logs).unwrap(); // the path can no longer be created
        log.reopen();
        log.log(numbered(1));
        writer.flush_and_stop().await;
        assert_eq!(log.reopen_failures(), 1);
        assert_eq!(lines_of(&rotated).len(), 2);
        assert_eq!((log.written(), log.dropped()), (2, 0));
    }

    #[tokio::test]
    async fn full_channel_drops_and_counts_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // A current-thread runtime: the writer cannot run until this test awaits, so the channel fills.
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 1).unwrap();
        for n in 0..100 {
            log.log(numbered(n));
        }
        assert_eq!(log.dropped(), 99);
        writer.flush_and_stop().await;
        assert_eq!(log.written(), 1);
        assert_eq!(lines_of(&path).len(), 1);
    }

    #[tokio::test]
    async fn writer_ends_when_every_handle_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (log, writer) = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        log.log(numbered(0));
        drop(log);
        tokio::time::timeout(Duration::from_secs(10), writer.task)
            .await
            .expect("writer did not end")
            .unwrap();
        assert_eq!(lines_of(&path).len(), 1);
    }

    #[tokio::test]
    async fn open_failure_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("access.log");
        let error = AccessLog::start(Destination::File(path.clone()), 16).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );
        let open = error
            .get_ref()
            .unwrap()
            .downcast_ref::<OpenError>()
            .unwrap();
        assert_eq!(open.path, path);
    }

    #[tokio::test]
    async fn stdout_destination_starts_and_stops() {
        let (log, writer) = AccessLog::start(Destination::Stdout, 16).unwrap();
        log.reopen(); // no effect on stdout
        writer.flush_and_stop().await;
        assert_eq!(log.reopen_failures(), 0);
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        assert!(AccessLog::start(Destination::Stdout, 16).is_err());
    }
}
