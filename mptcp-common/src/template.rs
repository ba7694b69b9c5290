//! Building and reading a subflow's [`OuterTemplate`]: the outer IP + UDP
//! header the data path copies in front of every packet of that subflow,
//! laid out by the types of [`crate::headers`].

use bytemuck::pod_read_unaligned;

use crate::headers::{Ipv4Hdr, Ipv6Hdr, OuterV4, OuterV6, UdpHdr, IPV4_DF};
use crate::maps::OuterTemplate;
use crate::wire::{MpHeader, FAMILY_V4, FAMILY_V6, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, MP_HDR_LEN, UDP_HLEN};

/// Everything the data path puts in front of an inner packet, per outer family.
pub const V4_OUTER: usize = core::mem::size_of::<OuterV4>();
pub const V6_OUTER: usize = core::mem::size_of::<OuterV6>();

/// Hop limit of outer packets.
pub const OUTER_TTL: u8 = 64;

/// IPv4 + UDP with zero lengths; the checksum covers tot_len = 0. DF is set:
/// nothing on the redirect path fragments.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ifindex: u32) -> OuterTemplate {
    let mut t = OuterTemplate { len: (IPV4_HLEN + UDP_HLEN) as u8, family: FAMILY_V4, ifindex, ..Default::default() };
    let ip = Ipv4Hdr::new(src, dst, IPPROTO_UDP, OUTER_TTL, 0, IPV4_DF);
    t.bytes[..IPV4_HLEN].copy_from_slice(bytemuck::bytes_of(&ip));
    t.bytes[IPV4_HLEN..IPV4_HLEN + UDP_HLEN].copy_from_slice(bytemuck::bytes_of(&UdpHdr::new(sport, dport, 0)));
    t
}

/// IPv6 + UDP with zero lengths. The UDP checksum stays 0: only our own XDP
/// program consumes these packets, before the stack would insist on one.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, ifindex: u32) -> OuterTemplate {
    let mut t = OuterTemplate { len: (IPV6_HLEN + UDP_HLEN) as u8, family: FAMILY_V6, ifindex, ..Default::default() };
    let ip = Ipv6Hdr::new(src, dst, IPPROTO_UDP, OUTER_TTL, 0);
    t.bytes[..IPV6_HLEN].copy_from_slice(bytemuck::bytes_of(&ip));
    t.bytes[IPV6_HLEN..IPV6_HLEN + UDP_HLEN].copy_from_slice(bytemuck::bytes_of(&UdpHdr::new(sport, dport, 0)));
    t
}

/// The outer IPv4 + UDP + multipath header of one packet with `inner_len`
/// bytes behind it: the template with its lengths filled in (the checksum
/// updated incrementally), then `hdr`. The egress program writes exactly
/// this; the tests build their peers' packets with it.
#[inline(always)]
pub fn outer_v4(t: &OuterTemplate, inner_len: u16, hdr: &MpHeader) -> OuterV4 {
    let mut ip: Ipv4Hdr = pod_read_unaligned(&t.bytes[..IPV4_HLEN]);
    let mut udp: UdpHdr = pod_read_unaligned(&t.bytes[IPV4_HLEN..IPV4_HLEN + UDP_HLEN]);
    // Wrapping, as the kernel's own 16-bit length fields: a GSO super-packet
    // may exceed them, and segmentation writes each segment's lengths anyway.
    let udp_len = inner_len.wrapping_add((UDP_HLEN + MP_HDR_LEN) as u16);
    ip.set_tot_len(udp_len.wrapping_add(IPV4_HLEN as u16));
    udp.set_len(udp_len);
    OuterV4 { ip, udp, mp: *hdr }
}

/// As [`outer_v4`], for an IPv6 template (payload and UDP length).
#[inline(always)]
pub fn outer_v6(t: &OuterTemplate, inner_len: u16, hdr: &MpHeader) -> OuterV6 {
    let mut ip: Ipv6Hdr = pod_read_unaligned(&t.bytes[..IPV6_HLEN]);
    let mut udp: UdpHdr = pod_read_unaligned(&t.bytes[IPV6_HLEN..IPV6_HLEN + UDP_HLEN]);
    let udp_len = inner_len.wrapping_add((UDP_HLEN + MP_HDR_LEN) as u16);
    ip.set_payload_len(udp_len);
    udp.set_len(udp_len);
    OuterV6 { ip, udp, mp: *hdr }
}

/// The endpoints written into a template: (family, src, dst, sport, dport),
/// IPv4 addresses in the first 4 bytes.
pub fn endpoints(t: &OuterTemplate) -> (u8, [u8; 16], [u8; 16], u16, u16) {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let udp: UdpHdr = if t.family == FAMILY_V6 {
        let ip: Ipv6Hdr = pod_read_unaligned(&t.bytes[..IPV6_HLEN]);
        (src, dst) = (ip.src, ip.dst);
        pod_read_unaligned(&t.bytes[IPV6_HLEN..IPV6_HLEN + UDP_HLEN])
    } else {
        let ip: Ipv4Hdr = pod_read_unaligned(&t.bytes[..IPV4_HLEN]);
        src[..4].copy_from_slice(&ip.src);
        dst[..4].copy_from_slice(&ip.dst);
        pod_read_unaligned(&t.bytes[IPV4_HLEN..IPV4_HLEN + UDP_HLEN])
    };
    let family = if t.family == FAMILY_V6 { FAMILY_V6 } else { FAMILY_V4 };
    (family, src, dst, udp.sport(), udp.dport())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::ipv4_header_checksum;

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
        let o = outer_v4(&t, 100, &hdr);
        assert_eq!(ipv4_header_checksum(&o.ip.bytes()), 0);
        assert_eq!(o.ip.tot_len() as usize, 100 + V4_OUTER);
        assert_eq!(o.udp.len() as usize, 100 + 8 + MP_HDR_LEN);
        assert_eq!(o.mp, hdr);
        // On the wire, byte for byte: lengths at their RFC 791 / 768 offsets.
        let b = bytemuck::bytes_of(&o);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, 100 + V4_OUTER);
        assert_eq!(u16::from_be_bytes([b[24], b[25]]) as usize, 100 + 8 + MP_HDR_LEN);
        assert_eq!(&b[28..], bytemuck::bytes_of(&hdr));
        let t6 = ipv6([0xfd; 16], [0xfe; 16], 1, 2, 3);
        let o = outer_v6(&t6, 100, &hdr);
        let b = bytemuck::bytes_of(&o);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]) as usize, 100 + 8 + MP_HDR_LEN);
        assert_eq!(u16::from_be_bytes([b[44], b[45]]) as usize, 100 + 8 + MP_HDR_LEN);
        assert_eq!((o.ip.src, o.ip.dst, o.udp.sport(), o.udp.dport()), ([0xfd; 16], [0xfe; 16], 1, 2));
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
