//! flowlet: a flow stays on its subflow until a move can no longer reorder it,
//! i.e. until it paused long enough that a packet placed on the base policy's
//! choice arrives after the flow's previous packet. That pause is the paths'
//! delay difference (plus whatever is still queued on the old path); with
//! accurate estimates the flow is never reordered, and bursty flows still
//! spread over every path.
//!
//! A move onto a path of lower rate also waits for a pause of the delay
//! difference, as the flowlet rule has it: a flow that never pauses (one bulk
//! transfer) could otherwise drift onto the slow path whenever the fast one's
//! bucket runs short, which never reorders, and stay stranded there, since
//! coming back would need that pause. Onto a path at least as fast it may
//! move mid-stream.

use super::earliest_arrival::arrival_us;
use super::paths::{best_tier, owd_us, tier, Paths, NO_TIER};
use super::FlowletEntry;
use crate::maps::MAX_SUBFLOWS;

/// Safety margin on the arrival comparison (jitter of the estimates).
pub const FLOWLET_MARGIN_NS: u64 = 1_000_000;

/// The subflow for a packet of a flow last placed as `flow`, given the base
/// policy's choice `base`: the flow's own subflow while it is still among the
/// best eligible ones and a move could overtake its previous packet, else `base`.
#[inline(always)]
pub fn flowlet<P: Paths>(paths: &P, flow: &FlowletEntry, base: usize, now_ns: u64, pkt_len: u32) -> usize {
    let i = flow.subflow as usize;
    if flow.last_ns == 0 || i == base || i >= MAX_SUBFLOWS || i >= paths.count() {
        return base;
    }
    let want = best_tier(paths);
    if want == NO_TIER || tier(paths.state(i)) != want {
        return base;
    }
    let b = base & (MAX_SUBFLOWS - 1);
    let (pb, pi) = (paths.state(b), paths.state(i & (MAX_SUBFLOWS - 1)));
    let arrives = now_ns + arrival_us(pb, paths.credit(b), pkt_len) * 1_000;
    let slower = pb.rate_bytes_per_sec != 0 && pb.rate_bytes_per_sec < pi.rate_bytes_per_sec;
    // Laundered: the verifier need not follow how the difference came about.
    let difference_ns = paths.launder(owd_us(pb).abs_diff(owd_us(pi)) as usize) as u64 * 1_000;
    let paused = now_ns.saturating_sub(flow.last_ns) > difference_ns + FLOWLET_MARGIN_NS;
    if arrives < flow.arrival_ns + FLOWLET_MARGIN_NS || slower && !paused {
        paths.launder(i)
    } else {
        base
    }
}

/// The flow's placement after a packet went out on subflow `i` at `now_ns`.
#[inline(always)]
pub fn flowlet_entry<P: Paths>(paths: &P, i: usize, now_ns: u64, pkt_len: u32) -> FlowletEntry {
    let i = i & (MAX_SUBFLOWS - 1);
    FlowletEntry {
        subflow: i as u32,
        _pad: 0,
        last_ns: now_ns,
        arrival_ns: now_ns + arrival_us(paths.state(i), paths.credit(i), pkt_len) * 1_000,
    }
}
