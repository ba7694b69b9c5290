//! XDP on every uplink, top to bottom: is it for the bond port? data or
//! control? which subflow (4-tuple + token)? account, then strip the outer
//! headers and pass the inner packet to the stack.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::helpers::bpf_xdp_adjust_head;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use mptcp_common::headers::{EthHdr, Ipv4Hdr, Ipv6Hdr, Ports, IPV4_PLAIN, IPV4_SRC_OFFSET, IPV6_SRC_OFFSET};
use mptcp_common::maps::FlowKey;
use mptcp_common::wire::{
    MpHeader, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, MP_HDR_LEN,
    UDP_HLEN,
};
use mptcp_common::DropReason;

use crate::maps::{count_drop, settings};
use crate::mss;
use crate::parse::{ptr_at, read_at};
use crate::rx::{self, InnerSource, Kind};

#[xdp]
pub fn uplink_ingress(ctx: XdpContext) -> u32 {
    match try_uplink_ingress(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count_drop(reason);
            XDP_DROP
        }
    }
}

#[inline(always)]
fn try_uplink_ingress(ctx: &XdpContext) -> Result<u32, DropReason> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let Some(eth) = read_at::<EthHdr>(start, end, 0) else { return Ok(XDP_PASS) };
    match eth.proto() {
        ETH_P_IP => {
            // Only option-less IPv4 carrying UDP can be ours.
            let Some(ip) = read_at::<Ipv4Hdr>(start, end, ETH_HLEN) else { return Ok(XDP_PASS) };
            if ip.version_ihl != IPV4_PLAIN || ip.protocol != IPPROTO_UDP {
                return Ok(XDP_PASS);
            }
            let mut key = FlowKey { family: FAMILY_V4, ..FlowKey::default() };
            key.remote[..4].copy_from_slice(&ip.src);
            key.local[..4].copy_from_slice(&ip.dst);
            receive::<IPV4_HLEN>(ctx, key)
        }
        ETH_P_IPV6 => {
            let Some(ip) = read_at::<Ipv6Hdr>(start, end, ETH_HLEN) else { return Ok(XDP_PASS) };
            if ip.next_header != IPPROTO_UDP {
                return Ok(XDP_PASS);
            }
            let key = FlowKey { family: FAMILY_V6, remote: ip.src, local: ip.dst, ..FlowKey::default() };
            receive::<IPV6_HLEN>(ctx, key)
        }
        _ => Ok(XDP_PASS),
    }
}

/// The part after the outer IP header, whose length `L3` is a constant so the
/// verifier sees fixed offsets.
#[inline(always)]
fn receive<const L3: usize>(ctx: &XdpContext, mut key: FlowKey) -> Result<u32, DropReason> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let udp_off = ETH_HLEN + L3;
    let Some(ports) = read_at::<Ports>(start, end, udp_off) else { return Ok(XDP_PASS) };
    if !settings().bond_ports(ports.sport(), ports.dport()) {
        return Ok(XDP_PASS);
    }
    let mp_off = udp_off + UDP_HLEN;
    let hdr: MpHeader = read_at(start, end, mp_off).ok_or(DropReason::Truncated)?;
    if let Kind::Control = rx::kind(&hdr)? {
        return Ok(XDP_PASS); // for the controller's socket
    }
    key.remote_port = ports.sport();
    key.local_port = ports.dport();
    let inner = mp_off + MP_HDR_LEN;
    let first = read_at::<u8>(start, end, inner).ok_or(DropReason::DecapFailed)?;
    let src = match first >> 4 {
        4 => read_at(start, end, inner + IPV4_SRC_OFFSET).map(InnerSource::V4),
        6 => read_at(start, end, inner + IPV6_SRC_OFFSET).map(InnerSource::V6),
        _ => None,
    };
    let inner_proto = rx::accept(key, &hdr, src.ok_or(DropReason::DecapFailed)?, (end - start) as u64)?;

    // Decapsulate: keep the Ethernet addresses, drop the outer headers.
    let eth: EthHdr = read_at(start, end, 0).ok_or(DropReason::DecapFailed)?;
    let outer = (L3 + UDP_HLEN + MP_HDR_LEN) as i32;
    // SAFETY: helper call on our own context; pointers are re-derived after it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer) } != 0 {
        return Err(DropReason::DecapFailed);
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    let out = ptr_at::<EthHdr>(start, end, 0).ok_or(DropReason::DecapFailed)?;
    // SAFETY: ptr_at checked the header's bytes are inside the packet.
    unsafe { core::ptr::write_unaligned(out, EthHdr::new(eth.dst, eth.src, inner_proto)) };
    mss::clamp(ctx, ETH_HLEN, inner_proto);
    Ok(XDP_PASS)
}
