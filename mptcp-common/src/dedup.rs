//! Duplicate suppression for redundant packets: the receiver keeps the first
//! copy of each data sequence number (DSN) and drops the others.
//!
//! A per-connection window of [`DEDUP_SLOTS`] slots, indexed by DSN, records
//! which subflow's copy won each DSN. The kernel updates a slot with one
//! compare-and-swap, so copies arriving at once on two CPUs still yield
//! exactly one delivery. The winning subflow's further packets with the same
//! DSN pass: GSO segments share their super-packet's DSN.

/// Slots per connection (a power of two): DSNs this far apart share a slot,
/// so a copy arriving more than this many packets after its first copy is
/// treated as stale (and dropped).
pub const DEDUP_SLOTS: usize = 4096;

/// The slot of `dsn`.
#[inline(always)]
pub const fn dedup_slot(dsn: u32) -> usize {
    dsn as usize & (DEDUP_SLOTS - 1)
}

/// A slot's value: the DSN and the winning subflow (+1, so 0 = empty).
#[inline(always)]
pub const fn slot_value(dsn: u32, subflow: u8) -> u64 {
    ((dsn as u64) << 32) | (subflow as u64 + 1)
}

/// What to do with a replicated packet, given its slot's current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedup {
    /// Deliver, and store this slot value (compare-and-swap against the old one).
    Claim(u64),
    /// Deliver; the slot already names this subflow's copy (a further GSO segment).
    Again,
    /// Another subflow's copy of this DSN was delivered: drop.
    Duplicate,
    /// The slot holds a newer DSN: this copy is older than the window: drop.
    Stale,
}

/// The decision for a copy of `dsn` from `subflow` when its slot holds `old`.
#[inline(always)]
pub fn dedup_check(old: u64, dsn: u32, subflow: u8) -> Dedup {
    if old == 0 {
        return Dedup::Claim(slot_value(dsn, subflow));
    }
    let old_dsn = (old >> 32) as u32;
    if old_dsn == dsn {
        return if old as u32 == subflow as u32 + 1 { Dedup::Again } else { Dedup::Duplicate };
    }
    if (dsn.wrapping_sub(old_dsn) as i32) > 0 {
        Dedup::Claim(slot_value(dsn, subflow))
    } else {
        Dedup::Stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apply `dedup_check` to a window as the kernel does; true = delivered.
    fn receive(window: &mut [u64], dsn: u32, subflow: u8) -> bool {
        let slot = &mut window[dedup_slot(dsn)];
        match dedup_check(*slot, dsn, subflow) {
            Dedup::Claim(v) => {
                *slot = v;
                true
            }
            Dedup::Again => true,
            Dedup::Duplicate | Dedup::Stale => false,
        }
    }

    #[test]
    fn first_copy_wins_and_its_segments_pass() {
        let mut w = std::vec![0u64; DEDUP_SLOTS];
        assert!(receive(&mut w, 7, 1));
        assert!(receive(&mut w, 7, 1), "a further GSO segment of the winning copy");
        assert!(!receive(&mut w, 7, 0), "the other subflow's copy");
        assert!(receive(&mut w, 8, 0));
        assert!(!receive(&mut w, 8, 1));
    }

    #[test]
    fn every_dsn_is_delivered_once_however_copies_interleave() {
        let mut w = std::vec![0u64; DEDUP_SLOTS];
        let mut delivered = 0;
        // Two subflows, the second 100 packets behind; DSNs wrap around.
        let start = u32::MAX - 5_000;
        for k in 0..20_000u32 {
            delivered += receive(&mut w, start.wrapping_add(k), 0) as u32;
            if k >= 100 {
                delivered += receive(&mut w, start.wrapping_add(k - 100), 1) as u32;
            }
        }
        assert_eq!(delivered, 20_000);
    }

    #[test]
    fn a_copy_older_than_the_window_is_stale() {
        let mut w = std::vec![0u64; DEDUP_SLOTS];
        assert!(receive(&mut w, 5 + DEDUP_SLOTS as u32, 0));
        assert_eq!(dedup_check(w[dedup_slot(5)], 5, 1), Dedup::Stale);
    }
}
