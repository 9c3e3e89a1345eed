//! Read buffers shared by a worker thread's connections, at both ends: a client connection waiting for its next
//! request and an instance's connection waiting in the pool hold none, and take one when bytes arrive. nginx frees
//! its buffers the same way; an idle connection then costs its socket and its state, not 8 KiB
//! (BENCHMARKS.md "Idle connections").
//!
//! Per worker thread: no lock, and a connection that moved threads gives its buffer to the thread it is on. Taking
//! a pooled buffer is a pop instead of an allocation, the buffer last given back (warm in the cache) first, and
//! its bytes are already shareable, so splitting a head off it allocates nothing.

use std::cell::RefCell;

use bytes::BytesMut;

/// Reads ask for at least this much room, and a pooled buffer is this large.
pub(crate) const MIN_READ: usize = 8 * 1024;

/// Buffers kept per worker thread; past this, a buffer given back goes to the allocator.
const POOLED: usize = 64;

thread_local! {
    /// Buffers given back, each of [`MIN_READ`] bytes with nothing pointing into it.
    static IDLE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A buffer with room for at least half of [`MIN_READ`] bytes for a connection that holds none: the one last given
/// back on this thread, or a fresh one of [`MIN_READ`].
pub(crate) fn take() -> BytesMut {
    IDLE.with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(MIN_READ))
}

/// Takes a connection's buffer, whose bytes it no longer needs (the connection then holds nothing). Pooled when it
/// has its whole room back (`try_reclaim`: nothing else points into it) or at least half of [`MIN_READ`] left past
/// a head that still uses its front (an instance's response head on its way to the client when the instance's
/// connection goes back to the pool): the room is this handle's alone, so the next connection reads into it, as
/// the connection itself did before it gave the buffer up, and the allocation is freed when both are done. A
/// buffer a large body grew, or one with less room than that, goes to the allocator.
pub(crate) fn give_back(buf: &mut BytesMut) {
    let mut buf = std::mem::take(buf);
    buf.clear();
    if buf.capacity() > MIN_READ || !(buf.try_reclaim(MIN_READ) || buf.capacity() >= MIN_READ / 2) {
        return;
    }
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooled() -> usize {
        IDLE.with(|pool| pool.borrow().len())
    }

    /// A buffer given back with nothing pointing into it is the next one taken (no allocation); one a head still
    /// shares is kept while it has half its room, and the head stays intact; one a large body grew is not kept.
    #[test]
    fn buffers_are_pooled_only_with_room_and_of_the_usual_size() {
        let mut buf = take();
        let first = buf.as_ptr();
        assert!(buf.capacity() >= MIN_READ);
        give_back(&mut buf);
        assert_eq!(
            buf.capacity(),
            0,
            "given back: the connection holds nothing"
        );
        assert_eq!(pooled(), 1);
        let mut buf = take();
        assert_eq!(buf.as_ptr(), first, "the pooled buffer is taken again");
        assert_eq!(pooled(), 0);

        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = buf.split_to(buf.len()).freeze();
        give_back(&mut buf);
        assert_eq!(pooled(), 1, "the room past a head is pooled");
        let mut buf = take();
        assert_eq!(
            buf.as_ptr(),
            first.wrapping_add(head.len()),
            "past the head"
        );
        buf.extend_from_slice(&[b'x'; MIN_READ / 2]);
        assert_eq!(&head[..], b"GET / HTTP/1.1\r\n\r\n", "the head is intact");

        let rest = buf.split_to(buf.len()).freeze();
        give_back(&mut buf);
        assert_eq!(pooled(), 0, "less than half the room left: not pooled");
        drop((head, rest));

        let mut grown = BytesMut::with_capacity(4 * MIN_READ);
        give_back(&mut grown);
        assert_eq!(pooled(), 0, "a grown buffer goes back to the allocator");
    }

    /// The pool keeps at most [`POOLED`] buffers: a burst of connections going idle at once leaves the rest to the
    /// allocator.
    #[test]
    fn the_pool_is_bounded() {
        let mut bufs: Vec<BytesMut> = (0..POOLED + 8).map(|_| take()).collect();
        for buf in &mut bufs {
            give_back(buf);
        }
        assert_eq!(pooled(), POOLED);
    }
}
