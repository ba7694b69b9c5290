//! Scheduling policies: which subflow carries the next packet.
//!
//! Each policy is one pure function over the connection's path states. The
//! eBPF egress program, the host tests and the simulator call [`select`]
//! unchanged; adding a policy means adding a variant and one function here.
//!
//! All policies share the same notion of eligibility, in tiers: first the
//! subflows that are up and not backups; if none, the backups that are up; if
//! none, any established subflow (sending on a path whose probes stopped beats
//! dropping every packet, e.g. while the peer's controller restarts).

use crate::maps::{Bucket, PathState, MAX_SUBFLOWS};

/// A scheduling policy, stored as `u32` in `CLASS_POLICY`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Lowest-RTT subflow with capacity left; spills to the next when its token
    /// bucket is empty.
    MinRtt = 0,
    /// The preferred (lowest priority value) subflow only; others only when it fails.
    ActiveBackup = 1,
}

impl Policy {
    pub const ALL: [Policy; 2] = [Policy::MinRtt, Policy::ActiveBackup];

    pub const fn from_u32(v: u32) -> Option<Policy> {
        match v {
            0 => Some(Policy::MinRtt),
            1 => Some(Policy::ActiveBackup),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Policy::MinRtt => "min-rtt",
            Policy::ActiveBackup => "active-backup",
        }
    }

    pub fn from_name(s: &str) -> Option<Policy> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The view of a connection's subflows a policy decides on.
pub trait Paths {
    /// Number of slots (at most [`MAX_SUBFLOWS`]); unused slots are not established.
    fn count(&self) -> usize;
    fn state(&self, i: usize) -> &PathState;
    /// Bytes subflow `i` may send now within its rate ([`bucket_credit`]);
    /// `i64::MAX` when its rate is unknown.
    fn credit(&self, i: usize) -> i64;
    /// Returns `v` unchanged. The eBPF implementation routes it through a map
    /// so the verifier treats it as an unknown number: otherwise it follows
    /// every combination of "best so far" indices through the unrolled loops
    /// separately and gives up at its 1M-instruction limit.
    #[inline(always)]
    fn launder(&self, v: usize) -> usize {
        v
    }
}

/// Tier value meaning "not eligible".
const NO_TIER: u8 = 3;
/// Index value meaning "none chosen".
const NONE: usize = usize::MAX;

/// Eligibility tier of a path: lower is better, `None` = never.
#[inline(always)]
pub fn tier(p: &PathState) -> Option<u8> {
    match tier_raw(p) {
        NO_TIER => None,
        t => Some(t),
    }
}

/// [`tier`] as a plain number (`NO_TIER` = never). The loops below use plain
/// sentinels rather than `Option`s: in BPF every value must be initialised on
/// every path, and the verifier rejects reads of registers LLVM left undefined.
#[inline(always)]
fn tier_raw(p: &PathState) -> u8 {
    if !p.established() {
        NO_TIER
    } else if p.up() && !p.backup() {
        0
    } else if p.up() {
        1
    } else {
        2
    }
}

/// The best tier any subflow of `paths` is in (`NO_TIER` if none).
#[inline(always)]
fn best_tier<P: Paths>(paths: &P) -> u8 {
    let mut best = NO_TIER;
    let n = paths.count();
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let t = tier_raw(paths.state(i));
        if t < best {
            best = t;
        }
    }
    best
}

/// RTT used for ranking: an unmeasured path (srtt 0) ranks after every
/// measured one, so a brand-new subflow does not attract all traffic.
#[inline(always)]
fn rtt_rank(p: &PathState) -> u32 {
    if p.srtt_us == 0 {
        u32::MAX
    } else {
        p.srtt_us
    }
}

/// The subflow for a packet of `pkt_len` bytes under `policy`, or `None` if
/// the connection has no established subflow.
#[inline(always)]
pub fn select<P: Paths>(policy: Policy, paths: &P, pkt_len: u32) -> Option<usize> {
    match policy {
        Policy::MinRtt => min_rtt(paths, pkt_len),
        Policy::ActiveBackup => active_backup(paths),
    }
}

