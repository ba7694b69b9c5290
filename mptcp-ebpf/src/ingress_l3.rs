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
use mptcp_common::headers::{Ipv4Hdr, Ipv6Hdr, Ports, IPV4_PLAIN, IPV4_SRC_OFFSET, IPV6_SRC_OFFSET};
use mptcp_common::maps::FlowKey;
use mptcp_common::wire::{
    MpHeader, ETH_HLEN, ETH_P_IP, FAMILY_V4, FAMILY_V6, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, MP_HDR_LEN, UDP_HLEN,
};
use mptcp_common::DropReason;

use crate::maps::{count_drop, settings};
use crate::mss;
use crate::rx::{self, InnerSource, Kind};

#[classifier]
pub fn uplink_ingress_l3(ctx: TcContext) -> i32 {
    match try_uplink_ingress_l3(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn try_uplink_ingress_l3(ctx: &TcContext) -> Result<i32, DropReason> {
    let Ok(first) = ctx.load::<u8>(0) else { return Ok(TC_ACT_OK) };
    match first >> 4 {
        4 => {
            // Only option-less IPv4 carrying UDP can be ours.
            let Ok(ip) = ctx.load::<Ipv4Hdr>(0) else { return Ok(TC_ACT_OK) };
            if ip.version_ihl != IPV4_PLAIN || ip.protocol != IPPROTO_UDP {
                return Ok(TC_ACT_OK);
            }
            let mut key = FlowKey { family: FAMILY_V4, ..FlowKey::default() };
            key.remote[..4].copy_from_slice(&ip.src);
            key.local[..4].copy_from_slice(&ip.dst);
            receive::<IPV4_HLEN>(ctx, key)
        }
        6 => {
            let Ok(ip) = ctx.load::<Ipv6Hdr>(0) else { return Ok(TC_ACT_OK) };
            if ip.next_header != IPPROTO_UDP {
                return Ok(TC_ACT_OK);
            }
            let key = FlowKey { family: FAMILY_V6, remote: ip.src, local: ip.dst, ..FlowKey::default() };
            receive::<IPV6_HLEN>(ctx, key)
        }
        _ => Ok(TC_ACT_OK),
    }
}

/// The part after the outer IP header of length `L3`.
#[inline(always)]
fn receive<const L3: usize>(ctx: &TcContext, mut key: FlowKey) -> Result<i32, DropReason> {
    let Ok(ports) = ctx.load::<Ports>(L3) else { return Ok(TC_ACT_OK) };
    if !settings().bond_ports(ports.sport(), ports.dport()) {
        return Ok(TC_ACT_OK);
    }
    let hdr: MpHeader = ctx.load(L3 + UDP_HLEN).map_err(|_| DropReason::Truncated)?;
    if let Kind::Control = rx::kind(&hdr)? {
        return Ok(TC_ACT_OK); // for the controller's socket
    }
    key.remote_port = ports.sport();
    key.local_port = ports.dport();
    let outer = L3 + UDP_HLEN + MP_HDR_LEN;
    let first: u8 = ctx.load(outer).map_err(|_| DropReason::DecapFailed)?;
    let src = match first >> 4 {
        4 => ctx.load(outer + IPV4_SRC_OFFSET).map(InnerSource::V4).ok(),
        6 => ctx.load(outer + IPV6_SRC_OFFSET).map(InnerSource::V6).ok(),
        _ => None,
    };
    // Counted as the sender counts it: a frame with an Ethernet header.
    let wire_len = ctx.len() as u64 + ETH_HLEN as u64;
    let inner_proto = rx::accept(key, &hdr, src.ok_or(DropReason::DecapFailed)?, wire_len)?;

    // Decapsulate: remove the outer headers in front of the inner packet
    // (nothing precedes them on this device) and take its protocol.
    let decap = if inner_proto == ETH_P_IP { BPF_F_ADJ_ROOM_DECAP_L3_IPV4 } else { BPF_F_ADJ_ROOM_DECAP_L3_IPV6 };
    ctx.adjust_room(-(outer as i32), BPF_ADJ_ROOM_MAC, decap as u64).map_err(|_| DropReason::DecapFailed)?;
    mss::clamp(ctx, 0, inner_proto);
    Ok(TC_ACT_OK)
}
