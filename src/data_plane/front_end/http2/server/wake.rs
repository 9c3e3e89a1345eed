//! Which streams asked to be polled again: every stream is served on its connection's task, and a wake-up names
//! the stream it is for, so the task polls that stream and not all of them.
//!
//! Each stream has a waker of its own ([`StreamWaker`]): waking it queues the stream's id (once until it is
//! polled) and wakes the connection's task. The queue is lock-free (the wake may come from another worker, e.g.
//! an instance's socket polled there). This is what `FuturesUnordered` does, without its intrusive list: a
//! connection's streams are few and the queue holds ids, not futures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use atomic_waker::AtomicWaker;
use crossbeam_queue::SegQueue;

/// The connection's queue of streams to poll, and its task's waker.
#[derive(Default)]
pub(crate) struct Ready {
    queue: SegQueue<u32>,
    task: AtomicWaker,
}

impl Ready {
    /// The connection's task, woken by its streams.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.task.register(cx.waker());
    }

    /// The next stream that asked to be polled.
    pub(crate) fn pop(&self) -> Option<u32> {
        self.queue.pop()
    }

    /// Queues `stream` from the connection's own task (a stream that must be polled again, without a waker).
    pub(crate) fn push(&self, stream: u32) {
        self.queue.push(stream);
    }
}

/// One stream's waker.
pub(crate) struct StreamWaker {
    id: u32,
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl StreamWaker {
    /// The waker of stream `id`; it starts queued (a new stream is polled once at once).
    pub(crate) fn new(id: u32, ready: Arc<Ready>) -> Arc<Self> {
        ready.push(id);
        Arc::new(StreamWaker {
            id,
            queued: AtomicBool::new(true),
            ready,
        })
    }

    /// Called before the stream is polled: a wake from now on queues it again.
    pub(crate) fn unqueue(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.queue.push(self.id);
            self.ready.task.wake();
        }
    }
}

/// The [`Waker`] of a stream's waker.
pub(crate) fn waker(stream: &Arc<StreamWaker>) -> Waker {
    Waker::from(stream.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_queued_once_until_polled() {
        let ready = Arc::new(Ready::default());
        let stream = StreamWaker::new(3, ready.clone());
        let waker = waker(&stream);
        waker.wake_by_ref();
        assert_eq!(ready.pop(), Some(3), "a new stream is queued");
        assert_eq!(ready.pop(), None, "woken before it was polled: still once");
        stream.unqueue();
        waker.wake_by_ref();
        waker.wake_by_ref();
        assert_eq!(ready.pop(), Some(3));
        assert_eq!(ready.pop(), None);
    }
}
