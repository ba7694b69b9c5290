//! earliest-arrival: the subflow on which the packet is expected to arrive
//! first, counting the bytes already queued on it. With estimates that match
//! the paths, packets arrive in the order they were sent even over paths of
//! very different delay — the fast path queues up to the slow path's extra
//! delay before the slow one is used.

use super::bucket::{backlog, MAX_BACKLOG};
use super::paths::{argmin, div, owd_us, Paths};
use crate::maps::PathState;

/// Estimated time until a `pkt_len`-byte packet sent now on a path with
/// `credit` arrives: one-way delay + (queued bytes + the packet) / rate.
#[inline(always)]
pub fn arrival_us(p: &PathState, credit: i64, pkt_len: u32) -> u64 {
    let owd = owd_us(p);
    let rate = p.rate_bytes_per_sec;
    if rate == 0 || credit == i64::MAX {
        return owd;
    }
    let bytes = backlog(p, credit) + pkt_len as u64;
    let bytes = if bytes > MAX_BACKLOG { MAX_BACKLOG } else { bytes };
    owd + div(bytes * 1_000_000, rate)
}

/// Among the best tier, the subflow with the smallest [`arrival_us`] (ties:
/// lower subflow id).
#[inline(always)]
pub fn earliest_arrival<P: Paths>(paths: &P, pkt_len: u32) -> Option<usize> {
    argmin(paths, |i, p| arrival_us(p, paths.credit(i), pkt_len))
}
