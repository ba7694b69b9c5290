//! tc ingress on uplinks without an Ethernet header (raw-IP LTE modems,
//! PPP, TUN): the packet starts at its IP header. The same steps as the XDP
//! program (ingress.rs) — ours? data or control? which subflow? account —
//! then the outer headers are removed with `bpf_skb_adjust_room`, which also
//! gives the packet its inner protocol. Such devices offer only generic XDP,
//! whose handling after the program assumes an Ethernet header.

use aya_ebpf::bindings::{
    bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6, TC_ACT_OK,
    TC_ACT_SHOT,
};
use aya_ebpf::macros::classifier;
use aya_ebpf::programs::TcContext;
use mptcp_common::uplink::{accept, parse_v4, parse_v6, Datagram};
use mptcp_common::wire::{ETH_HLEN, ETH_P_IP};
use mptcp_common::DropReason;

use crate::maps::SETTINGS;
use crate::mss;
use crate::parse::TcPacket;
use crate::rx::Maps;

#[classifier]
pub fn uplink_ingress_l3(ctx: TcContext) -> i32 {
    match try_uplink_ingress_l3(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => {
            crate::debug::dropped(&ctx, reason, mptcp_common::maps::HOOK_UPLINK_L3);
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn try_uplink_ingress_l3(ctx: &TcContext) -> Result<i32, DropReason> {
    let Ok(first) = ctx.load::<u8>(0) else { return Ok(TC_ACT_OK) };
    // 1. Ours? Data? Which 4-tuple, header and inner source; a data
    // packet goes on to `receive`, anything else up the stack untouched.
    let Some(s) = SETTINGS.get(0) else { return Ok(TC_ACT_OK) };
    let p = &TcPacket(ctx);
    match first >> 4 {
        4 => parse_v4::<_, 0, _>(p, s, TC_ACT_OK, |d| receive(ctx, d)),
        6 => parse_v6::<_, 0, _>(p, s, TC_ACT_OK, |d| receive(ctx, d)),
        _ => Ok(TC_ACT_OK),
    }
}

/// A bond data packet: taken? Then decapsulated and passed up.
#[inline(always)]
fn receive(ctx: &TcContext, d: &Datagram) -> Result<i32, DropReason> {
    // 2. Known subflow, the peer's tag, fresh, the sender's own source;
    // counted as the sender counts it: a frame with an Ethernet header.
    let wire_len = ctx.len() as u64 + ETH_HLEN as u64;
    let inner_proto = accept(&mut Maps, d, wire_len)?;

    // 3. Decapsulate: remove the outer headers in front of the inner packet
    // (nothing precedes them on this device) and take its protocol.
    let decap = if inner_proto == ETH_P_IP { BPF_F_ADJ_ROOM_DECAP_L3_IPV4 } else { BPF_F_ADJ_ROOM_DECAP_L3_IPV6 };
    let outer = (d.outer_len & 0xff) as i32;
    ctx.adjust_room(-outer, BPF_ADJ_ROOM_MAC, decap as u64).map_err(|_| DropReason::DecapFailed)?;
    mss::clamp(&TcPacket(ctx), 0, inner_proto);
    Ok(TC_ACT_OK)
}
