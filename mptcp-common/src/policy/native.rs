//! Policies on the kernel's own MPTCP subflows (native mode). The kernel's
//! scheduler is not ours to replace on a stock kernel: it sends on the
//! subflows that are not backups (the one whose queue drains first) and
//! falls back to the backups only when none is left. What a policy can do
//! there is choose which paths' subflows are backups (MP_PRIO tells the
//! peer, so its direction follows too). [`native_backups`] is that choice.

use super::paths::{argmin, rtt_rank, tier, Paths};
use super::Policy;
use crate::maps::MAX_SUBFLOWS;

/// Why a policy cannot run on the kernel's subflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotNative {
    /// Needs every packet on every subflow: the kernel's scheduler sends
    /// each byte once (it re-injects only after loss).
    Redundant,
    /// Needs to choose per packet by arrival time, which only a packet
    /// scheduler can.
    EarliestArrival,
    /// Needs to place flows; the kernel schedules one connection's bytes.
    Flowlet,
    /// Needs per-subflow pacing caps, not written yet.
    Weighted,
}

impl NotNative {
    /// Why, for the operator.
    pub const fn why(self) -> &'static str {
        match self {
            NotNative::Redundant => {
                "the kernel's scheduler sends each byte on one subflow (redundant needs a packet scheduler)"
            }
            NotNative::EarliestArrival => {
                "earliest-arrival chooses per packet by arrival time, which needs a packet scheduler"
            }
            NotNative::Flowlet => "flowlet places inner flows; a native MPTCP connection is one flow",
            NotNative::Weighted => "weighted needs per-subflow pacing caps, which native mode does not set yet",
        }
    }
}

/// How much lower another path's RTT must be for exclusive min-rtt to move
/// to it (the chosen path's RTT times this, in 1/16): every move is an
/// MP_PRIO to the peer and reorders what is in flight, so two paths of
/// about the same RTT must not take turns with their noise.
pub const MIN_RTT_MOVE_SIXTEENTHS: u64 = 12;

/// Which paths' subflows are backups under `policy` (bit `i` = path `i`),
/// over the paths' states (`established`: the path has its endpoint; `up`,
/// `backup` as configured, `priority`, `srtt_us`), given the path chosen
/// now (`chosen`, for the policies that choose one):
/// - auto leaves the split to the kernel's scheduler: the configured
///   backups only;
/// - active-backup makes every path but the preferred one a backup: the
///   best tier's lowest priority value, ties to the lower index (not to
///   the lower RTT as in the bond, where a move costs nothing);
/// - min-rtt is exclusive: every path but the lowest-RTT one of the best
///   tier (it spills over to nothing; the kernel's scheduler cannot cap a
///   subflow's share by our estimates); it stays on `chosen` while that
///   is in the best tier and no other path's RTT is below
///   [`MIN_RTT_MOVE_SIXTEENTHS`] of its own.
///
/// Returns the backup mask and the path chosen (None: auto, or no path to
/// choose, when the configured backups stand).
pub fn native_backups<P: Paths>(
    policy: Policy,
    paths: &P,
    chosen: Option<usize>,
) -> Result<(u32, Option<usize>), NotNative> {
    let configured = || {
        let mut mask = 0;
        for i in 0..paths.count().min(MAX_SUBFLOWS) {
            if paths.state(i).backup() {
                mask |= 1 << i;
            }
        }
        mask
    };
    let only = |chosen: Option<usize>| match chosen {
        Some(c) => (all_but(paths, c), Some(c)),
        None => (configured(), None),
    };
    match policy {
        Policy::Auto => Ok((configured(), None)),
        Policy::ActiveBackup => Ok(only(argmin(paths, |i, p| ((p.priority as u64) << 32) | i as u64))),
        Policy::MinRtt => {
            let best = argmin(paths, |_, p| rtt_rank(p) as u64);
            let stay = match (chosen, best) {
                (Some(c), Some(b)) if c < paths.count() && tier(paths.state(c)) == tier(paths.state(b)) => {
                    let (now, other) = (rtt_rank(paths.state(c)) as u64, rtt_rank(paths.state(b)) as u64);
                    other * 16 >= now * MIN_RTT_MOVE_SIXTEENTHS
                }
                _ => false,
            };
            Ok(only(if stay { chosen } else { best }))
        }
        Policy::Weighted => Err(NotNative::Weighted),
        Policy::Redundant => Err(NotNative::Redundant),
        Policy::EarliestArrival => Err(NotNative::EarliestArrival),
        Policy::Flowlet => Err(NotNative::Flowlet),
    }
}

