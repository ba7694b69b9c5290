//! auto: the policy a connection gets when none is chosen. Where its paths'
//! delays differ, earliest-arrival, which alone keeps one flow in order
//! across them (min-rtt spills the near path's excess the whole difference
//! behind, and a near slow path holds a flow to a fraction of one link).
//! Where they do not, earliest-arrival still if every path's rate was sized
//! whole (a hint, or a packet train timed it): it then places each packet
//! where it arrives first and spreads one flow by the rates, which min-rtt,
//! spilling a path's excess wherever its queue is shortest, does not (on
//! three uplinks of 20, 10 and 5 Mbit/s a millisecond away min-rtt carried
//! one TCP flow at 14 Mbit/s, earliest-arrival at 19). Else min-rtt, which
//! needs no rate to be right: on paths of equal delay the queues are all
//! there is to tell them by, and a rate estimated 2× high reordered one TCP
//! flow down to a fraction of the links. (A shaper that lets 64 KiB through
//! at once passes a whole train in its burst, so its paths stay unsized.)

use super::paths::{owd_us, tier, NO_TIER, UNKNOWN_DELAY_US};
use super::Policy;
use crate::maps::{PathState, PATH_RATE_SIZED};

/// One-way delays (propagation, [`PathState::owd_us`]) that differ by this
/// much or more make a connection's paths unequal.
pub const AUTO_SPREAD_US: u64 = 10_000;

/// What [`Policy::Auto`] stands for on a connection with these path states:
/// earliest-arrival when the usable paths' (best tier's) known one-way
/// delays differ by [`AUTO_SPREAD_US`] or more, or when there are several
/// and every one's rate is sized ([`PATH_RATE_SIZED`]); else min-rtt.
pub fn auto_policy(states: &[PathState]) -> Policy {
    let want = states.iter().map(tier).min().unwrap_or(NO_TIER);
    let usable = || states.iter().filter(move |p| want != NO_TIER && tier(p) == want);
    let known = usable().map(owd_us).filter(|&d| d != UNKNOWN_DELAY_US);
    let (lo, hi) = known.fold((u64::MAX, 0), |(lo, hi), d| (lo.min(d), hi.max(d)));
    let sized = usable().count() >= 2 && usable().all(|p| p.flags & PATH_RATE_SIZED != 0);
    if (hi >= lo && hi - lo >= AUTO_SPREAD_US) || sized {
        Policy::EarliestArrival
    } else {
        Policy::MinRtt
    }
}
