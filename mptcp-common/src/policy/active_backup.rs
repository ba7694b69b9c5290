//! active-backup: one subflow at a time, in priority order.

use super::paths::{argmin, rtt_rank, Paths};

/// Among the best tier, the lowest priority value (ties: lower RTT, then
/// lower subflow id). The backup is touched only when nothing better is up.
#[inline(always)]
pub fn active_backup<P: Paths>(paths: &P) -> Option<usize> {
    argmin(paths, |_, p| ((p.priority as u64) << 32) | rtt_rank(p) as u64)
}
