//! Building and reading a subflow's [`OuterTemplate`]: the outer IP + UDP
//! header the data path copies in front of every packet of that subflow.

use crate::checksum::{ipv4_header_checksum, replace16};
use crate::maps::OuterTemplate;
use crate::wire::{MpHeader, FAMILY_V4, FAMILY_V6, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, MP_HDR_LEN, UDP_HLEN};

/// Everything the data path puts in front of an inner packet, per outer family.
pub const V4_OUTER: usize = IPV4_HLEN + UDP_HLEN + MP_HDR_LEN;
pub const V6_OUTER: usize = IPV6_HLEN + UDP_HLEN + MP_HDR_LEN;

/// Hop limit of outer packets.
pub const OUTER_TTL: u8 = 64;

/// IPv4 + UDP with zero lengths; the checksum covers tot_len = 0, DF set.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ifindex: u32) -> OuterTemplate {
    let mut t = OuterTemplate { len: (IPV4_HLEN + UDP_HLEN) as u8, family: FAMILY_V4, ifindex, ..Default::default() };
    let mut ip = [0u8; IPV4_HLEN];
    ip[0] = 0x45;
    ip[6] = 0x40; // DF: nothing on the redirect path fragments
    ip[8] = OUTER_TTL;
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = ipv4_header_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    t.bytes[..IPV4_HLEN].copy_from_slice(&ip);
    udp(&mut t.bytes[IPV4_HLEN..IPV4_HLEN + UDP_HLEN], sport, dport);
    t
}

/// IPv6 + UDP with zero lengths. The UDP checksum stays 0: only our own XDP
/// program consumes these packets, before the stack would insist on one.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, ifindex: u32) -> OuterTemplate {
    let mut t = OuterTemplate { len: (IPV6_HLEN + UDP_HLEN) as u8, family: FAMILY_V6, ifindex, ..Default::default() };
    let ip = &mut t.bytes[..IPV6_HLEN];
    ip[0] = 0x60;
    ip[6] = IPPROTO_UDP;
    ip[7] = OUTER_TTL;
    ip[8..24].copy_from_slice(&src);
    ip[24..40].copy_from_slice(&dst);
    udp(&mut t.bytes[IPV6_HLEN..IPV6_HLEN + UDP_HLEN], sport, dport);
    t
}

/// The outer IPv4 + UDP + multipath header of one packet with `inner_len`
/// bytes behind it: the template with its lengths filled in (the checksum
/// updated incrementally), then `hdr`. The egress program writes exactly
/// this; the tests build their peers' packets with it.
#[inline(always)]
pub fn outer_v4(t: &OuterTemplate, inner_len: u16, hdr: &MpHeader) -> [u8; V4_OUTER] {
    let mut b = [0u8; V4_OUTER];
    b[..IPV4_HLEN + UDP_HLEN].copy_from_slice(&t.bytes[..IPV4_HLEN + UDP_HLEN]);
    // Wrapping, as the kernel's own 16-bit length fields: a GSO super-packet
    // may exceed them, and segmentation writes each segment's lengths anyway.
    let udp_len = inner_len.wrapping_add((UDP_HLEN + MP_HDR_LEN) as u16);
    let tot_len = udp_len.wrapping_add(IPV4_HLEN as u16);
    let csum = replace16(u16::from_be_bytes([b[10], b[11]]), 0, tot_len);
    b[2..4].copy_from_slice(&tot_len.to_be_bytes());
    b[10..12].copy_from_slice(&csum.to_be_bytes());
    b[IPV4_HLEN + 4..IPV4_HLEN + 6].copy_from_slice(&udp_len.to_be_bytes());
    b[IPV4_HLEN + UDP_HLEN..].copy_from_slice(bytemuck::bytes_of(hdr));
    b
}

