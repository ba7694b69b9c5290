//! earliest-arrival: the subflow on which the packet is expected to arrive
//! first, counting the bytes already queued on it. With estimates that match
//! the paths, packets arrive in the order they were sent even over paths of
//! very different delay — the fast path queues up to the slow path's extra
//! delay before the slow one is used.
//!
//! That needs the nearer path to hold the queue. Where a path's buffer is
//! known ([`PathState::queue_us`]), a packet that would overflow it goes to a
//! path that has room; and a path that cannot be used beside the biggest one
//! in order — the nearer of the two holds less queue than their delays
//! differ by, as a small terrestrial link beside a satellite; a buffer not
//! learnt yet counts as [`ASSUMED_QUEUE_US`] — is left out:
//! its packets would arrive long before those sent earlier on the other, and
//! the inner flows would read that as loss. Not so a bare acknowledgement
//! ([`ACK_SIZED`]): it goes wherever it arrives first, so the flows on a far
//! path get their acknowledgements back over a near one.
//!
//! A path's random loss counts as extra delay ([`loss_penalty_us`]): the
//! loss-free paths take the packets until their queue reaches it.

use super::bucket::{backlog, MAX_BACKLOG};
use super::paths::{argmin, div, loss_penalty_us, owd_us, tier, Paths, NO_TIER};
use crate::maps::{PathState, PATH_RATE_LOWER_BOUND, PATH_UNBRIDGEABLE};
use crate::wire::wire_len;

/// Keys at or above this: the packet would overflow the path's buffer.
const OVERFLOWS: u64 = 1 << 60;
/// Keys at or above this: the path cannot be used in order beside the
/// biggest one ([`PATH_UNBRIDGEABLE`]); ranks after every path that can.
const UNBRIDGEABLE: u64 = 1 << 61;

/// Packets up to this many bytes on the wire (an inner packet of up to 100
/// bytes: a bare TCP acknowledgement, IPv6 with timestamps and three SACK
/// blocks included) go wherever they arrive first, a path left out as
/// [`PATH_UNBRIDGEABLE`] too: an acknowledgement that overtakes others only
/// makes them stale, and it returns the far path's flows over the near path.
pub const ACK_SIZED: u32 = wire_len(100, 1);

/// Estimated time until a `pkt_len`-byte packet sent now on a path with
/// `credit` arrives: one-way delay + (queued bytes + the packet) / rate.
#[inline(always)]
pub fn arrival_us(p: &PathState, credit: i64, pkt_len: u32) -> u64 {
    owd_us(p) + queued_us(p, credit, pkt_len)
}

/// How long the packet would wait in the path's queue: (queued bytes + the
/// packet) / rate; 0 when the rate is unknown.
#[inline(always)]
fn queued_us(p: &PathState, credit: i64, pkt_len: u32) -> u64 {
    let rate = p.rate_bytes_per_sec;
    if rate == 0 || credit == i64::MAX {
        return 0;
    }
    let bytes = backlog(p, credit) + pkt_len as u64;
    let bytes = if bytes > MAX_BACKLOG { MAX_BACKLOG } else { bytes };
    div(bytes * 1_000_000, rate)
}

/// A buffer not known yet is taken to hold this much (µs). Learning it
/// means filling it: an inner flow's slow start on a small near path beside
/// a far big one overflows it before its size is known, and a loss at a
/// small window leaves cubic climbing for many seconds at the far path's
/// round trip. 100 ms is a generous buffer for a line (the WAN emulator's
/// default is 50 ms) and short of any satellite's extra delay.
pub const ASSUMED_QUEUE_US: u32 = 100_000;

/// Whether paths `a` and `b` can carry one flow in order: the nearer one can
/// queue a packet for as long as the farther one's delay exceeds its own,
/// its buffer taken as [`ASSUMED_QUEUE_US`] until learnt.
#[inline(always)]
pub fn bridgeable(a: &PathState, b: &PathState) -> bool {
    bridges(a, b, ASSUMED_QUEUE_US as u64)
}

