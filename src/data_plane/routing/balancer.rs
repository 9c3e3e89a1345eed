//! Choosing an instance for a request.
//!
//! ELB-SPEC.md §3: HTTP/HTTPS listeners send each request to the instance with the fewest outstanding requests;
//! TCP/SSL listeners go round robin. Scanning every instance for the minimum is O(n) and herds all nodes onto the
//! same instance at once; elbe uses the power of two choices instead: two distinct instances drawn at random, the
//! less loaded one wins, a tie goes to the first draw (itself random, so no instance is favoured). This keeps the
//! load within a small constant of the least-loaded choice (Mitzenmacher) at O(1) and without shared state.
//! Randomness comes from a per-thread xorshift generator: no lock, no syscall.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::data_plane::back_end::target::Target;

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // Distinct per thread and per process; quality matters little, only that threads do not move in lockstep.
    let stack = &RNG as *const _ as u64;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (stack ^ time.rotate_left(17)) | 1
}

/// A random number below `n` (n > 0), from the thread's xorshift64* generator.
pub(crate) fn random_below(n: usize) -> usize {
    RNG.with(|cell| {
        let mut x = cell.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        cell.set(x);
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (((r >> 32) * n as u64) >> 32) as usize
    })
}

/// Least outstanding requests by the power of two choices. `None` when there is no candidate.
pub(crate) fn pick_least_outstanding(candidates: &[Arc<Target>]) -> Option<&Arc<Target>> {
    match candidates.len() {
        0 => None,
        1 => candidates.first(),
        n => {
            let a = random_below(n);
            let mut b = random_below(n - 1);
            if b >= a {
                b += 1;
            }
            let (first, second) = (&candidates[a], &candidates[b]);
            if second.outstanding() < first.outstanding() {
                Some(second)
            } else {
                Some(first)
            }
        }
    }
}

/// Least outstanding requests among every candidate but `excluded` (a retry after `excluded` failed).
pub(crate) fn pick_least_outstanding_except<'a>(
    candidates: &'a [Arc<Target>],
    excluded: &Arc<Target>,
) -> Option<&'a Arc<Target>> {
    let skip = candidates.iter().position(|t| Arc::ptr_eq(t, excluded));
    let Some(skip) = skip else {
        return pick_least_outstanding(candidates);
    };
    let others = candidates.len() - 1;
    let index = |i: usize| if i >= skip { i + 1 } else { i };
    match others {
        0 => None,
        1 => candidates.get(index(0)),
        n => {
            let a = random_below(n);
            let mut b = random_below(n - 1);
            if b >= a {
                b += 1;
            }
            let (first, second) = (&candidates[index(a)], &candidates[index(b)]);
            if second.outstanding() < first.outstanding() {
                Some(second)
            } else {
                Some(first)
            }
        }
    }
}

/// Round robin for TCP/SSL listeners: `cursor` is the listener's own counter.
pub(crate) fn pick_round_robin<'a>(
    candidates: &'a [Arc<Target>],
    cursor: &AtomicUsize,
) -> Option<&'a Arc<Target>> {
    if candidates.is_empty() {
        return None;
    }
    let i = cursor.fetch_add(1, Ordering::Relaxed) % candidates.len();
    candidates.get(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::back_end::pool::Pool;
    use std::time::Duration;

    fn targets(n: usize) -> Vec<Arc<Target>> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                let pool = Pool::new(addr, 1, Duration::from_secs(60), Duration::from_secs(1));
                Arc::new(Target::new(
                    format!("i-{i}").into(),
                    "zone-a".into(),
                    addr,
                    pool,
                ))
            })
            .collect()
    }

    #[test]
    fn no_candidates_picks_nothing() {
        assert!(pick_least_outstanding(&[]).is_none());
    }

    #[test]
    fn random_below_stays_in_range_and_covers_it() {
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[random_below(7)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 700), "skewed: {seen:?}");
    }

    #[test]
    fn idle_instances_share_requests_evenly() {
        let t = targets(4);
        let mut counts = [0u32; 4];
        for _ in 0..8000 {
            let picked = pick_least_outstanding(&t).unwrap();
            counts[t.iter().position(|x| Arc::ptr_eq(x, picked)).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (1600..2400).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_busy_instance_is_avoided() {
        let t = targets(2);
        for _ in 0..5 {
            t[0].begin_request();
        }
        for _ in 0..100 {
            assert!(Arc::ptr_eq(pick_least_outstanding(&t).unwrap(), &t[1]));
        }
    }

    #[test]
    fn the_most_loaded_of_many_is_never_picked() {
        let t = targets(5);
        for (i, target) in t.iter().enumerate() {
            for _ in 0..i {
                target.begin_request();
            }
        }
        for _ in 0..1000 {
            assert!(!Arc::ptr_eq(pick_least_outstanding(&t).unwrap(), &t[4]));
        }
    }

    #[test]
    fn except_never_picks_the_excluded_instance() {
        let t = targets(3);
        for _ in 0..300 {
            assert!(!Arc::ptr_eq(
                pick_least_outstanding_except(&t, &t[1]).unwrap(),
                &t[1]
            ));
        }
        assert!(pick_least_outstanding_except(&t[..1], &t[0]).is_none());
        assert!(Arc::ptr_eq(
            pick_least_outstanding_except(&t[..2], &t[0]).unwrap(),
            &t[1]
        ));
    }

    #[test]
    fn round_robin_cycles() {
        let t = targets(3);
        let cursor = AtomicUsize::new(0);
        let order: Vec<_> = (0..6)
            .map(|_| pick_round_robin(&t, &cursor).unwrap().addr.port())
            .collect();
        assert_eq!(order, vec![1000, 1001, 1002, 1000, 1001, 1002]);
    }
}