/// As [`outer_v4`], for an IPv6 template (payload and UDP length).
#[inline(always)]
pub fn outer_v6(t: &OuterTemplate, inner_len: u16, hdr: &MpHeader) -> [u8; V6_OUTER] {
    let mut b = [0u8; V6_OUTER];
    b[..IPV6_HLEN + UDP_HLEN].copy_from_slice(&t.bytes[..IPV6_HLEN + UDP_HLEN]);
    let udp_len = inner_len.wrapping_add((UDP_HLEN + MP_HDR_LEN) as u16);
    b[4..6].copy_from_slice(&udp_len.to_be_bytes()); // payload length
    b[IPV6_HLEN + 4..IPV6_HLEN + 6].copy_from_slice(&udp_len.to_be_bytes());
    b[IPV6_HLEN + UDP_HLEN..].copy_from_slice(bytemuck::bytes_of(hdr));
    b
}

fn udp(b: &mut [u8], sport: u16, dport: u16) {
    b[0..2].copy_from_slice(&sport.to_be_bytes());
    b[2..4].copy_from_slice(&dport.to_be_bytes());
}

/// The endpoints written into a template: (family, src, dst, sport, dport),
/// IPv4 addresses in the first 4 bytes.
pub fn endpoints(t: &OuterTemplate) -> (u8, [u8; 16], [u8; 16], u16, u16) {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let (ports_at, family) = if t.family == FAMILY_V6 {
        src.copy_from_slice(&t.bytes[8..24]);
        dst.copy_from_slice(&t.bytes[24..40]);
        (IPV6_HLEN, FAMILY_V6)
    } else {
        src[..4].copy_from_slice(&t.bytes[12..16]);
        dst[..4].copy_from_slice(&t.bytes[16..20]);
        (IPV4_HLEN, FAMILY_V4)
    };
    let sport = u16::from_be_bytes([t.bytes[ports_at], t.bytes[ports_at + 1]]);
    let dport = u16::from_be_bytes([t.bytes[ports_at + 2], t.bytes[ports_at + 3]]);
    (family, src, dst, sport, dport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_template_is_valid_with_zero_length() {
        let t = ipv4([10, 1, 0, 2], [10, 1, 0, 1], 7495, 7495, 3);
        let mut ip = [0u8; 20];
        ip.copy_from_slice(&t.bytes[..20]);
        assert_eq!(ipv4_header_checksum(&ip), 0, "checksum over a header including its checksum folds to 0");
        let (f, s, d, sp, dp) = endpoints(&t);
        assert_eq!((f, &s[..4], &d[..4], sp, dp), (FAMILY_V4, &[10, 1, 0, 2][..], &[10, 1, 0, 1][..], 7495, 7495));
        assert_eq!(t.len, 28);
    }

    #[test]
    fn outer_headers_carry_the_lengths_and_a_valid_checksum() {
        let t = ipv4([10, 1, 0, 2], [10, 1, 0, 1], 7495, 7495, 3);
        let hdr = MpHeader::data(7, 1, 2, 3, 4);
        let b = outer_v4(&t, 100, &hdr);
        let mut ip = [0u8; 20];
        ip.copy_from_slice(&b[..20]);
        assert_eq!(ipv4_header_checksum(&ip), 0);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, 100 + V4_OUTER);
        assert_eq!(u16::from_be_bytes([b[24], b[25]]) as usize, 100 + 8 + MP_HDR_LEN);
        assert_eq!(&b[28..], bytemuck::bytes_of(&hdr));
        let t6 = ipv6([0xfd; 16], [0xfe; 16], 1, 2, 3);
        let b = outer_v6(&t6, 100, &hdr);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]) as usize, 100 + 8 + MP_HDR_LEN);
        assert_eq!(u16::from_be_bytes([b[44], b[45]]) as usize, 100 + 8 + MP_HDR_LEN);
    }

    #[test]
    fn ipv6_template_round_trips() {
        let a = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let b = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let t = ipv6(a, b, 1, 2, 9);
        assert_eq!(endpoints(&t), (FAMILY_V6, a, b, 1, 2));
        assert_eq!(t.len, 48);
        assert_eq!(t.ifindex, 9);
    }
}
