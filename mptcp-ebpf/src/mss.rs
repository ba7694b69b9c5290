//! MSS clamping: a TCP SYN crossing the bond, either way, leaves announcing
//! at most what a full segment through the bond allows
//! ([`mptcp_common::mtu::mss_limit`] of the bond MTU the controller keeps in
//! `Settings`). The TCP ends then never send a segment some path cannot carry,
//! even when they never see an ICMP "too big": forwarded traffic, filtered
//! ICMP, a path MTU that the controller found smaller than the uplink's.
//!
//! One walk for all three hooks, over [`Packet`]: the egress program on the
//! inner packet before encapsulation, both ingress programs after
//! decapsulation. A packet that is not a SYN costs a protocol check.

use aya_ebpf::programs::{TcContext, XdpContext};
use mptcp_common::checksum::replace16;
use mptcp_common::headers::{
    IPV4_FRAGMENT_MASK, IPV4_FRAG_OFF_OFFSET, IPV4_PROTOCOL_OFFSET, IPV6_NEXT_HEADER_OFFSET, TCP_CHECK_OFFSET,
    TCP_DATA_OFF_OFFSET, TCP_HLEN, TCP_SYN,
};
use mptcp_common::mtu::{clamp_mss, mss_limit, mss_value_at};
use mptcp_common::wire::{ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6, IPPROTO_TCP, IPV6_HLEN};

use crate::maps::settings;
use crate::parse::{ptr_at, read_at};

/// Byte access to a packet, as each hook has it.
pub trait Packet {
    fn read<T: Copy>(&self, off: usize) -> Option<T>;
    /// Write the MSS `new` (host order) over `old` (as in the packet) at
    /// `off`, keeping the TCP checksum at `check_off` valid.
    fn rewrite_mss(&self, off: usize, old: u16, new: u16, check_off: usize) -> Option<()>;
}

impl Packet for TcContext {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        self.load(off).ok()
    }
    #[inline(always)]
    fn rewrite_mss(&self, off: usize, old: u16, new: u16, check_off: usize) -> Option<()> {
        let new = new.to_be();
        self.store(off, &new, 0).ok()?;
        // The helper also handles a checksum the device is still to compute
        // (CHECKSUM_PARTIAL: it then leaves the field alone).
        self.l4_csum_replace(check_off, old as u64, new as u64, 2).ok()
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        read_at(self.data(), self.data_end(), off)
    }
    #[inline(always)]
    fn rewrite_mss(&self, off: usize, old: u16, new: u16, check_off: usize) -> Option<()> {
        let (start, end) = (self.data(), self.data_end());
        let mss = ptr_at::<u16>(start, end, off)?;
        let check = ptr_at::<u16>(start, end, check_off)?;
        // SAFETY: ptr_at checked that both fields lie inside the packet.
        unsafe {
            let sum = u16::from_be(core::ptr::read_unaligned(check));
            core::ptr::write_unaligned(check, replace16(sum, u16::from_be(old), new).to_be());
            core::ptr::write_unaligned(mss, new.to_be());
        }
        Some(())
    }
}

/// Clamp the MSS option of a TCP SYN whose IP header (EtherType `proto`)
/// starts at `l3`. Anything else, or a SYN announcing no more than the limit,
/// is left as it is.
///
/// A function of its own in the object (a BPF-to-BPF call): it returns
/// nothing and cannot touch its caller's stack, so the verifier checks the
/// caller's remaining path once, not once per way the option walk ended.
#[inline(never)]
pub fn clamp<P: Packet>(p: &P, l3: usize, proto: u16) {
    let _ = try_clamp(p, l3, proto);
}

/// [`clamp`]; `None` only says that nothing was rewritten.
#[inline(always)]
fn try_clamp<P: Packet>(p: &P, l3: usize, proto: u16) -> Option<()> {
    let bond_mtu = settings().bond_mtu;
    if bond_mtu == 0 {
        return None;
    }
    // Only the bytes needed are read: this function's stack adds to the
    // caller's, and the egress program's is nearly all of the 512 bytes.
    let (l4, family) = if proto == ETH_P_IP {
        if p.read::<u8>(l3 + IPV4_PROTOCOL_OFFSET)? != IPPROTO_TCP
            || u16::from_be(p.read(l3 + IPV4_FRAG_OFF_OFFSET)?) & IPV4_FRAGMENT_MASK != 0
        {
            return None;
        }
        // Masked: the verifier must see a bounded offset (at most 60).
        let ihl = p.read::<u8>(l3)? & 0x0f;
        if ihl < 5 {
            return None; // not a valid header: nothing to trust in it
        }
        (l3 + ((ihl as usize * 4) & 0x3c), FAMILY_V4)
    } else if proto == ETH_P_IPV6 {
        // Extension headers are not walked: such a SYN keeps its MSS.
        if p.read::<u8>(l3 + IPV6_NEXT_HEADER_OFFSET)? != IPPROTO_TCP {
            return None;
        }
        (l3 + IPV6_HLEN, FAMILY_V6)
    } else {
        return None;
    };
    let [data_off, flags] = p.read::<[u8; 2]>(l4 + TCP_DATA_OFF_OFFSET)?;
    if flags & TCP_SYN == 0 {
        return None;
    }
    let options_len = (((data_off >> 4) as usize) * 4).saturating_sub(TCP_HLEN);
    let opts = l4 + TCP_HLEN;
    let at = mss_value_at(options_len, |i| p.read::<u8>(opts + (i & 0x3f)))?;
    let off = opts + (at & 0x3f);
    let old: u16 = p.read(off)?;
    let new = clamp_mss(u16::from_be(old), mss_limit(bond_mtu, family))?;
    p.rewrite_mss(off, old, new, l4 + TCP_CHECK_OFFSET)
}
