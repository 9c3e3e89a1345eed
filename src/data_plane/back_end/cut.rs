//! Cutting a target's requests in flight (ELB-SPEC §5: an instance deregistered with connection draining off, or
//! one still busy when the drain's timeout ends): its exchanges watch the cut and fail, so their clients get ELB's
//! 504.
//!
//! Trade-off: a watch registers with the target's `Notify` (a short uncontended lock inside tokio) only when its
//! exchange is about to wait, once per request; an exchange that completes without waiting costs one atomic load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Context;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// The signal that cuts a target's requests in flight.
#[derive(Debug, Default)]
pub(crate) struct Cut {
    cut: AtomicBool,
    signal: Arc<Notify>,
}

impl Cut {
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Cuts: every watch sees it, waiting ones are woken.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.signal.notify_waiters();
    }
}

/// One exchange's watch on its target's cut. It registers with the signal only when the exchange is about to wait
/// (the first time it would return `Pending`), so an exchange that completes at once costs one atomic load.
pub(crate) struct CutWatch {
    cut: Arc<Cut>,
    notified: Option<Pin<Box<OwnedNotified>>>,
}

impl CutWatch {
    pub(crate) fn new(cut: Arc<Cut>) -> Self {
        CutWatch {
            cut,
            notified: None,
        }
    }

    /// Whether the target was cut; when not, the task is woken if it is later.
    pub(crate) fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if self.cut.is_cut() {
            return true;
        }
        let signal = &self.cut.signal;
        let notified = self
            .notified
            .get_or_insert_with(|| Box::pin(signal.clone().notified_owned()));
        if notified.as_mut().poll(cx).is_ready() {
            return true;
        }
        // Registered now: a cut between the first check and the registration is seen here.
        self.cut.is_cut()
    }
}