/// [`bridgeable`], a buffer not learnt yet taken to hold `unknown_holds` µs.
#[inline(always)]
fn bridges(a: &PathState, b: &PathState, unknown_holds: u64) -> bool {
    let (da, db) = (owd_us(a), owd_us(b));
    let (near, gap) = if da <= db { (a, db - da) } else { (b, da - db) };
    let holds = if near.queue_us == 0 { unknown_holds } else { near.queue_us as u64 };
    gap <= holds
}

/// Among the best tier, the subflow with the smallest [`arrival_us`] plus
/// its [`loss_penalty_us`] (ties: lower subflow id), preferring paths whose
/// buffer holds the packet, and any path before those marked
/// [`PATH_UNBRIDGEABLE`].
#[inline(always)]
pub fn earliest_arrival<P: Paths>(paths: &P, pkt_len: u32) -> Option<usize> {
    argmin(paths, |i, p| {
        let credit = paths.credit(i);
        let queued = queued_us(p, credit, pkt_len);
        let key = owd_us(p) + queued + loss_penalty_us(p);
        let key = if key >= OVERFLOWS { OVERFLOWS - 1 } else { key };
        if p.flags & PATH_UNBRIDGEABLE != 0 && pkt_len > ACK_SIZED {
            UNBRIDGEABLE + key
        } else if p.queue_us != 0 && queued > p.queue_us as u64 {
            OVERFLOWS + key
        } else {
            key
        }
    })
}

/// Mark the paths earliest-arrival leaves out ([`PATH_UNBRIDGEABLE`]): those
/// not [`bridgeable`] with the path of the highest rate in the best tier
/// (the lowest subflow id of equals). A path whose rate is unknown (the
/// policies treat it as unlimited: no packet train answered, never loaded),
/// or only a lower bound ([`PATH_RATE_LOWER_BOUND`]: a first estimate taken
/// while the inner flows were still starting) on a path never yet filled to
/// its buffer (`queue_us` unknown), counts as bigger than the others: given
/// the flow, it queues or carries it and so is measured; otherwise a far
/// big path first seen lightly loaded would be left out for good. Beside a
/// biggest path whose rate is unknown, a buffer not learnt yet is not held
/// against a path (nothing says the far one is worth it); beside a sized
/// one it counts as [`ASSUMED_QUEUE_US`]. A path that has overflowed was
/// tried at full load, and is not tried again; one timed by a packet train
/// is not a lower bound. The controller calls it on a connection's path
/// states whenever one changes: a comparison of every path with the biggest
/// costs the verifier more than the egress program has left, and changes
/// only as the estimates do.
pub fn mark_unbridgeable(states: &mut [PathState]) {
    let want = states.iter().map(tier).min().unwrap_or(NO_TIER);
    let size = |p: &PathState| {
        let rate = if p.rate_bytes_per_sec == 0 { u64::MAX } else { p.rate_bytes_per_sec };
        let untried = p.flags & PATH_RATE_LOWER_BOUND != 0 && p.queue_us == 0;
        (p.rate_bytes_per_sec == 0 || untried, rate)
    };
    let big = states
        .iter()
        .enumerate()
        .filter(|(_, p)| want != NO_TIER && tier(p) == want)
        .max_by_key(|&(i, p)| (size(p), core::cmp::Reverse(i)))
        .map(|(_, p)| *p);
    for p in states.iter_mut() {
        let out = big.is_some_and(|b| {
            let unknown_holds = if b.rate_bytes_per_sec == 0 { u64::MAX } else { ASSUMED_QUEUE_US as u64 };
            tier(p) == want && !bridges(p, &b, unknown_holds)
        });
        p.flags = if out { p.flags | PATH_UNBRIDGEABLE } else { p.flags & !PATH_UNBRIDGEABLE };
    }
}