/// min-rtt: among the best tier, the lowest-RTT subflow whose bucket holds
/// `pkt_len`; when every bucket is short, the one whose bucket refills first
/// (so an overloaded connection spreads in proportion to the rates).
#[inline(always)]
pub fn min_rtt<P: Paths>(paths: &P, pkt_len: u32) -> Option<usize> {
    let want = best_tier(paths);
    if want == NO_TIER {
        return None;
    }
    let want = paths.launder(want as usize) as u8;
    let n = paths.count();
    let len = pkt_len as i64;
    let (mut fit, mut fit_rtt) = (NONE, u32::MAX);
    let (mut wait, mut wait_us) = (NONE, u64::MAX);
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let p = paths.state(i);
        if tier_raw(p) != want {
            continue;
        }
        let credit = paths.credit(i);
        if credit >= len {
            let rtt = rtt_rank(p);
            if fit == NONE || rtt < fit_rtt {
                fit = paths.launder(i);
                fit_rtt = rtt;
            }
        } else {
            let deficit = (len - credit) as u64;
            // credit < len implies a finite rate, so rate > 0.
            let rate = if p.rate_bytes_per_sec == 0 { 1 } else { p.rate_bytes_per_sec };
            // deficit < 2^33 in practice; cap it so the product fits u64 (BPF has
            // no 128-bit multiply, so no saturating_mul here).
            let deficit = if deficit > MAX_DEFICIT { MAX_DEFICIT } else { deficit };
            let us = deficit * 1_000_000 / rate;
            if wait == NONE || us < wait_us {
                wait = paths.launder(i);
                wait_us = us;
            }
        }
    }
    if fit != NONE {
        Some(fit)
    } else if wait != NONE {
        Some(wait)
    } else {
        None
    }
}

/// active-backup: among the best tier, the lowest priority value (ties: lower
/// RTT, then lower subflow id).
#[inline(always)]
pub fn active_backup<P: Paths>(paths: &P) -> Option<usize> {
    let want = best_tier(paths);
    if want == NO_TIER {
        return None;
    }
    let want = paths.launder(want as usize) as u8;
    let n = paths.count();
    let (mut best, mut best_prio, mut best_rtt) = (NONE, u32::MAX, u32::MAX);
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let p = paths.state(i);
        if tier_raw(p) != want {
            continue;
        }
        let rtt = rtt_rank(p);
        if best == NONE || p.priority < best_prio || (p.priority == best_prio && rtt < best_rtt) {
            best = paths.launder(i);
            best_prio = p.priority;
            best_rtt = rtt;
        }
    }
    if best != NONE {
        Some(best)
    } else {
        None
    }
}

/// How long a bucket may save up credit: bursts up to this much time at the
/// path's rate pass without spilling.
pub const BUCKET_DEPTH_NS: u64 = 10_000_000;
/// Refill is computed over at most this interval, which bounds the arithmetic.
const MAX_REFILL_NS: u64 = 100_000_000;
/// Rates are capped here (~800 Gbit/s) so `elapsed * rate` fits in u64.
const MAX_RATE: u64 = 100_000_000_000;
/// Cap of a bucket deficit in the wait computation.
const MAX_DEFICIT: u64 = 1 << 40;
/// Minimum bucket depth: two full-size frames.
const MIN_DEPTH_BYTES: i64 = 3028;

/// Credit of a bucket at `now_ns` for a path of `rate` bytes/s (`i64::MAX`
/// when the rate is unknown). Pure: the caller stores the result only for the
/// subflow it picks ([`bucket_spend`]).
#[inline(always)]
pub fn bucket_credit(b: &Bucket, rate: u64, now_ns: u64) -> i64 {
    if rate == 0 {
        return i64::MAX;
    }
    let rate = if rate > MAX_RATE { MAX_RATE } else { rate };
    let depth = (rate * (BUCKET_DEPTH_NS / 1_000_000) / 1_000) as i64;
    let depth = if depth < MIN_DEPTH_BYTES { MIN_DEPTH_BYTES } else { depth };
    let mut elapsed = now_ns.saturating_sub(b.last_ns);
    if elapsed > MAX_REFILL_NS {
        elapsed = MAX_REFILL_NS;
    }
    let refill = (elapsed * rate / 1_000_000_000) as i64;
    let c = b.credit.saturating_add(refill);
    if c > depth {
        depth
    } else {
        c
    }
}

