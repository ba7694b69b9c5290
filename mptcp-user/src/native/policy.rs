//! Policies in native mode: which paths' subflows are backups, decided by
//! [`mptcp_common::policy::native::native_backups`] over the paths' states.

use mptcp_common::maps::{Bucket, PathState, MAX_SUBFLOWS, PATH_BACKUP, PATH_ESTABLISHED, PATH_UP};
use mptcp_common::policy::native::native_backups;
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
