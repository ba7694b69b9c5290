//! Policies in native mode: which paths' subflows are backups, decided by
//! [`mptcp_common::policy::native::native_backups`] over the paths' states,
//! and each path's subflow pacing cap
//! ([`mptcp_common::policy::native::pacing_caps`], weighted only).

use mptcp_common::maps::{Bucket, PathState, MAX_SUBFLOWS, PATH_BACKUP, PATH_ESTABLISHED, PATH_UP};
use mptcp_common::policy::native::{native_backups, pacing_caps, NO_CAP};
use mptcp_common::policy::ConnectionPaths;
use mptcp_common::Policy;

/// What native mode needs to know of a path to place it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathView {
    /// Its endpoint is (or is about to be) in place.
    pub up: bool,
    /// Configured (or set at runtime) as a backup.
    pub backup: bool,
    pub priority: u32,
    /// 0: not measured.
    pub srtt_us: u32,
}

/// Whether native mode can run `policy`, and if not, why.
pub fn expressible(policy: Policy) -> Result<(), &'static str> {
    backups(policy, &[], None).map(|_| ())
}

/// Which of `paths` are backups under `policy` (bit `i` = path `i`), and
/// the path it chose (kept while it is good enough: `chosen`).
pub fn backups(
    policy: Policy,
    paths: &[PathView],
    chosen: Option<usize>,
) -> Result<(u32, Option<usize>), &'static str> {
    let states: Vec<PathState> = paths
        .iter()
        .map(|p| {
            let mut flags = 0;
            if p.up {
                flags |= PATH_ESTABLISHED | PATH_UP;
            }
            if p.backup {
                flags |= PATH_BACKUP;
            }
            PathState { flags, priority: p.priority, srtt_us: p.srtt_us, ..Default::default() }
        })
        .collect();
    let buckets = [Bucket::default(); MAX_SUBFLOWS];
    let view = ConnectionPaths { states: &states, buckets: &buckets, now_ns: 0 };
    native_backups(policy, &view, chosen).map_err(|n| n.why())
}

/// Each path's pacing cap under `policy` (bytes/s; [`NO_CAP`]: none), the
/// paths `usable` now: weighted's split by the paths' weights (or rates);
/// no caps for the other policies.
pub fn caps(policy: Policy, paths: &[crate::config::PathConfig], usable: &[bool]) -> Result<Vec<u64>, &'static str> {
    if policy != Policy::Weighted {
        return Ok(vec![NO_CAP; paths.len()]);
    }
    let weights: Vec<u32> = paths.iter().map(|p| p.weight).collect();
    let rates: Vec<u64> = paths.iter().map(|p| p.rate_mbit.map_or(0, |r| (r * 125_000.0) as u64)).collect();
    let mask = usable.iter().enumerate().filter(|(_, &u)| u).fold(0u32, |m, (i, _)| m | 1 << i);
    let mut caps = vec![NO_CAP; paths.len()];
    pacing_caps(&weights, &rates, mask, &mut caps).map_err(|n| n.why())?;
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathConfig;

    #[test]
    fn weighted_caps_come_from_the_configured_weights_and_rates() {
        let path = |weight, rate_mbit| PathConfig { weight, rate_mbit, ..Default::default() };
        let paths = [path(3, Some(20.0)), path(1, Some(20.0))];
        assert_eq!(caps(Policy::Weighted, &paths, &[true, true]), Ok(vec![2_500_000, 833_333]));
        assert_eq!(caps(Policy::Auto, &paths, &[true, true]), Ok(vec![NO_CAP, NO_CAP]));
        let unrated = [path(3, Some(20.0)), path(1, None)];
        assert!(caps(Policy::Weighted, &unrated, &[true, true]).unwrap_err().contains("rate_mbit"));
    }
}
