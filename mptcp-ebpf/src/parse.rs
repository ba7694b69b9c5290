//! Bounds-checked access to packet bytes, in the shape the verifier
//! accepts, and each hook's packet as [`PacketBytes`] for the parsers of
//! `mptcp-common`.

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use bytemuck::Pod;
use mptcp_common::packet::PacketBytes;

/// A pointer to a `T` at `start + off`, if it lies entirely before `end`.
#[inline(always)]
pub fn ptr_at<T>(start: usize, end: usize, off: usize) -> Option<*mut T> {
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// Read a `T` at `start + off` (unaligned), if in bounds.
#[inline(always)]
pub fn read_at<T: Copy>(start: usize, end: usize, off: usize) -> Option<T> {
    let p = ptr_at::<T>(start, end, off)?;
    // SAFETY: ptr_at checked that size_of::<T>() bytes at p are inside the packet.
    Some(unsafe { core::ptr::read_unaligned(p) })
}

/// An XDP program's packet: `data`..`data_end`.
pub struct XdpPacket<'a>(pub &'a XdpContext);

impl PacketBytes for XdpPacket<'_> {
    #[inline(always)]
    fn read<T: Pod>(&self, off: usize) -> Option<T> {
        read_at(self.0.data(), self.0.data_end(), off)
    }
}

/// A tc program's packet, read with `bpf_skb_load_bytes` (beyond the
/// linear part too).
pub struct TcPacket<'a>(pub &'a TcContext);

impl PacketBytes for TcPacket<'_> {
    #[inline(always)]
    fn read<T: Pod>(&self, off: usize) -> Option<T> {
        self.0.load(off).ok()
    }
}
