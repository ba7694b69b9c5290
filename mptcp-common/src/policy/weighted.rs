//! weighted: weighted fair sharing of bytes across subflows (start-time fair
//! queueing over virtual finish tags), so each subflow carries its weight's
//! share of the bytes whatever the packet sizes.

use super::paths::{argmin, div, Paths};
use super::SchedState;
use crate::maps::{PathState, MAX_SUBFLOWS};

/// The weight of a path whose rate is not known yet, in the rate's units
/// (kB/s): unlimited, as every policy reads an unknown rate. Given the
/// bytes, the path fills and so is measured; weighted as 1 (a few bytes a
/// second) it was never used, and so never measured.
pub const UNKNOWN_RATE_WEIGHT: u64 = 1 << 24;

/// A subflow's weight: the configured one; else its rate in kB/s (an
/// unknown rate: [`UNKNOWN_RATE_WEIGHT`]). (Configure weights on all paths
/// or on none: the units do not mix.)
#[inline(always)]
pub fn weight_of(p: &PathState) -> u64 {
    if p.weight != 0 {
        p.weight as u64
    } else if p.rate_bytes_per_sec == 0 {
        UNKNOWN_RATE_WEIGHT
    } else if p.rate_bytes_per_sec >= 1000 {
        p.rate_bytes_per_sec / 1000
    } else {
        1
    }
}

/// Virtual time a `pkt_len`-byte packet costs on a path: bytes / weight, scaled.
#[inline(always)]
pub fn wrr_cost(p: &PathState, pkt_len: u32) -> u64 {
    div((pkt_len as u64) << 16, weight_of(p))
}

/// Among the best tier, the subflow with the smallest virtual finish tag after
/// this packet, where a subflow's start tag is its last finish tag, or the
/// connection's virtual clock if it is behind it (a subflow returning from
/// down or from a lower tier does not get a burst to catch up). Returns the
/// subflow and the new clock (the smallest start tag among the candidates).
#[inline(always)]
pub fn weighted<P: Paths>(paths: &P, sched: &SchedState, pkt_len: u32) -> Option<(usize, u64)> {
    let mut clock = u64::MAX;
    let best = argmin(paths, |i, p| {
        let f = sched.wrr_finish[i & (MAX_SUBFLOWS - 1)];
        let start = if f > sched.wrr_clock { f } else { sched.wrr_clock };
        if start < clock {
            clock = start;
        }
        start + wrr_cost(p, pkt_len)
    })?;
    Some((best, clock))
}
