//! Receiver-side subflow sequence accounting: gaps (loss or reordering) and
//! late arrivals, tolerant of GSO segments that share one sequence number.

use crate::maps::RxSeq;

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
}

/// Update `s` for a packet carrying subflow sequence number `seq`.
#[inline(always)]
pub fn rx_seq_update(s: &mut RxSeq, seq: u32) -> SeqEvent {
    if s.repeats == 0 {
        s.last = seq;
        s.repeats = 1;
        return SeqEvent::InOrder;
    }
    if seq == s.last {
        s.repeats = s.repeats.saturating_add(1);
        return SeqEvent::Repeat;
    }
    let expected = s.last.wrapping_add(s.repeats);
    let d = seq.wrapping_sub(expected) as i32;
    if d < 0 {
        return SeqEvent::Late;
    }
    s.last = seq;
    s.repeats = 1;
    if d == 0 {
        SeqEvent::InOrder
    } else {
        SeqEvent::Gap(d as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u32]) -> (u32, u32) {
        let mut s = RxSeq::default();
        let (mut gaps, mut late) = (0, 0);
        for &q in seqs {
            match rx_seq_update(&mut s, q) {
                SeqEvent::Gap(n) => gaps += n,
                SeqEvent::Late => late += 1,
                _ => {}
            }
        }
        (gaps, late)
    }

    #[test]
    fn in_order_has_no_gaps() {
        assert_eq!(run(&[5, 6, 7, 8]), (0, 0));
    }

    #[test]
    fn gso_segments_share_a_number_and_advance_by_their_count() {
        // A 3-segment super-packet at 10, then 13.
        assert_eq!(run(&[10, 10, 10, 13, 14]), (0, 0));
        // Its last segment lost.
        assert_eq!(run(&[10, 10, 13]), (1, 0));
    }

    #[test]
    fn loss_and_reordering() {
        assert_eq!(run(&[1, 2, 5, 6]), (2, 0));
        assert_eq!(run(&[1, 3, 2, 4]), (1, 1));
    }

    #[test]
    fn wraps_around() {
        assert_eq!(run(&[u32::MAX - 1, u32::MAX, 0, 1]), (0, 0));
    }
}