/// Charge `len` bytes to the bucket whose credit at `now_ns` was `credit`.
#[inline(always)]
pub fn bucket_spend(b: &mut Bucket, credit: i64, len: u32, now_ns: u64) {
    if credit == i64::MAX {
        return; // unknown rate: nothing to account
    }
    b.credit = credit - len as i64;
    b.last_ns = now_ns;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{PATH_BACKUP, PATH_ESTABLISHED, PATH_UP};

    struct Fixed {
        states: [PathState; MAX_SUBFLOWS],
        credits: [i64; MAX_SUBFLOWS],
        n: usize,
    }

    impl Paths for Fixed {
        fn count(&self) -> usize {
            self.n
        }
        fn state(&self, i: usize) -> &PathState {
            &self.states[i]
        }
        fn credit(&self, i: usize) -> i64 {
            self.credits[i]
        }
    }

    fn path(flags: u32, priority: u32, srtt_us: u32, rate: u64) -> PathState {
        PathState { flags, priority, srtt_us, rate_bytes_per_sec: rate, ..Default::default() }
    }

    fn fixed(paths: &[PathState]) -> Fixed {
        let mut f =
            Fixed { states: [PathState::default(); MAX_SUBFLOWS], credits: [i64::MAX; MAX_SUBFLOWS], n: paths.len() };
        f.states[..paths.len()].copy_from_slice(paths);
        f
    }

    const LIVE: u32 = PATH_ESTABLISHED | PATH_UP;

    #[test]
    fn min_rtt_prefers_lowest_rtt_then_spills() {
        let mut f = fixed(&[path(LIVE, 0, 30_000, 1000), path(LIVE, 0, 5_000, 1000)]);
        assert_eq!(min_rtt(&f, 100), Some(1));
        f.credits[1] = 50; // fast path's bucket is short
        assert_eq!(min_rtt(&f, 100), Some(0));
        f.credits[0] = 0; // both short: the one refilling first (smaller deficit)
        assert_eq!(min_rtt(&f, 100), Some(1));
    }

    #[test]
    fn down_and_unestablished_paths_are_skipped() {
        let f = fixed(&[path(PATH_ESTABLISHED, 0, 1, 0), path(LIVE, 0, 50, 0), path(0, 0, 0, 0)]);
        assert_eq!(min_rtt(&f, 100), Some(1));
        assert_eq!(active_backup(&f), Some(1));
    }

    #[test]
    fn backup_only_when_no_regular_path_is_up() {
        let mut f = fixed(&[path(LIVE | PATH_BACKUP, 0, 1, 0), path(LIVE, 5, 90, 0)]);
        assert_eq!(min_rtt(&f, 100), Some(1));
        assert_eq!(active_backup(&f), Some(1));
        f.states[1].flags = PATH_ESTABLISHED; // regular path down
        assert_eq!(min_rtt(&f, 100), Some(0));
        assert_eq!(active_backup(&f), Some(0));
    }

    #[test]
    fn all_down_falls_back_to_established() {
        let f = fixed(&[path(PATH_ESTABLISHED, 1, 0, 0), path(PATH_ESTABLISHED, 0, 0, 0)]);
        assert_eq!(active_backup(&f), Some(1));
        assert_eq!(min_rtt(&f, 100), Some(0));
        // An unmeasured path ranks after a measured one.
        let f = fixed(&[path(LIVE, 0, 0, 0), path(LIVE, 0, 80_000, 0)]);
        assert_eq!(min_rtt(&f, 100), Some(1));
        assert_eq!(select(Policy::MinRtt, &fixed(&[]), 100), None);
    }

    #[test]
    fn active_backup_takes_lowest_priority_value() {
        let f = fixed(&[path(LIVE, 2, 1, 0), path(LIVE, 1, 99, 0), path(LIVE, 1, 50, 0)]);
        assert_eq!(active_backup(&f), Some(2));
    }

    #[test]
    fn bucket_refills_at_rate_and_caps_at_depth() {
        let rate = 1_000_000; // 1 MB/s -> depth 10 kB
        let b = Bucket { credit: 0, last_ns: 1_000_000_000 };
        assert_eq!(bucket_credit(&b, rate, 1_001_000_000), 1_000); // 1 ms
        assert_eq!(bucket_credit(&b, rate, 5_000_000_000), 10_000); // capped
        assert_eq!(bucket_credit(&b, 0, 0), i64::MAX);
        let mut b2 = b;
        bucket_spend(&mut b2, 1_000, 1_500, 1_001_000_000);
        assert_eq!(b2.credit, -500);
        assert_eq!(bucket_credit(&b2, rate, 1_002_000_000), 500);
    }

    #[test]
    fn policy_names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(Policy::from_name(p.name()), Some(p));
            assert_eq!(Policy::from_u32(p as u32), Some(p));
        }
        assert_eq!(Policy::from_name("nope"), None);
    }

    /// Under overload, min-rtt spreads bytes over two rate-limited paths in
    /// proportion to their rates (the spill-over the bond relies on).
    #[test]
    fn min_rtt_spill_over_follows_rates() {
        let rates = [1_250_000u64, 375_000]; // 10 Mbit/s and 3 Mbit/s
        let states = [path(LIVE, 0, 1_000, rates[0]), path(LIVE, 0, 25_000, rates[1])];
        let mut buckets = [Bucket::default(); 2];
        let mut sent = [0u64; 2];
        let mut now = 1_000_000_000u64;
        // Offer 20 Mbit/s of 1400-byte packets for 2 s.
        let gap_ns = 1400 * 8 * 1_000_000_000 / 20_000_000;
        for _ in 0..(2_000_000_000 / gap_ns) {
            now += gap_ns;
            let mut f = fixed(&states);
            for i in 0..2 {
                f.credits[i] = bucket_credit(&buckets[i], rates[i], now);
            }
            let i = min_rtt(&f, 1400).unwrap();
            bucket_spend(&mut buckets[i], f.credits[i], 1400, now);
            sent[i] += 1400;
        }
        let share = sent[0] as f64 / (sent[0] + sent[1]) as f64;
        assert!((share - 10.0 / 13.0).abs() < 0.02, "share {share}");
    }
}
