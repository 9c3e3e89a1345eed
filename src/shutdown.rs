//! Stopping gracefully: a signal every task can watch, and a count of the connections still open.
//!
//! SIGTERM, Ctrl-C, a test and a reload that retires a listener all use the same path (STYLE.md habit 2):
//! [`Trigger::trigger`] tells every accept loop to stop and every connection to finish its in-flight requests;
//! [`Tracker::wait_idle`] returns once the last connection guard is dropped; the caller bounds that wait with its
//! drain deadline and then stops the runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// The sending side: triggers shutdown once.
#[derive(Debug, Clone)]
pub(crate) struct Trigger(Arc<watch::Sender<bool>>);

/// The receiving side: cheap to clone, one per task.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its signal.
pub(crate) fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(Arc::new(tx)), Shutdown(rx))
}

impl Trigger {
    pub(crate) fn trigger(&self) {
        let _ = self.0.send(true);
    }

    #[cfg(test)]
    pub(crate) fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    #[cfg(test)]
    pub(crate) fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when shutdown is triggered (at once if it already was).
    pub(crate) async fn triggered(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// Shutdown as a connection's poll loop sees it: polled on every wake-up of the connection, so checking must be
/// cheap. Re-polling a registered `watch` wait takes the channel's internal lock each time; here the wait is
/// polled once to register the task's waker, and afterwards only when the channel's version has moved (an atomic
/// load), which is when the trigger has fired.
pub(crate) struct ShutdownWatch {
    check: Shutdown,
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    registered: bool,
    fired: bool,
}

impl ShutdownWatch {
    pub(crate) fn new(shutdown: Shutdown) -> Self {
        let check = shutdown.clone();
        let mut shutdown = shutdown;
        ShutdownWatch {
            check,
            wait: Box::pin(async move { shutdown.triggered().await }),
            registered: false,
            fired: false,
        }
    }

    /// Whether shutdown has been triggered; if not, the task is woken when it is.
    pub(crate) fn poll_fired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        if self.fired {
            return true;
        }
        if self.registered && !self.check.0.has_changed().unwrap_or(true) {
            return false;
        }
        self.registered = true;
        self.fired = self.wait.as_mut().poll(cx).is_ready();
        self.fired
    }
}

/// Counts live connections so shutdown can wait for them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker(Arc<TrackerInner>);

#[derive(Debug, Default)]
struct TrackerInner {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by one live connection.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Arc<TrackerInner>);

impl Tracker {
    pub(crate) fn guard(&self) -> ConnectionGuard {
        self.0.live.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.0.clone())
    }

    pub(crate) fn live(&self) -> usize {
        self.0.live.load(Ordering::Acquire)
    }

    /// Completes when no connection is live.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_guard_drops() {
        let tracker = Tracker::default();
        let a = tracker.guard();
        let b = tracker.guard();
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.wait_idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("wait_idle must finish once idle")
            .unwrap();
    }

    #[tokio::test]
    async fn shutdown_is_seen_by_late_subscribers() {
        let (trigger, mut shutdown) = channel();
        trigger.trigger();
        shutdown.triggered().await;
        let mut late = trigger.subscribe();
        late.triggered().await;
        assert!(late.is_triggered());
    }
}
