//! Stopping gracefully: a signal every task can watch, and a count of the connections still open.
//!
//! SIGTERM, Ctrl-C, a test and a reload that retires a listener all use the same path (STYLE.md habit 2):
//! [`Trigger::trigger`] tells every accept loop to stop and every connection to finish its in-flight requests;
//! the [`Tracker`] (tokio-util's `TaskTracker`) is waited on until the last connection's token is dropped; the
//! caller bounds that wait with its drain deadline and then stops the runtime.
//!
//! The signal is a flag and a `Notify` (the trigger sets the flag, then wakes every registered waiter). Why not
//! tokio-util's `CancellationToken`, or a `watch` channel: a connection checks for shutdown on every poll, and
//! `CancellationToken::is_cancelled` takes a mutex, as does re-polling a registered `watch` wait (its `Notify`'s
//! waiter list); here a check is one atomic load ([`ShutdownWatch`]). Dropping the last [`Trigger`] fires the
//! signal too, as a `watch` channel's closing did.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Context;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// What a trigger and its watchers share.
#[derive(Debug, Default)]
struct Signal {
    fired: AtomicBool,
    notify: Arc<Notify>,
}

impl Signal {
    fn fire(&self) {
        // The flag first: a waiter that registers after the wake-up below finds it set.
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

/// The sending side: triggers shutdown once (or when its last clone is dropped).
#[derive(Debug, Clone)]
pub(crate) struct Trigger(Arc<Firing>);

/// The trigger's one owner of the signal, which fires it when dropped.
#[derive(Debug)]
struct Firing(Arc<Signal>);

impl Drop for Firing {
    fn drop(&mut self) {
        self.0.fire();
    }
}

/// The receiving side: cheap to clone, one per task.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(Arc<Signal>);

/// A new trigger and its signal.
pub(crate) fn channel() -> (Trigger, Shutdown) {
    let signal = Arc::new(Signal::default());
    (Trigger(Arc::new(Firing(signal.clone()))), Shutdown(signal))
}

impl Trigger {
    pub(crate) fn trigger(&self) {
        self.0 .0.fire();
    }

    #[cfg(test)]
    pub(crate) fn subscribe(&self) -> Shutdown {
        Shutdown(self.0 .0.clone())
    }
}

impl Shutdown {
    #[cfg(test)]
    pub(crate) fn is_triggered(&self) -> bool {
        self.0.is_fired()
    }

    /// Completes when shutdown is triggered (at once if it already was).
    pub(crate) async fn triggered(&mut self) {
        // Registered before the flag is read: a trigger between the two still wakes this wait.
        let notified = self.0.notify.clone().notified_owned();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if self.0.is_fired() {
            return;
        }
        notified.await;
    }
}

/// Shutdown as a connection's poll loop sees it: polled on every wake-up of the connection, so checking must be
/// cheap. The wait is polled once, to register the task's waker; afterwards a check is the flag's atomic load.
/// So the watch must be polled from the one task that serves the connection: a combinator that gives each of its
/// futures a waker of its own (`FuturesUnordered`, a `JoinSet`) would leave the registered waker stale. Its
/// waiter is a 64-byte box made on the first poll; a plain HTTP connection's task watches its listener's drain and
/// cut with one [`DrainWatch`] instead of two of these.
pub(crate) struct ShutdownWatch {
    signal: Arc<Signal>,
    wait: Option<Pin<Box<OwnedNotified>>>,
}

impl ShutdownWatch {
    pub(crate) fn new(shutdown: Shutdown) -> Self {
        ShutdownWatch {
            signal: shutdown.0,
            wait: None,
        }
    }

    /// Whether shutdown has been triggered; if not, the task is woken when it is.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        fired(&self.signal, &mut self.wait, cx)
    }
}

/// Whether `signal` has fired; if not, the task is woken when it does: `wait` is registered on the first call
/// and only the flag is read on the later ones.
fn fired(
    signal: &Signal,
    wait: &mut Option<Pin<Box<OwnedNotified>>>,
    cx: &mut Context<'_>,
) -> bool {
    if signal.is_fired() {
        *wait = None;
        return true;
    }
    if wait.is_none() {
        let mut registered = Box::pin(signal.notify.clone().notified_owned());
        if registered.as_mut().poll(cx).is_ready() {
            return true;
        }
        *wait = Some(registered);
        // Fired between the load above and the registration: seen now.
        return signal.is_fired();
    }
    false
}

/// What a listener asks of a connection now ([`DrainWatch::poll`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Serving,
    /// Finish the request in flight and close (an idle connection closes now).
    Draining,
    /// The drain's deadline passed: drop the connection.
    Cut,
}

