//! redundant: every packet on every eligible subflow; the receiver delivers
//! the first copy and drops the rest.

use super::paths::{argmin, rtt_rank, Paths};
use crate::maps::MAX_SUBFLOWS;

/// Every subflow of the best tier: the lowest-RTT one (which carries the
/// packet itself) and a mask of the others (which carry copies).
///
/// (A "k best" variant was tried: ranking subflows by RTT inside the egress
/// program exceeds the verifier's budget, so it is left to a later change.)
#[inline(always)]
pub fn redundant<P: Paths>(paths: &P) -> Option<(usize, u32)> {
    let mut all: u32 = 0;
    let first = argmin(paths, |i, p| {
        all |= 1 << (i & (MAX_SUBFLOWS - 1));
        rtt_rank(p) as u64
    })?;
    Some((first, all & !(1u32 << (first & (MAX_SUBFLOWS - 1)))))
}
