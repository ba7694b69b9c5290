//! The receive state both uplink hooks (XDP on Ethernet uplinks, tc on
//! raw-IP ones) check a bond data packet against: the maps, as the
//! [`RxState`] that [`mptcp_common::uplink::accept`] reads and updates.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::maps::lpm_trie::Key;
use mptcp_common::auth::DataKey;
use mptcp_common::dedup::{dedup_check, dedup_slot, Dedup};
use mptcp_common::inner::InnerAddr;
use mptcp_common::maps::{FlowKey, SubflowKey};
use mptcp_common::seq::{rx_seq_update, SeqEvent};
use mptcp_common::uplink::RxState;
use mptcp_common::wire::{MpHeader, FAMILY_V6};
use mptcp_common::DropReason;

use crate::maps::{
    settings, CONN_BY_DEST_V4, CONN_BY_DEST_V6, DATA_KEYS, DEDUP, RX_SEQ, SUBFLOW_BY_TUPLE, SUBFLOW_STATS,
};

/// The receive side's maps.
pub struct Maps;

impl RxState for Maps {
    #[inline(always)]
    fn subflow(&self, key: &FlowKey) -> Option<SubflowKey> {
        // SAFETY: the value is copied out at once.
        unsafe { SUBFLOW_BY_TUPLE.get(key) }.copied()
    }

    #[inline(always)]
    fn rx_key(&self, token: u32) -> Option<DataKey> {
        // SAFETY: the value is copied out at once.
        unsafe { DATA_KEYS.get(token) }.map(|k| k.rx)
    }

    #[inline(always)]
    fn checks_sources(&self) -> bool {
        settings().checks_sources()
    }

    #[inline(always)]
    fn owner(&self, src: &InnerAddr) -> Option<u32> {
        if src.family == FAMILY_V6 {
            CONN_BY_DEST_V6.get(Key::new(128, src.addr)).copied()
        } else {
            CONN_BY_DEST_V4.get(Key::new(32, src.ipv4())).copied()
        }
    }

    #[inline(always)]
    fn seq_update(&mut self, sk: SubflowKey, seq: u64, segs: u32) -> Option<SeqEvent> {
        let s = RX_SEQ.get_ptr_mut(sk)?;
        // SAFETY: map value valid for the run. One subflow's packets arrive
        // on one receive queue, so one CPU; were two CPUs to race on it, a
        // gap could be miscounted or a packet taken or refused twice.
        Some(rx_seq_update(unsafe { &mut *s }, seq, segs))
    }

    #[inline(always)]
    fn account(&mut self, sk: SubflowKey, wire_len: u64, event: SeqEvent, hdr: &MpHeader) {
        // SAFETY: plain helper call.
        let now_us = (unsafe { bpf_ktime_get_ns() } / 1000) as u32;
        if let Some(s) = SUBFLOW_STATS.get_ptr_mut(sk) {
            // SAFETY: per-CPU map value, valid for the run, this CPU only.
            unsafe {
                (*s).rx_packets += 1;
                (*s).rx_bytes += wire_len;
                match event {
                    SeqEvent::Gap(n) => (*s).rx_gaps += n as u64,
                    SeqEvent::Late => (*s).rx_late += 1,
                    _ => {}
                }
                (*s).rx_owd_us = now_us.wrapping_sub(hdr.tstamp_us()) as u64;
                (*s).rx_owd_at_us = now_us as u64;
            }
        }
    }

    #[inline(always)]
    fn first_copy(&mut self, token: u32, dsn: u32, subflow: u8) -> Result<(), DropReason> {
        first_copy(token, dsn, subflow)
    }
}

/// Atomically replace `*p` with `new` if it still holds `old`; returns the
/// value found. `core` offers no atomics on bpfel-unknown-none, hence the one
/// BPF instruction (BPF_ATOMIC | BPF_CMPXCHG, kernel >= 5.12).
#[inline(always)]
fn cmpxchg(p: *mut u64, old: u64, new: u64) -> u64 {
    let mut found = old;
    // SAFETY: `p` points into a map value valid for the program's run; the
    // instruction touches only those 8 bytes.
    unsafe {
        core::arch::asm!(
            "r0 = cmpxchg_64({ptr} + 0, r0, {new})",
            ptr = in(reg) p,
            new = in(reg) new,
            inout("r0") found,
        );
    }
    found
}

/// Whether this copy of `dsn` from `subflow` is the one to deliver (see
/// [`mptcp_common::dedup`]). A connection without a window delivers everything.
#[inline(always)]
fn first_copy(token: u32, dsn: u32, subflow: u8) -> Result<(), DropReason> {
    let Some(w) = DEDUP.get_ptr_mut(token) else { return Ok(()) };
    // SAFETY: the map value is valid for the run; the slot index is masked.
    let slot = unsafe { core::ptr::addr_of_mut!((*w).slots[dedup_slot(dsn)]) };
    // A lost race means another CPU just claimed the slot: decide again on its value.
    let mut old = unsafe { core::ptr::read_volatile(slot) };
    for _ in 0..4 {
        match dedup_check(old, dsn, subflow) {
            Dedup::Again => return Ok(()),
            Dedup::Duplicate => return Err(DropReason::Duplicate),
            Dedup::Stale => return Err(DropReason::StaleCopy),
            Dedup::Claim(new) => {
                let found = cmpxchg(slot, old, new);
                if found == old {
                    return Ok(());
                }
                old = found;
            }
        }
    }
    Ok(()) // contended beyond reason: deliver rather than lose
}
