//! min-rtt: the lowest-RTT subflow with capacity left, spilling to the next.

use super::bucket::MAX_BACKLOG;
use super::paths::{best_tier, div, rtt_rank, tier, Paths, NONE, NO_TIER};
use crate::maps::MAX_SUBFLOWS;

/// Among the best tier, the lowest-RTT subflow whose bucket holds `pkt_len`;
/// when every bucket is short, the one whose bucket refills first (so an
/// overloaded connection spreads in proportion to the rates).
#[inline(always)]
pub fn min_rtt<P: Paths>(paths: &P, pkt_len: u32) -> Option<usize> {
    let want = best_tier(paths);
    if want == NO_TIER {
        return None;
    }
    let n = paths.count();
    let len = pkt_len as i64;
    let (mut fit, mut fit_rtt) = (NONE, u32::MAX);
    let (mut wait, mut wait_us) = (NONE, u64::MAX);
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let p = paths.state(i);
        if tier(p) != want {
            continue;
        }
        let credit = paths.credit(i);
        if credit >= len {
            let rtt = rtt_rank(p);
            if fit == NONE || rtt < fit_rtt {
                fit = paths.launder(i);
                fit_rtt = rtt;
            }
        } else {
            // credit < len implies a finite rate, so rate > 0.
            let deficit = (len - credit) as u64;
            let deficit = if deficit > MAX_BACKLOG { MAX_BACKLOG } else { deficit };
            let us = div(deficit * 1_000_000, p.rate_bytes_per_sec);
            if wait == NONE || us < wait_us {
                wait = paths.launder(i);
                wait_us = us;
            }
        }
    }
    if fit != NONE {
        Some(fit)
    } else if wait != NONE {
        Some(wait)
    } else {
        None
    }
}
