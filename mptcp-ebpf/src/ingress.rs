//! XDP on every uplink, top to bottom: is it for the bond port? data or
//! control? which subflow (4-tuple + token)? account, then strip the outer
//! headers and pass the inner packet to the stack.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::helpers::bpf_xdp_adjust_head;
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use mptcp_common::headers::EthHdr;
use mptcp_common::uplink::{accept, parse_v4, parse_v6, Datagram};
use mptcp_common::wire::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6};
use mptcp_common::DropReason;

use crate::maps::SETTINGS;
use crate::mss;
use crate::parse::{ptr_at, read_at, XdpPacket};
use crate::rx::Maps;

#[xdp]
pub fn uplink_ingress(ctx: XdpContext) -> u32 {
    match try_uplink_ingress(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            crate::debug::dropped(&ctx, reason, mptcp_common::maps::HOOK_UPLINK_XDP);
            XDP_DROP
        }
    }
}

#[inline(always)]
fn try_uplink_ingress(ctx: &XdpContext) -> Result<u32, DropReason> {
    let Some(eth) = read_at::<EthHdr>(ctx.data(), ctx.data_end(), 0) else { return Ok(XDP_PASS) };
    // 1. Ours? Data? Which 4-tuple, header and inner source; a data
    // packet goes on to `receive`, anything else up the stack untouched.
    let Some(s) = SETTINGS.get(0) else { return Ok(XDP_PASS) };
    let p = &XdpPacket(ctx);
    match eth.proto() {
        ETH_P_IP => parse_v4::<_, ETH_HLEN, _>(p, s, XDP_PASS, |d| receive(ctx, &eth, d)),
        ETH_P_IPV6 => parse_v6::<_, ETH_HLEN, _>(p, s, XDP_PASS, |d| receive(ctx, &eth, d)),
        _ => Ok(XDP_PASS),
    }
}

/// A bond data packet: taken? Then decapsulated and passed up.
#[inline(always)]
fn receive(ctx: &XdpContext, eth: &EthHdr, d: &Datagram) -> Result<u32, DropReason> {
    // 2. Known subflow, the peer's tag, fresh, the sender's own source.
    let inner_proto = accept(&mut Maps, d, (ctx.data_end() - ctx.data()) as u64)?;

    // 3. Decapsulate: keep the Ethernet addresses, drop the outer headers.
    let outer = (d.outer_len & 0xff) as i32;
    // SAFETY: helper call on our own context; pointers are re-derived after it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer) } != 0 {
        return Err(DropReason::DecapFailed);
    }
    let out = ptr_at::<EthHdr>(ctx.data(), ctx.data_end(), 0).ok_or(DropReason::DecapFailed)?;
    // SAFETY: ptr_at checked the header's bytes are inside the packet.
    unsafe { core::ptr::write_unaligned(out, EthHdr::new(eth.dst, eth.src, inner_proto)) };
    mss::clamp(&XdpPacket(ctx), ETH_HLEN, inner_proto);
    Ok(XDP_PASS)
}
