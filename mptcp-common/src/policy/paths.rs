//! The view of a connection's subflows the policies decide on, and the
//! eligibility and ranking rules they share.

use crate::maps::{PathState, MAX_SUBFLOWS};

/// A connection's subflows as a policy sees them.
pub trait Paths {
    /// Number of slots (at most [`MAX_SUBFLOWS`]); unused slots are not established.
    fn count(&self) -> usize;
    fn state(&self, i: usize) -> &PathState;
    /// Bytes subflow `i` may send now within its rate
    /// ([`super::bucket_credit`]); `i64::MAX` when its rate is unknown.
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

/// A connection's subflows on the host: path states and token buckets side
/// by side (the simulator and the host tests; the kernel has its own view).
pub struct ConnectionPaths<'a> {
    pub states: &'a [PathState],
    pub buckets: &'a [crate::maps::Bucket; MAX_SUBFLOWS],
    pub now_ns: u64,
}

impl Paths for ConnectionPaths<'_> {
    fn count(&self) -> usize {
        if self.states.len() > MAX_SUBFLOWS {
            MAX_SUBFLOWS
        } else {
            self.states.len()
        }
    }
    fn state(&self, i: usize) -> &PathState {
        &self.states[i]
    }
    fn credit(&self, i: usize) -> i64 {
        super::bucket_credit(&self.buckets[i], self.states[i].rate_bytes_per_sec, self.now_ns)
    }
}

/// Index value meaning "none chosen". The loops use plain sentinels rather
/// than `Option`s: in BPF every value must be initialised on every path, and
/// the verifier rejects reads of registers LLVM left undefined.
pub const NONE: usize = usize::MAX;
/// Tier value meaning "not eligible".
pub const NO_TIER: u8 = 3;

/// Eligibility tier of a path: 0 up, 1 up backup, 2 established but down,
/// [`NO_TIER`] never (not established, or left unused: a spent data cap).
#[inline(always)]
pub fn tier(p: &PathState) -> u8 {
    if !p.established() || p.unused() {
        NO_TIER
    } else if p.up() && !p.backup() {
        0
    } else if p.up() {
        1
    } else {
        2
    }
}

/// The best tier any subflow of `paths` is in ([`NO_TIER`] if none),
/// laundered so the callers' loops compare against an opaque number.
#[inline(always)]
pub fn best_tier<P: Paths>(paths: &P) -> u8 {
    let mut best = NO_TIER;
    let n = paths.count();
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let t = tier(paths.state(i));
        if t < best {
            best = t;
        }
    }
    if best == NO_TIER {
        best
    } else {
        paths.launder(best as usize) as u8
    }
}

/// Among the subflows of the best tier, the one with the smallest `key`
/// (ties: the lower subflow id), or `None` if no subflow is established.
/// Every policy that picks one subflow is this loop with its own key.
#[inline(always)]
pub fn argmin<P: Paths, F: FnMut(usize, &PathState) -> u64>(paths: &P, mut key: F) -> Option<usize> {
    let want = best_tier(paths);
    if want == NO_TIER {
        return None;
    }
    let n = paths.count();
    let (mut best, mut best_key) = (NONE, u64::MAX);
    for i in 0..MAX_SUBFLOWS {
        if i >= n {
            break;
        }
        let p = paths.state(i);
        if tier(p) != want {
            continue;
        }
        let k = key(i, p);
        if best == NONE || k < best_key {
            best = paths.launder(i);
            best_key = k;
        }
    }
    if best != NONE {
        Some(best)
    } else {
        None
    }
}

/// RTT used for ranking: an unmeasured path (srtt 0) ranks after every
/// measured one, so a brand-new subflow does not attract all traffic.
#[inline(always)]
pub fn rtt_rank(p: &PathState) -> u32 {
    if p.srtt_us == 0 {
        u32::MAX
    } else {
        p.srtt_us
    }
}

/// `a / b`, 0 when `b` is 0. Spelled out so the compiler sees the divisor is
/// never zero: a division it cannot prove safe leaves a panic path in the
/// BPF object, which the verifier rejects.
#[inline(always)]
pub fn div(a: u64, b: u64) -> u64 {
    a.checked_div(b).unwrap_or(0)
}

/// Unmeasured one-way delay, for ranking: after any real one (~4.3 min).
pub const UNKNOWN_DELAY_US: u64 = 1 << 28;

/// Penalty per part per million of random loss: 2 % costs 10 ms.
const LOSS_PENALTY_US_PER_PPM_DIV: u64 = 2;
/// The most random loss a path state says ([`PathState::loss_ppm`] is
/// written no higher): 10 %, 50 ms of penalty. A bound the writer keeps
/// spares the data path a comparison in every policy's loop, which the
/// egress program's verifier budget cannot afford.
pub const MAX_LOSS_PPM: u32 = 100_000;

/// How much later than its delay a lossy path counts, for the policies that
/// choose by delay (min-rtt, earliest-arrival): every packet it carries may
/// cost an inner TCP flow a halved window, whichever path lost it, while
/// its rate looks unused. The penalty keeps such a path for what the
/// loss-free paths cannot carry within the penalty's queue: 2 % random loss
/// costs 10 ms (about a bucket's depth, so min-rtt's spill-over is to a
/// lossy path only once the clean one is at its rate), [`MAX_LOSS_PPM`] 50 ms.
#[inline(always)]
pub fn loss_penalty_us(p: &PathState) -> u64 {
    p.loss_ppm as u64 / LOSS_PENALTY_US_PER_PPM_DIV
}

/// One-way delay estimate: the receiver-reported one when there is one,
/// else half the smoothed RTT.
#[inline(always)]
pub fn owd_us(p: &PathState) -> u64 {
    if p.owd_us != 0 {
        p.owd_us as u64
    } else if p.srtt_us != 0 {
        (p.srtt_us / 2) as u64
    } else {
        UNKNOWN_DELAY_US
    }
}
