//! Policies on the kernel's own MPTCP subflows (native mode). The kernel's
//! scheduler is not ours to replace on a stock kernel: it sends on the
//! subflows that are not backups (the one whose queue drains first) and
//! falls back to the backups only when none is left. What a policy can do
//! there is choose which paths' subflows are backups (MP_PRIO tells the
//! peer, so its direction follows too). [`native_backups`] is that choice.

use super::paths::{argmin, rtt_rank, Paths};
use super::{active_backup, Policy};
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

/// Which paths' subflows are backups under `policy` (bit `i` = path `i`),
/// over the paths' states (`established`: the path has its endpoint; `up`,
/// `backup` as configured, `priority`, `srtt_us`):
/// - auto leaves the split to the kernel's scheduler: the configured
///   backups only;
/// - active-backup makes every path but active-backup's choice a backup;
/// - min-rtt is exclusive: every path but the lowest-RTT one of the best
///   tier (it spills over to nothing; the kernel's scheduler cannot cap a
///   subflow's share by our estimates).
///
/// With no path to choose, the configured backups stand.
pub fn native_backups<P: Paths>(policy: Policy, paths: &P) -> Result<u32, NotNative> {
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
        Some(c) => all_but(paths, c),
        None => configured(),
    };
    match policy {
        Policy::Auto => Ok(configured()),
        Policy::ActiveBackup => Ok(only(active_backup(paths))),
        Policy::MinRtt => Ok(only(argmin(paths, |_, p| rtt_rank(p) as u64))),
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

    fn backups(policy: Policy, states: &[PathState]) -> Result<u32, NotNative> {
        let buckets = [Bucket::default(); MAX_SUBFLOWS];
        native_backups(policy, &ConnectionPaths { states, buckets: &buckets, now_ns: 0 })
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
    fn min_rtt_is_exclusive_to_the_lowest_rtt() {
        let s = [path(true, false, 0, 30_000), path(true, false, 0, 12_000), path(true, false, 0, 0)];
        assert_eq!(backups(Policy::MinRtt, &s), Ok(0b101), "an unmeasured path ranks last");
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
