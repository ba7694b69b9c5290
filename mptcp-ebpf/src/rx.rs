//! What both uplink hooks (XDP on Ethernet uplinks, tc on raw-IP ones) do
//! with a bond packet once they have parsed its outer headers, each in its
//! own way: is it data or control, which subflow, account it, drop later
//! copies of a redundant packet.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use mptcp_common::auth;
use mptcp_common::dedup::{dedup_check, dedup_slot, Dedup};
use mptcp_common::maps::{FlowKey, SubflowKey};
use mptcp_common::seq::{rx_seq_update, SeqEvent};
use mptcp_common::wire::{MpHeader, ETH_P_IP, ETH_P_IPV6, FLAG_REPLICATED, KIND_CONTROL, KIND_DATA, VERSION};
use mptcp_common::DropReason;

use aya_ebpf::maps::lpm_trie::Key;

use crate::maps::{
    settings, CONN_BY_DEST_V4, CONN_BY_DEST_V6, DATA_KEYS, DEDUP, RX_SEQ, SUBFLOW_BY_TUPLE, SUBFLOW_STATS,
};

/// The inner packet's source address, as the hook read it.
pub enum InnerSource {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the multipath header says the packet is.
pub enum Kind {
    /// An encapsulated inner packet.
    Data,
    /// A control message for the controller's socket: passed up untouched.
    Control,
}

#[inline(always)]
pub fn kind(hdr: &MpHeader) -> Result<Kind, DropReason> {
    if hdr.version != VERSION {
        return Err(DropReason::BadHeader);
    }
    match hdr.kind {
        KIND_CONTROL => Ok(Kind::Control),
        KIND_DATA => Ok(Kind::Data),
        _ => Err(DropReason::BadHeader),
    }
}

/// A data packet from the 4-tuple `key` (remote = its source) with header
/// `hdr`, whose inner packet comes from `src`, `wire_len` bytes on the wire:
/// the subflow must be known by its 4-tuple and named by the header, the
/// header made with the connection's key and never taken before, and on a
/// concentrator the inner source must be the sending connection's.
/// Accounts it, and answers whether to deliver it, with the inner packet's
/// EtherType.
#[inline(always)]
pub fn accept(key: FlowKey, hdr: &MpHeader, src: InnerSource, wire_len: u64) -> Result<u16, DropReason> {
    // SAFETY: the value is copied out at once.
    let sk: SubflowKey = *unsafe { SUBFLOW_BY_TUPLE.get(key) }.ok_or(DropReason::UnknownSubflow)?;
    if sk.token != hdr.token() || sk.subflow_id != hdr.subflow_id as u32 {
        return Err(DropReason::BadToken);
    }
    // Before anything is counted or remembered: only the peer can make a
    // header that passes.
    // SAFETY: the value is read at once.
    let keys = unsafe { DATA_KEYS.get(sk.token) }.ok_or(DropReason::Forged)?;
    if !auth::verify(&keys.rx, hdr) {
        return Err(DropReason::Forged);
    }
    // The concentrator routes a connection's prefixes back to its client
    // only: a source outside them is another client's or nobody's.
    if settings().checks_sources() {
        let owner = match &src {
            InnerSource::V4(a) => CONN_BY_DEST_V4.get(Key::new(32, *a)).copied(),
            InnerSource::V6(a) => CONN_BY_DEST_V6.get(Key::new(128, *a)).copied(),
        };
        if owner != Some(sk.token) {
            return Err(DropReason::ForeignSource);
        }
    }
    let inner_proto = match src {
        InnerSource::V4(_) => ETH_P_IP,
        InnerSource::V6(_) => ETH_P_IPV6,
    };

    // SAFETY: plain helper call.
    let now_us = (unsafe { bpf_ktime_get_ns() } / 1000) as u32;
    let event = match RX_SEQ.get_ptr_mut(sk) {
        // SAFETY: map value valid for the run. One subflow's packets arrive
        // on one receive queue, so one CPU; were two CPUs to race on it, a
        // gap could be miscounted or a packet taken or refused twice.
        Some(s) => rx_seq_update(unsafe { &mut *s }, hdr.subflow_seq(), hdr.segs()),
        None => return Err(DropReason::UnknownSubflow),
    };
    if event == SeqEvent::Replayed {
        return Err(DropReason::Replayed);
    }
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

    // Copies of a redundant packet: only the first of its DSN goes up.
    if hdr.flags & FLAG_REPLICATED != 0 {
        first_copy(sk.token, hdr.dsn(), hdr.subflow_id)?;
    }
    Ok(inner_proto)
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
