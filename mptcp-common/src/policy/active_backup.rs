//! active-backup: one subflow at a time, in priority order.

use super::paths::{best_tier, rtt_rank, tier, Paths, NONE, NO_TIER};
use crate::maps::MAX_SUBFLOWS;

/// Among the best tier, the lowest priority value (ties: lower RTT, then
/// lower subflow id). The backup is touched only when nothing better is up.
#[inline(always)]
pub fn active_backup<P: Paths>(paths: &P) -> Option<usize> {
    let want = best_tier(paths);
    if want == NO_TIER {
        return None;
    }
    let n = paths.count();
    let (mut best, mut best_prio, mut best_rtt) = (NONE, u32::MAX, u32::MAX);
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let p = paths.state(i);
        if tier(p) != want {
            continue;
        }
        let rtt = rtt_rank(p);
        if best == NONE || p.priority < best_prio || (p.priority == best_prio && rtt < best_rtt) {
            best = paths.launder(i);
            best_prio = p.priority;
            best_rtt = rtt;
        }
    }
    if best != NONE {
        Some(best)
    } else {
        None
    }
}
