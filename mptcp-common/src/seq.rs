//! Receiver-side subflow sequence accounting: gaps (loss or reordering),
//! late arrivals and replays, tolerant of GSO segments that share one
//! sequence number.
//!
//! Every header the receiver takes is remembered in a 64-number window
//! below the newest (as IPsec's anti-replay window, RFC 4303): a header
//! seen before, or older than the window, is a replay. The numbers are 48
//! bits wide, so no connection lives long enough for them to wrap and an
//! old header to look new (as with IPsec's extended sequence numbers). A header announces
//! how many GSO segments share it, and that many packets carrying it are
//! taken, no more. A header's tag ([`crate::auth`]) is checked before
//! this runs, so only a header the sender made can advance the window.

use crate::maps::RxSeq;

/// Header sequence numbers the replay window remembers below the newest.
pub const REPLAY_WINDOW: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// The next expected packet (or the first one).
    InOrder,
    /// Same sequence number as the previous packet: a further GSO segment.
    Repeat,
    /// `n` sequence numbers were skipped.
    Gap(u32),
    /// Older than the newest seen: it filled a gap counted earlier.
    Late,
    /// Taken before (or all its segments were), or older than the window:
    /// drop it.
    Replayed,
}

/// Update `s` for a packet whose header carries subflow sequence number
/// `seq` (48 bits) and says `segs` packets share it.
#[inline(always)]
pub fn rx_seq_update(s: &mut RxSeq, seq: u64, segs: u32) -> SeqEvent {
    let segs = if segs == 0 { 1 } else { segs };
    if s.repeats == 0 {
        *s = RxSeq { last: seq, top: seq, seen: 1, repeats: 1, last_segs: segs };
        return SeqEvent::InOrder;
    }
    if seq == s.last {
        if s.repeats >= s.last_segs {
            return SeqEvent::Replayed;
        }
        s.repeats += 1;
        return SeqEvent::Repeat;
    }
    // The replay window, over header numbers.
    let ahead = seq.wrapping_sub(s.top);
    if ahead != 0 && ahead < 1 << 63 {
        s.seen = if ahead >= REPLAY_WINDOW as u64 { 0 } else { s.seen << ahead };
        s.seen |= 1;
        s.top = seq;
    } else {
        let back = s.top.wrapping_sub(seq);
        if back >= REPLAY_WINDOW as u64 || s.seen & (1u64 << back) != 0 {
            return SeqEvent::Replayed;
        }
        s.seen |= 1u64 << back;
    }
    let expected = s.last.wrapping_add(s.repeats as u64);
    let d = seq.wrapping_sub(expected) as i64;
    if d < 0 {
        return SeqEvent::Late;
    }
    s.last = seq;
    s.repeats = 1;
    s.last_segs = segs;
    if d == 0 {
        SeqEvent::InOrder
    } else {
        SeqEvent::Gap(d.min(u32::MAX as i64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (gaps, late, replayed) over packets given as (seq, segs).
    fn run_segs(pkts: &[(u64, u32)]) -> (u32, u32, u32) {
        let mut s = RxSeq::default();
        let (mut gaps, mut late, mut replayed) = (0, 0, 0);
        for &(q, n) in pkts {
            match rx_seq_update(&mut s, q, n) {
                SeqEvent::Gap(n) => gaps += n,
                SeqEvent::Late => late += 1,
                SeqEvent::Replayed => replayed += 1,
                _ => {}
            }
        }
        (gaps, late, replayed)
    }

    fn run(seqs: &[u64]) -> (u32, u32, u32) {
        run_segs(&seqs.iter().map(|&q| (q, 1)).collect::<std::vec::Vec<_>>())
    }

    #[test]
    fn in_order_has_no_gaps() {
        assert_eq!(run(&[5, 6, 7, 8]), (0, 0, 0));
    }

    #[test]
    fn gso_segments_share_a_number_and_advance_by_their_count() {
        // A 3-segment super-packet at 10, then 13.
        assert_eq!(run_segs(&[(10, 3), (10, 3), (10, 3), (13, 1), (14, 1)]), (0, 0, 0));
        // Its last segment lost.
        assert_eq!(run_segs(&[(10, 3), (10, 3), (13, 1)]), (1, 0, 0));
        // A fourth packet under a header that announced three is a replay.
        assert_eq!(run_segs(&[(10, 3), (10, 3), (10, 3), (10, 3)]), (0, 0, 1));
    }

    #[test]
    fn loss_and_reordering() {
        assert_eq!(run(&[1, 2, 5, 6]), (2, 0, 0));
        assert_eq!(run(&[1, 3, 2, 4]), (1, 1, 0));
    }

    #[test]
    fn goes_on_past_32_bits() {
        let w = 1u64 << 32;
        assert_eq!(run(&[w - 2, w - 1, w, w + 1]), (0, 0, 0));
    }

    #[test]
    fn a_header_captured_long_ago_stays_a_replay() {
        // 2^31 numbers later a 32-bit number would read as ahead; 2^32
        // later its low 32 bits come round again. Neither makes it new.
        assert_eq!(run(&[5, 6, 6 + (1 << 31) + 10, 5]), (1 << 31 | 9, 0, 1));
        assert_eq!(run(&[5, 6, (1 << 32) + 4, 5]), (u32::MAX - 2, 0, 1));
    }

    #[test]
    fn a_packet_taken_once_is_refused_ever_after() {
        // Again at once, again after newer ones, again after a late one.
        assert_eq!(run(&[1, 1]), (0, 0, 1));
        assert_eq!(run(&[1, 2, 3, 2]), (0, 0, 1));
        assert_eq!(run(&[1, 3, 2, 2, 3, 1]), (1, 1, 3));
        // Older than the window: refused, taken or not.
        assert_eq!(run(&[100, 200, 100]), (99, 0, 1));
        assert_eq!(run(&[100, 200, 130]), (99, 0, 1));
        // Within the window and never seen: late, taken once.
        assert_eq!(run(&[100, 110, 105, 105]), (9, 1, 1));
    }

    #[test]
    fn a_window_of_exactly_64_numbers() {
        let mut s = RxSeq::default();
        rx_seq_update(&mut s, 0, 1);
        assert_eq!(rx_seq_update(&mut s, 63, 1), SeqEvent::Gap(62));
        assert_eq!(rx_seq_update(&mut s, 0, 1), SeqEvent::Replayed);
        assert_eq!(rx_seq_update(&mut s, 1, 1), SeqEvent::Late);
        assert_eq!(rx_seq_update(&mut s, 64, 1), SeqEvent::InOrder);
        assert_eq!(rx_seq_update(&mut s, 1, 1), SeqEvent::Replayed, "now 63 behind, but taken");
        assert_eq!(rx_seq_update(&mut s, 2, 1), SeqEvent::Late, "62 behind");
        assert_eq!(rx_seq_update(&mut s, 0, 1), SeqEvent::Replayed, "64 behind: outside");
    }

    /// Whatever order and repetition the packets come in, each (header,
    /// segment) is taken at most once, and every packet of a stream in order
    /// is taken.
    #[test]
    fn nothing_is_taken_twice() {
        use proptest::prelude::*;
        // A sender's headers (each number once, advancing by the segments),
        // delivered in any order, any number of times.
        let stream = (proptest::collection::vec(1u32..4, 1..100), proptest::collection::vec(0usize..1000, 1..400));
        proptest!(|((segs, deliveries) in stream)| {
            let mut headers = std::vec::Vec::new();
            let mut seq = (1u64 << 32) - 50; // across 32 bits
            for n in segs {
                headers.push((seq, n));
                seq += n as u64;
            }
            let mut s = RxSeq::default();
            let mut taken = std::vec![0u32; headers.len()];
            for i in deliveries {
                let i = i % headers.len();
                let (seq, segs) = headers[i];
                if rx_seq_update(&mut s, seq, segs) != SeqEvent::Replayed {
                    taken[i] += 1;
                    prop_assert!(taken[i] <= segs, "header {seq} ({segs} segments) taken {} times", taken[i]);
                }
            }
        });
        let mut s = RxSeq::default();
        let mut seq = 7u64;
        for i in 0..10_000u32 {
            let segs = 1 + i % 5;
            for _ in 0..segs {
                assert_ne!(rx_seq_update(&mut s, seq, segs), SeqEvent::Replayed);
            }
            seq += segs as u64;
        }
    }
}