/// Every path's bit but `chosen`'s.
fn all_but<P: Paths>(paths: &P, chosen: usize) -> u32 {
    let n = paths.count().min(MAX_SUBFLOWS);
    ((1u32 << n) - 1) & !(1 << chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{Bucket, PathState, PATH_BACKUP, PATH_ESTABLISHED, PATH_UP};
    use crate::policy::ConnectionPaths;

    fn path(up: bool, backup: bool, priority: u32, srtt_us: u32) -> PathState {
        let mut flags = PATH_ESTABLISHED;
        if up {
            flags |= PATH_UP;
        }
        if backup {
            flags |= PATH_BACKUP;
        }
        PathState { flags, priority, srtt_us, ..Default::default() }
    }

    fn choose(policy: Policy, states: &[PathState], chosen: Option<usize>) -> Result<(u32, Option<usize>), NotNative> {
        let buckets = [Bucket::default(); MAX_SUBFLOWS];
        native_backups(policy, &ConnectionPaths { states, buckets: &buckets, now_ns: 0 }, chosen)
    }

    fn backups(policy: Policy, states: &[PathState]) -> Result<u32, NotNative> {
        choose(policy, states, None).map(|(mask, _)| mask)
    }

    #[test]
    fn auto_leaves_the_configured_backups() {
        let s = [path(true, false, 0, 0), path(true, true, 1, 0), path(true, false, 2, 0)];
        assert_eq!(backups(Policy::Auto, &s), Ok(0b010));
    }

    #[test]
    fn active_backup_keeps_the_preferred_path_and_moves_when_it_goes() {
        let mut s = [path(true, false, 1, 0), path(true, false, 0, 0), path(true, true, 0, 0)];
        assert_eq!(backups(Policy::ActiveBackup, &s), Ok(0b101), "priority 0 of the regular paths");
        s[1] = path(false, false, 0, 0);
        assert_eq!(backups(Policy::ActiveBackup, &s), Ok(0b110), "its successor when it is down");
        s[0] = path(false, false, 1, 0);
        assert_eq!(backups(Policy::ActiveBackup, &s), Ok(0b011), "the backup when nothing else is up");
    }

    #[test]
    fn active_backup_breaks_ties_by_order_not_by_rtt() {
        let s = [path(true, false, 0, 40_000), path(true, false, 0, 10_000)];
        assert_eq!(choose(Policy::ActiveBackup, &s, None), Ok((0b10, Some(0))));
    }

    #[test]
    fn min_rtt_is_exclusive_to_the_lowest_rtt() {
        let s = [path(true, false, 0, 30_000), path(true, false, 0, 12_000), path(true, false, 0, 0)];
        assert_eq!(backups(Policy::MinRtt, &s), Ok(0b101), "an unmeasured path ranks last");
    }

    #[test]
    fn min_rtt_moves_only_for_a_clearly_lower_rtt() {
        let mut s = [path(true, false, 0, 20_000), path(true, false, 0, 16_000)];
        assert_eq!(choose(Policy::MinRtt, &s, Some(0)), Ok((0b10, Some(0))), "16 ms is not below 3/4 of 20 ms");
        s[1].srtt_us = 14_000;
        assert_eq!(choose(Policy::MinRtt, &s, Some(0)), Ok((0b01, Some(1))), "14 ms is");
        s[0] = path(false, false, 0, 5_000);
        assert_eq!(choose(Policy::MinRtt, &s, Some(0)), Ok((0b01, Some(1))), "the chosen path went down");
    }

    #[test]
    fn policies_a_packet_scheduler_needs_are_refused() {
        let s = [path(true, false, 0, 0)];
        for (p, why) in [
            (Policy::Redundant, NotNative::Redundant),
            (Policy::EarliestArrival, NotNative::EarliestArrival),
            (Policy::Flowlet, NotNative::Flowlet),
            (Policy::Weighted, NotNative::Weighted),
        ] {
            assert_eq!(backups(p, &s), Err(why));
        }
    }
}
