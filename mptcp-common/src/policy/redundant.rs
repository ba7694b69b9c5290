//! redundant: every packet on every eligible subflow; the receiver delivers
//! the first copy and drops the rest.

use super::paths::{best_tier, rtt_rank, tier, Paths, NONE, NO_TIER};
use crate::maps::MAX_SUBFLOWS;

/// Every subflow of the best tier: the lowest-RTT one (which carries the
/// packet itself) and a mask of the others (which carry copies).
///
/// (A "k best" variant was tried: ranking subflows by RTT inside the egress
/// program exceeds the verifier's budget, so it is left to a later change.)
#[inline(always)]
pub fn redundant<P: Paths>(paths: &P) -> Option<(usize, u32)> {
    let want = best_tier(paths);
    if want == NO_TIER {
        return None;
    }
    let n = paths.count();
    let (mut first, mut first_rtt) = (NONE, u32::MAX);
    let mut all: u32 = 0;
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let p = paths.state(i);
        if tier(p) != want {
            continue;
        }
        all |= 1 << i;
        let rtt = rtt_rank(p);
        if first == NONE || rtt < first_rtt {
            first = paths.launder(i);
            first_rtt = rtt;
        }
    }
    if first == NONE {
        return None;
    }
    Some((first, all & !(1u32 << (first & (MAX_SUBFLOWS - 1)))))
}
