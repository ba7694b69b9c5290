//! min-rtt: the lowest-RTT subflow with capacity left, spilling to the next.

use super::bucket::MAX_BACKLOG;
use super::paths::{argmin, div, loss_penalty_us, rtt_rank, Paths};

/// Keys at or above this mean "bucket short": any subflow with credit for the
/// packet ranks before all of them.
const SHORT: u64 = 1 << 62;

/// Among the best tier, the lowest-RTT subflow whose bucket holds `pkt_len`;
/// when every bucket is short, the one whose bucket refills first (so an
/// overloaded connection spreads in proportion to the rates). A path's
/// random loss counts as that much more RTT ([`loss_penalty_us`]): a lossy
/// path takes the spill-over, not the first packets.
#[inline(always)]
pub fn min_rtt<P: Paths>(paths: &P, pkt_len: u32) -> Option<usize> {
    let len = pkt_len as i64;
    argmin(paths, |i, p| {
        let credit = paths.credit(i);
        let key = if credit >= len {
            rtt_rank(p) as u64
        } else {
            // credit < len implies a finite rate, so the wait is finite.
            let deficit = (len - credit) as u64;
            let deficit = if deficit > MAX_BACKLOG { MAX_BACKLOG } else { deficit };
            SHORT + div(deficit * 1_000_000, p.rate_bytes_per_sec)
        };
        key + loss_penalty_us(p)
    })
}
