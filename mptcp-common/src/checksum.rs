//! Internet checksum helpers (RFC 1071 / RFC 1624), usable in the kernel programs.

/// Fold a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Checksum of an IPv4 header (its checksum field must be zero).
pub fn ipv4_header_checksum(hdr: &[u8; 20]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([hdr[i], hdr[i + 1]]) as u32;
        i += 2;
    }
    !fold(sum)
}

/// New checksum after one 16-bit field changed from `old` to `new` (RFC 1624
/// eqn. 3: HC' = ~(~HC + ~m + m')). All values in host order.
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32 & 0xffff) + new as u32;
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_update_equals_recomputation() {
        let mut h = [0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 1, 0, 1];
        let c0 = ipv4_header_checksum(&h);
        for len in [0u16, 1, 84, 1500, 65535] {
            h[2..4].copy_from_slice(&len.to_be_bytes());
            assert_eq!(replace16(c0, 0, len), ipv4_header_checksum(&h), "len {len}");
        }
    }
}
