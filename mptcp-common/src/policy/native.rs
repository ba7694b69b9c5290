//! Policies on the kernel's own MPTCP subflows (native mode). The kernel's
//! scheduler is not ours to replace on a stock kernel: it sends on the
//! subflows that are not backups (the one whose queue drains first) and
//! falls back to the backups only when none is left. What a policy can do
//! there is choose which paths' subflows are backups (MP_PRIO tells the
//! peer, so its direction follows too). [`native_backups`] is that choice.
//! And it can cap each subflow's pacing rate: the scheduler sends on the
//! subflow whose queue drains first at its pacing rate, and TCP paces a
//! capped socket itself; [`pacing_caps`] is weighted's split as caps.

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
    /// weighted caps each path's subflows at its share of what the paths
    /// carry together, so it needs every path's rate.
    WeightedNeedsRates,
    /// Weights on some paths and not others (0 means "by rate" only when
    /// no path has one: the units do not mix).
    WeightedNeedsWeights,
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
            NotNative::WeightedNeedsRates => {
                "weighted caps each subflow's pacing rate at its path's share, which needs a rate_mbit on every path"
            }
            NotNative::WeightedNeedsWeights => "weighted needs a weight on every path, or on none (to share by rate)",
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
        // weighted splits by pacing caps (`pacing_caps`), over the same subflows as auto.
        Policy::Auto | Policy::Weighted => Ok((configured(), None)),
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
        Policy::Redundant => Err(NotNative::Redundant),
        Policy::EarliestArrival => Err(NotNative::EarliestArrival),
        Policy::Flowlet => Err(NotNative::Flowlet),
    }
}

/// No pacing cap (`SO_MAX_PACING_RATE`'s "unlimited").
pub const NO_CAP: u64 = u64::MAX;

/// weighted's split as pacing caps, bytes per second (`caps[i]` for path
/// `i`): the paths in `usable` (bit `i`) share by `weights`, or by `rates`
/// when no weight is set (0 everywhere). Each gets its share of the most
/// they can carry together in that proportion, the total `T` at which the
/// first path is full: `T = min(rate_i × W / w_i)`, `cap_i = T × w_i / W`
/// (`W`: the weights' sum). The others are not capped ([`NO_CAP`]: they
/// carry nothing, having no endpoint). The caps hold the split only while
/// the rates are right: a path slower than its rate carries less than its
/// share, and the kernel's scheduler gives the rest to the others.
pub fn pacing_caps(weights: &[u32], rates: &[u64], usable: u32, caps: &mut [u64]) -> Result<(), NotNative> {
    let n = weights.len().min(rates.len()).min(caps.len()).min(MAX_SUBFLOWS);
    let used = |i: usize| usable & (1 << i) != 0;
    let by_rate = (0..n).filter(|&i| used(i)).all(|i| weights[i] == 0);
    let weight = |i: usize| if by_rate { rates[i] } else { weights[i] as u64 };
    for i in (0..n).filter(|&i| used(i)) {
        if rates[i] == 0 {
            return Err(NotNative::WeightedNeedsRates);
        }
        if weight(i) == 0 {
            return Err(NotNative::WeightedNeedsWeights);
        }
    }
    // cap_i = T × w_i / W = min over j of rate_j × w_i / w_j: exact, one division.
    for (i, cap) in caps.iter_mut().enumerate().take(n) {
        *cap = if used(i) {
            (0..n)
                .filter(|&j| used(j))
                .map(|j| (rates[j] as u128 * weight(i) as u128 / weight(j) as u128).min(u64::MAX as u128) as u64)
                .min()
                .unwrap_or(NO_CAP)
        } else {
            NO_CAP
        };
    }
    Ok(())
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
        ] {
            assert_eq!(backups(p, &s), Err(why));
        }
    }

    const MBIT: u64 = 125_000;

    fn caps(weights: &[u32], rates: &[u64], usable: u32) -> Result<[u64; 3], NotNative> {
        let mut c = [0; 3];
        pacing_caps(weights, rates, usable, &mut c).map(|_| c)
    }

    #[test]
    fn weighted_caps_each_path_at_its_share_of_what_they_carry_together() {
        // 3:1 over two 20 Mbit/s paths: the first is full at 26.7 Mbit/s in all.
        let c = caps(&[3, 1, 0], &[20 * MBIT, 20 * MBIT, 0], 0b011).unwrap();
        assert_eq!(&c[..2], &[20 * MBIT, 20 * MBIT / 3]);
        assert_eq!(c[2], NO_CAP);
        // 1:1 over 10 and 40: the small one is full at 20 in all.
        let c = caps(&[1, 1], &[10 * MBIT, 40 * MBIT], 0b11).unwrap();
        assert_eq!(&c[..2], &[10 * MBIT, 10 * MBIT]);
        // No weights: by rate, every path full.
        let c = caps(&[0, 0], &[10 * MBIT, 40 * MBIT], 0b11).unwrap();
        assert_eq!(&c[..2], &[10 * MBIT, 40 * MBIT]);
        // A path without an endpoint takes no share.
        let c = caps(&[3, 1], &[20 * MBIT, 20 * MBIT], 0b10).unwrap();
        assert_eq!(&c[..2], &[NO_CAP, 20 * MBIT]);
    }

    #[test]
    fn weighted_without_rates_or_with_weights_on_some_paths_is_refused() {
        assert_eq!(caps(&[1, 1], &[10 * MBIT, 0], 0b11), Err(NotNative::WeightedNeedsRates));
        assert_eq!(caps(&[1, 0], &[10 * MBIT, 10 * MBIT], 0b11), Err(NotNative::WeightedNeedsWeights));
        assert_eq!(backups(Policy::Weighted, &[path(true, false, 0, 0), path(true, true, 1, 0)]), Ok(0b10));
    }
}
