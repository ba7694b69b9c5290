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

use mptcp_common::checksum::replace16;
use mptcp_common::mtu::mss_rewrite;
use mptcp_common::packet::PacketBytes;

use crate::maps::settings;
use crate::parse::{ptr_at, TcPacket, XdpPacket};

/// The one write the clamp makes, as each hook makes it.
pub trait Packet: PacketBytes {
    /// Write the MSS `new` (host order) over `old` (as in the packet) at
    /// `off`, keeping the TCP checksum at `check_off` valid.
    fn rewrite_mss(&self, off: usize, old: u16, new: u16, check_off: usize) -> Option<()>;
}

impl Packet for TcPacket<'_> {
    #[inline(always)]
    fn rewrite_mss(&self, off: usize, old: u16, new: u16, check_off: usize) -> Option<()> {
        let new = new.to_be();
        self.0.store(off, &new, 0).ok()?;
        // The helper also handles a checksum the device is still to compute
        // (CHECKSUM_PARTIAL: it then leaves the field alone).
        self.0.l4_csum_replace(check_off, old as u64, new as u64, 2).ok()
    }
}

impl Packet for XdpPacket<'_> {
    #[inline(always)]
    fn rewrite_mss(&self, off: usize, old: u16, new: u16, check_off: usize) -> Option<()> {
        let (start, end) = (self.0.data(), self.0.data_end());
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
/// starts at `l3` ([`mss_rewrite`] says where and to what).
///
/// A function of its own in the object (a BPF-to-BPF call): it returns
/// nothing and cannot touch its caller's stack, so the verifier checks the
/// caller's remaining path once, not once per way the option walk ended.
#[inline(never)]
pub fn clamp<P: Packet>(p: &P, l3: usize, proto: u16) {
    if let Some(r) = mss_rewrite(p, l3, proto, settings().bond_mtu) {
        let _ = p.rewrite_mss(r.off, r.old, r.new, r.check_off);
    }
}
