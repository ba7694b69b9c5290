//! XDP on every uplink, top to bottom: is it for the bond port? data or
//! control? which subflow (4-tuple + token)? account, then strip the outer
//! headers and pass the inner packet to the stack.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_head};
use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use mptcp_common::dedup::{dedup_check, dedup_slot, Dedup};
use mptcp_common::headers::{EthHdr, Ipv4Hdr, Ipv6Hdr, Ports, IPV4_PLAIN};
use mptcp_common::maps::{FlowKey, SubflowKey};
use mptcp_common::seq::{rx_seq_update, SeqEvent};
use mptcp_common::wire::{
    MpHeader, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6, FLAG_REPLICATED, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN,
    KIND_CONTROL, KIND_DATA, MP_HDR_LEN, UDP_HLEN, VERSION,
};
use mptcp_common::DropReason;

use crate::maps::{count_drop, settings, DEDUP, RX_SEQ, SUBFLOW_BY_TUPLE, SUBFLOW_STATS};
use crate::parse::{ptr_at, read_at};

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
    let port = settings().port;
    if port == 0 || ports.dport() != port {
        return Ok(XDP_PASS);
    }
    let mp_off = udp_off + UDP_HLEN;
    let hdr: MpHeader = read_at(start, end, mp_off).ok_or(DropReason::Truncated)?;
    if hdr.version != VERSION {
        return Err(DropReason::BadHeader);
    }
    match hdr.kind {
        KIND_CONTROL => return Ok(XDP_PASS), // for the controller's socket
        KIND_DATA => {}
        _ => return Err(DropReason::BadHeader),
    }

    // Which subflow: the 4-tuple must be known and the header must name it.
    key.remote_port = ports.sport();
    key.local_port = ports.dport();
    let sk: SubflowKey = *unsafe { SUBFLOW_BY_TUPLE.get(key) }.ok_or(DropReason::UnknownSubflow)?;
    if sk.token != hdr.token() || sk.subflow_id != hdr.subflow_id as u32 {
        return Err(DropReason::BadToken);
    }

    // The inner packet must be IP.
    let inner = mp_off + MP_HDR_LEN;
    let version = read_at::<u8>(start, end, inner).ok_or(DropReason::DecapFailed)? >> 4;
    let inner_proto = match version {
        4 => ETH_P_IP,
        6 => ETH_P_IPV6,
        _ => return Err(DropReason::DecapFailed),
    };

    // Account.
    let now_us = (unsafe { bpf_ktime_get_ns() } / 1000) as u32;
    let event = match RX_SEQ.get_ptr_mut(sk) {
        // SAFETY: map value valid for the run; concurrent CPUs may race on it,
        // which costs at most a miscounted gap.
        Some(s) => rx_seq_update(unsafe { &mut *s }, hdr.subflow_seq()),
        None => SeqEvent::InOrder,
    };
    if let Some(s) = SUBFLOW_STATS.get_ptr_mut(sk) {
        // SAFETY: per-CPU map value, valid for the run, this CPU only.
        unsafe {
            (*s).rx_packets += 1;
            (*s).rx_bytes += (end - start) as u64;
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
    Ok(XDP_PASS)
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
