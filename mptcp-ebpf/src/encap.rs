//! tc, tail-called by `bond_egress` once it has decided (never attached):
//! encapsulate the packet for the decided subflow (outer IP + UDP +
//! multipath header, tagged with the connection's key), account it and
//! redirect it to that subflow's uplink.
//!
//! A program of its own so the verifier checks these steps once: inline,
//! they were checked again for each of the hundreds of states the policies
//! leave, and `bond_egress` was at 96 % of the verifier's budget without
//! the tag.

use aya_ebpf::bindings::{
    bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6,
    BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_SHOT,
};
use aya_ebpf::helpers::bpf_redirect_neigh;
use aya_ebpf::macros::classifier;
use aya_ebpf::programs::TcContext;
use mptcp_common::auth;
use mptcp_common::headers::ETH_PROTO_OFFSET;
use mptcp_common::maps::{SubflowKey, MAX_SUBFLOWS};
use mptcp_common::template::{outer_v4, outer_v6, V4_OUTER, V6_OUTER};
use mptcp_common::wire::{frame_len, MpHeader, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, FAMILY_V6, MP_HDR_LEN};
use mptcp_common::DropReason;

use crate::egress::gso_segs_of;
use crate::maps::{Sending, CONNECTIONS, DATA_KEYS, SENDING, SUBFLOW_STATS};

#[classifier]
pub fn bond_encap(ctx: TcContext) -> i32 {
    match try_bond_encap(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => {
            crate::debug::dropped(&ctx, reason, mptcp_common::maps::HOOK_BOND_ENCAP);
            TC_ACT_SHOT
        }
    }
}

/// `BPF_F_ADJ_ROOM_ENCAP_L2(len)`: the multipath header sits between UDP and
/// the inner packet, so GSO repeats it on every segment.
const fn encap_l2(len: usize) -> u64 {
    ((len as u64) & 0xff) << 56
}

#[inline(always)]
fn try_bond_encap(ctx: &TcContext) -> Result<i32, DropReason> {
    let slot = SENDING.get_ptr(0).ok_or(DropReason::EncapFailed)?;
    // SAFETY: per-CPU slot, written by the run that tail-called us.
    let s: Sending = unsafe { *slot };
    let conn_ptr = CONNECTIONS.get_ptr(s.token).ok_or(DropReason::NoConnection)?;
    // SAFETY: map values stay valid for the whole program run.
    let conn = unsafe { &*conn_ptr };
    let i = s.subflow as usize & (MAX_SUBFLOWS - 1);
    let sub = &conn.subflows[i];
    let inner_len = ctx.len().saturating_sub(ETH_HLEN as u32);
    let segs = gso_segs_of(ctx).max(1);
    let v6 = sub.outer.family == FAMILY_V6;
    let outer = if v6 { V6_OUTER } else { V4_OUTER };

    // 5. Encapsulate, under a header tagged last: the tag covers every
    // field, the segment count included.
    let hdr = MpHeader::data(s.token, i as u8, s.dsn, s.seq, s.tstamp_us).with_flags(s.flags as u8);
    let mut hdr = hdr.with_segs(segs as u16).with_seq_hi(s.seq_hi as u16);
    let keys_ptr = DATA_KEYS.get_ptr(s.token).ok_or(DropReason::NoConnection)?;
    // SAFETY: map values stay valid for the whole program run; read in place.
    hdr.tag = auth::header_tag(unsafe { &(*keys_ptr).tx }, &hdr);
    let l3 = if v6 { BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 } else { BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 };
    let flags = (l3 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_FIXED_GSO) as u64 | encap_l2(MP_HDR_LEN);
    ctx.adjust_room(outer as i32, BPF_ADJ_ROOM_MAC, flags).map_err(|_| DropReason::EncapFailed)?;
    // The headers as mptcp_common::template lays them out (the tests build
    // their packets with the same functions).
    if v6 {
        let o = outer_v6(&sub.outer, inner_len as u16, &hdr);
        ctx.store(ETH_HLEN, &o, 0).map_err(|_| DropReason::EncapFailed)?;
        ctx.store(ETH_PROTO_OFFSET, &ETH_P_IPV6.to_be(), 0).map_err(|_| DropReason::EncapFailed)?;
    } else {
        let o = outer_v4(&sub.outer, inner_len as u16, &hdr);
        ctx.store(ETH_HLEN, &o, 0).map_err(|_| DropReason::EncapFailed)?;
        ctx.store(ETH_PROTO_OFFSET, &ETH_P_IP.to_be(), 0).map_err(|_| DropReason::EncapFailed)?;
    }
    // bpf_redirect_neigh drops frames with a broadcast destination (the ifb
    // device writes one); it fills in both addresses itself.
    ctx.store(0, &[0u8; 6], 0).map_err(|_| DropReason::EncapFailed)?;

    // 6. Account and send.
    let key = SubflowKey { token: s.token, subflow_id: i as u32 };
    if let Some(st) = SUBFLOW_STATS.get_ptr_mut(key) {
        // SAFETY: per-CPU map value, valid for the run, this CPU only.
        unsafe {
            (*st).tx_packets += segs as u64;
            // The frames' bytes less their Ethernet headers.
            (*st).tx_bytes += (frame_len(inner_len, segs, outer as u32) - segs * ETH_HLEN as u32) as u64;
        }
    }
    // SAFETY: plain helper call; a null neighbour lets the kernel resolve it.
    let verdict = unsafe { bpf_redirect_neigh(sub.outer.ifindex, core::ptr::null_mut(), 0, 0) } as i32;
    if verdict == TC_ACT_SHOT {
        return Err(DropReason::RedirectFailed);
    }
    Ok(verdict)
}
