//! Stopping gracefully: a signal every task can watch, and a count of the connections still open.
//!
//! SIGTERM, Ctrl-C, a test and a reload that retires a listener all use the same path (STYLE.md habit 2):
//! [`Trigger::trigger`] tells every accept loop to stop and every connection to finish its in-flight requests;
//! the [`Tracker`] (tokio-util's `TaskTracker`) is waited on until the last connection's token is dropped; the
//! caller bounds that wait with its drain deadline and then stops the runtime.
//!
//! Why not tokio-util's `CancellationToken` for the signal too: a connection checks for shutdown on every poll,
//! and `CancellationToken::is_cancelled` takes a mutex, while a `watch` channel's version is an atomic load
//! ([`ShutdownWatch`]). The cold paths (accept loops, the admin and DNS listeners) share the same signal.

use std::sync::Arc;

use tokio::sync::watch;

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

/// Counts live connections so shutdown can wait for them: tokio-util's `TaskTracker`, whose tokens are the
/// connections' drop guards (one atomic each way; waiting needs the tracker closed, which shutdown does first).
pub(crate) type Tracker = tokio_util::task::TaskTracker;

#[cfg(test)]
mod tests {
    use super::*;

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