/// A listener's drain and the cut after it, as one connection's task watches them: one waiter at a time (on the
/// drain until it fires, then on the cut) where two [`ShutdownWatch`]es kept one each, 64 bytes on every open
/// connection (BENCHMARKS.md "Idle connections"). Only a drained connection's task is woken by the cut (any
/// wake-up sees it), so whoever cuts a listener drains it first (`server::listeners` does).
#[derive(Debug)]
pub(crate) struct DrainWatch {
    drain: Arc<Signal>,
    cut: Arc<Signal>,
    wait: Option<Pin<Box<OwnedNotified>>>,
    draining: bool,
}

impl DrainWatch {
    pub(crate) fn new(drain: Shutdown, cut: Shutdown) -> Self {
        DrainWatch {
            drain: drain.0,
            cut: cut.0,
            wait: None,
            draining: false,
        }
    }

    /// What the listener asks now; the task is woken when that changes. Polled on every wake-up of the
    /// connection: after the first poll of each stage, a flag's load.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Stop {
        if self.cut.is_fired() {
            self.wait = None;
            return Stop::Cut;
        }
        if !self.draining {
            if !fired(&self.drain, &mut self.wait, cx) {
                return Stop::Serving;
            }
            self.draining = true;
            // The drain's wait is spent: the next one waits for the cut.
            self.wait = None;
        }
        if fired(&self.cut, &mut self.wait, cx) {
            Stop::Cut
        } else {
            Stop::Draining
        }
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

    #[tokio::test]
    async fn dropping_the_last_trigger_fires_the_signal() {
        let (trigger, mut shutdown) = channel();
        let clone = trigger.clone();
        drop(trigger);
        assert!(!shutdown.is_triggered(), "a clone is still alive");
        drop(clone);
        shutdown.triggered().await;
    }

    /// A watch registered before the trigger wakes its task and then says fired; one made after says so at once.
    #[tokio::test]
    async fn a_watch_wakes_its_task_when_triggered() {
        let (trigger, shutdown) = channel();
        let mut watch = ShutdownWatch::new(shutdown.clone());
        let waiting = tokio::spawn(std::future::poll_fn(move |cx| {
            if watch.poll_fired(cx) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        }));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        trigger.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken by the trigger")
            .unwrap();
        let mut late = ShutdownWatch::new(shutdown);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(late.poll_fired(&mut cx));
    }

    /// One watch, one waiter at a time: its task is woken by the drain, then by the cut, and sees each.
    #[tokio::test]
    async fn a_drain_watch_wakes_its_task_for_the_drain_and_then_for_the_cut() {
        let (drain, drained) = channel();
        let (cut, cutting) = channel();
        let mut watch = DrainWatch::new(drained, cutting);
        let (seen, mut stops) = tokio::sync::mpsc::unbounded_channel();
        let watching = tokio::spawn(std::future::poll_fn(move |cx| {
            let stop = watch.poll(cx);
            seen.send(stop).unwrap();
            if stop == Stop::Cut {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        }));
        assert_eq!(stops.recv().await, Some(Stop::Serving));
        drain.trigger();
        assert_eq!(
            stops.recv().await,
            Some(Stop::Draining),
            "woken by the drain"
        );
        tokio::task::yield_now().await;
        assert!(stops.try_recv().is_err(), "not woken again before the cut");
        cut.trigger();
        assert_eq!(stops.recv().await, Some(Stop::Cut), "woken by the cut");
        tokio::time::timeout(std::time::Duration::from_secs(5), watching)
            .await
            .expect("ends at the cut")
            .unwrap();
        let (_drain, drained) = channel();
        let (cut, cutting) = channel();
        cut.trigger();
        let mut before_its_drain = DrainWatch::new(drained, cutting);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(
            before_its_drain.poll(&mut cx),
            Stop::Cut,
            "a cut is seen on any wake-up"
        );
    }
}
