//! Per-subflow token buckets at the path's rate: how much a subflow may send
//! now (min-rtt's spill-over) and how much it has queued (earliest-arrival).

use super::paths::div;
use crate::maps::{Bucket, PathState};

/// How long a bucket may save up credit: bursts up to this much time at the
/// path's rate pass without spilling.
pub const BUCKET_DEPTH_NS: u64 = 10_000_000;
/// Refill over up to this long is computed to the nanosecond (the product
/// with the rate fits u64 up to [`MAX_RATE`])...
const EXACT_REFILL_NS: u64 = 100_000_000;
/// ...beyond it to the microsecond, up to this long (a 10 s backlog is lost
/// anyway; the cap bounds the arithmetic).
const MAX_REFILL_NS: u64 = 10_000_000_000;
/// Rates are capped here (~800 Gbit/s) so `elapsed * rate` fits in u64.
pub const MAX_RATE: u64 = 100_000_000_000;
/// Minimum bucket depth: two full-size frames.
const MIN_DEPTH_BYTES: i64 = 3028;
/// Backlogs are capped here so `backlog * 1e6` fits in u64 (BPF has no
/// 128-bit multiply, so no saturating_mul).
pub const MAX_BACKLOG: u64 = 1 << 40;

/// Bucket depth in bytes for a path of `rate` bytes/s (`rate` > 0).
#[inline(always)]
pub fn bucket_depth(rate: u64) -> i64 {
    let rate = if rate > MAX_RATE { MAX_RATE } else { rate };
    let depth = (rate * (BUCKET_DEPTH_NS / 1_000_000) / 1_000) as i64;
    if depth < MIN_DEPTH_BYTES {
        MIN_DEPTH_BYTES
    } else {
        depth
    }
}

/// Credit of a bucket at `now_ns` for a path of `rate` bytes/s (`i64::MAX`
/// when the rate is unknown). Pure: the caller stores the result only for the
/// subflow it picks ([`bucket_spend`]).
#[inline(always)]
pub fn bucket_credit(b: &Bucket, rate: u64, now_ns: u64) -> i64 {
    if rate == 0 {
        return i64::MAX;
    }
    let depth = bucket_depth(rate);
    let rate = if rate > MAX_RATE { MAX_RATE } else { rate };
    let elapsed = now_ns.saturating_sub(b.last_ns);
    let refill = if elapsed <= EXACT_REFILL_NS {
        elapsed * rate / 1_000_000_000
    } else if elapsed <= MAX_REFILL_NS {
        (elapsed / 1_000) * rate / 1_000_000
    } else {
        MAX_REFILL_NS / 1_000 * rate / 1_000_000
    } as i64;
    let c = b.credit.saturating_add(refill);
    if c > depth {
        depth
    } else {
        c
    }
}

/// Charge `len` bytes to the bucket whose credit at `now_ns` was `credit`
/// ([`bucket_credit`] with the same `rate`). The refill's fraction of a byte
/// is kept (the clock advances only by the time the whole bytes took), so
/// back-to-back packets do not leak credit and the backlog stays exact.
#[inline(always)]
pub fn bucket_spend(b: &mut Bucket, rate: u64, credit: i64, len: u32, now_ns: u64) {
    if credit == i64::MAX || rate == 0 {
        return; // unknown rate: nothing to account
    }
    let rate = if rate > MAX_RATE { MAX_RATE } else { rate };
    let elapsed = now_ns.saturating_sub(b.last_ns);
    let refill = credit.saturating_sub(b.credit);
    if elapsed > EXACT_REFILL_NS || credit >= bucket_depth(rate) {
        b.last_ns = now_ns;
    } else if refill > 0 {
        // refill <= rate * EXACT_REFILL_NS / 1e9 <= 1e10, so the product fits u64.
        b.last_ns += div(refill as u64 * 1_000_000_000, rate);
    } // else: less than a byte accrued; keep the clock so the fraction counts later
    b.credit = credit - len as i64;
}

/// Bytes queued on the path by the bucket's account: a full bucket is an idle
/// path, every byte below full is still on its way out. 0 when the rate is unknown.
#[inline(always)]
pub fn backlog(p: &PathState, credit: i64) -> u64 {
    if credit == i64::MAX || p.rate_bytes_per_sec == 0 {
        return 0;
    }
    let q = bucket_depth(p.rate_bytes_per_sec).saturating_sub(credit);
    if q <= 0 {
        0
    } else if q as u64 > MAX_BACKLOG {
        MAX_BACKLOG
    } else {
        q as u64
    }
}
