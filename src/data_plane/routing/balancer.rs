//! Choosing an instance for a request.
//!
//! ELB-SPEC.md §3: HTTP/HTTPS listeners send each request to the instance with the fewest outstanding requests;
//! TCP/SSL listeners go round robin. Scanning every instance for the minimum is O(n) and herds all nodes onto the
//! same instance at once; elbe uses the power of two choices instead: two distinct instances drawn at random, the
//! less loaded one wins, a tie goes to the first draw (itself random, so no instance is favoured). This keeps the
//! load within a small constant of the least-loaded choice (Mitzenmacher) at O(1) and without shared state.
//! Randomness comes from a per-thread xorshift generator: no lock, no syscall. A retry's pick (every candidate but
//! the one that failed) is O(1) too, so nothing a request does grows with the number of instances (issue 18 item
//! 5: `benches/request_path.rs` "by instances" times it at 2 and 1,000).

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

/// How often [`pick_least_outstanding_except`] redraws before it scans instead.
const REDRAWS: usize = 20;

/// Least outstanding requests among every candidate but `excluded` (a retry after `excluded` failed).
///
/// O(1) like the first pick, whatever the number of candidates: each of the two draws is redrawn while it lands on
/// `excluded` (or, for the second, on the first), which keeps both uniform over the others; with three or more
/// candidates a draw needs a redraw at most two times in three, so [`REDRAWS`] unlucky ones in a row are a chance
/// below one in 3,000 and then a scan of every candidate decides instead.
pub(crate) fn pick_least_outstanding_except<'a>(
    candidates: &'a [Arc<Target>],
    excluded: &Arc<Target>,
) -> Option<&'a Arc<Target>> {
    let allowed = |i: usize| !Arc::ptr_eq(&candidates[i], excluded);
    if candidates.len() <= 2 {
        let mut others = (0..candidates.len()).filter(|&i| allowed(i));
        return match (others.next(), others.next()) {
            (Some(_), Some(_)) => pick_least_outstanding(candidates),
            (only, _) => only.map(|i| &candidates[i]),
        };
    }
    let draw = |other: Option<usize>| {
        (0..REDRAWS)
            .map(|_| random_below(candidates.len()))
            .find(|&i| Some(i) != other && allowed(i))
    };
    let picked = draw(None).and_then(|a| Some((a, draw(Some(a))?)));
    let Some((a, b)) = picked else {
        return least_outstanding_by_scan(candidates, excluded);
    };
    let (first, second) = (&candidates[a], &candidates[b]);
    if second.outstanding() < first.outstanding() {
        Some(second)
    } else {
        Some(first)
    }
}

/// The least loaded candidate but `excluded`, by a scan of every one (the rare fallback of the draws above).
fn least_outstanding_by_scan<'a>(
    candidates: &'a [Arc<Target>],
    excluded: &Arc<Target>,
) -> Option<&'a Arc<Target>> {
    candidates
        .iter()
        .filter(|t| !Arc::ptr_eq(t, excluded))
        .min_by_key(|t| t.outstanding())
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

    fn targets(n: usize) -> Vec<Arc<Target>> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                Target::stand_in(&format!("i-{i}"), addr)
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

    /// The retry's pick spreads evenly over every candidate but the excluded one, among many.
    #[test]
    fn except_spreads_over_the_others_evenly() {
        let t = targets(10);
        let mut counts = [0u32; 10];
        for _ in 0..9000 {
            let picked = pick_least_outstanding_except(&t, &t[4]).unwrap();
            counts[t.iter().position(|x| Arc::ptr_eq(x, picked)).unwrap()] += 1;
        }
        assert_eq!(counts[4], 0);
        for (i, &c) in counts.iter().enumerate().filter(|(i, _)| *i != 4) {
            assert!((800..1200).contains(&c), "instance {i}: {counts:?}");
        }
        // And avoids a busy one, as the first pick does.
        for _ in 0..5 {
            t[7].begin_request();
        }
        let busy = (0..1000)
            .filter(|_| Arc::ptr_eq(pick_least_outstanding_except(&t, &t[4]).unwrap(), &t[7]))
            .count();
        assert_eq!(busy, 0);
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
