//! Bounds-checked reads from a packet, as each hook has it (XDP's
//! `data`..`data_end`, tc's `bpf_skb_load_bytes`) and as the host tests
//! have it (a byte slice). The parsers in [`crate::uplink`] and
//! [`crate::mtu`] are written once over this trait, so the kernel programs
//! and the fuzzer's host reference run the same code.

use bytemuck::Pod;

/// Read access to a packet's bytes.
pub trait PacketBytes {
    /// The `T` at byte `off` (unaligned), if all of it lies in the packet.
    fn read<T: Pod>(&self, off: usize) -> Option<T>;
}

impl PacketBytes for [u8] {
    #[inline(always)]
    fn read<T: Pod>(&self, off: usize) -> Option<T> {
        let bytes = self.get(off..off.checked_add(core::mem::size_of::<T>())?)?;
        Some(bytemuck::pod_read_unaligned(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_lies_in_the_packet() {
        let p: &[u8] = &[1, 2, 3, 4];
        assert_eq!(p.read::<[u8; 2]>(2), Some([3, 4]));
        assert_eq!(p.read::<u16>(3), None);
        assert_eq!(p.read::<u8>(usize::MAX), None);
        assert_eq!(p.read::<[u8; 0]>(4), Some([]));
    }
}
