//! auto: the policy a connection gets when none is chosen. Where its paths'
//! delays differ, earliest-arrival, which alone keeps one flow in order
//! across them (min-rtt spills the near path's excess the whole difference
//! behind, and a near slow path holds a flow to a fraction of one link);
//! where they do not, min-rtt, which then reorders nothing and, unlike
//! earliest-arrival, needs no rate to be right (on paths of equal delay the
//! queues are all there is to tell them by, and a rate estimated 2× high
//! reordered one TCP flow down to a fraction of the links).

use super::paths::{owd_us, tier, NO_TIER, UNKNOWN_DELAY_US};
use super::Policy;
use crate::maps::PathState;

/// One-way delays (propagation, [`PathState::owd_us`]) that differ by this
/// much or more make a connection's paths unequal.
pub const AUTO_SPREAD_US: u64 = 10_000;

/// What [`Policy::Auto`] stands for on a connection with these path states:
/// earliest-arrival when the usable paths' (best tier's) known one-way
/// delays differ by [`AUTO_SPREAD_US`] or more, else min-rtt.
pub fn auto_policy(states: &[PathState]) -> Policy {
    let want = states.iter().map(tier).min().unwrap_or(NO_TIER);
    let delays = states.iter().filter(|p| want != NO_TIER && tier(p) == want).map(owd_us);
    let known = delays.filter(|&d| d != UNKNOWN_DELAY_US);
    let (lo, hi) = known.fold((u64::MAX, 0), |(lo, hi), d| (lo.min(d), hi.max(d)));
    if hi >= lo && hi - lo >= AUTO_SPREAD_US {
        Policy::EarliestArrival
    } else {
        Policy::MinRtt
    }
}
