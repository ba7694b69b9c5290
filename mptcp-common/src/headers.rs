//! The standard headers a bond packet is made of — Ethernet, IPv4, IPv6, UDP —
//! as typed structs laid out exactly as on the wire, and the whole outer
//! encapsulation (IP + UDP + [`MpHeader`]) as one struct per family.
//!
//! One definition for every reader and writer: the egress program writes
//! [`OuterV4`] / [`OuterV6`] (through [`crate::template`]), the ingress
//! program reads [`Ipv4Hdr`] / [`Ipv6Hdr`] / [`UdpHdr`] / [`MpHeader`], the
//! classifier reads the inner IP header, and the tests build and take apart
//! packets with the same types. Multi-byte fields are kept in network byte
//! order and read through accessors; offsets elsewhere come from
//! `core::mem::offset_of!` on these types, never from a literal.

use bytemuck::{Pod, Zeroable};

use crate::wire::MpHeader;

/// Ethernet II header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    proto_be: u16,
}

impl EthHdr {
    pub const fn new(dst: [u8; 6], src: [u8; 6], proto: u16) -> Self {
        Self { dst, src, proto_be: proto.to_be() }
    }
    /// The EtherType (host order).
    pub const fn proto(&self) -> u16 {
        u16::from_be(self.proto_be)
    }
    pub fn set_proto(&mut self, proto: u16) {
        self.proto_be = proto.to_be();
    }
}

/// Where the EtherType sits in an Ethernet header.
pub const ETH_PROTO_OFFSET: usize = core::mem::offset_of!(EthHdr, proto_be);

/// `Ipv4Hdr::version_ihl` of an IPv4 header without options.
pub const IPV4_PLAIN: u8 = 0x45;
/// `Ipv4Hdr` flag: don't fragment (in [`Ipv4Hdr::frag_off`]).
pub const IPV4_DF: u16 = 0x4000;
/// More-fragments flag and fragment offset: non-zero for every fragment.
pub const IPV4_FRAGMENT_MASK: u16 = 0x3fff;

/// IPv4 header without options (the options, if any, follow it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    tot_len_be: u16,
    id_be: u16,
    frag_off_be: u16,
    pub ttl: u8,
    pub protocol: u8,
    check_be: u16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4Hdr {
    /// An option-less header with its checksum filled in.
    pub fn new(src: [u8; 4], dst: [u8; 4], protocol: u8, ttl: u8, tot_len: u16, frag_off: u16) -> Self {
        let mut h = Self {
            version_ihl: IPV4_PLAIN,
            tos: 0,
            tot_len_be: tot_len.to_be(),
            id_be: 0,
            frag_off_be: frag_off.to_be(),
            ttl,
            protocol,
            check_be: 0,
            src,
            dst,
        };
        h.check_be = crate::checksum::ipv4_header_checksum(&h.bytes()).to_be();
        h
    }
    pub fn bytes(&self) -> [u8; 20] {
        bytemuck::cast(*self)
    }
    pub const fn version(&self) -> u8 {
        self.version_ihl >> 4
    }
    /// Header length in bytes, options included.
    pub const fn header_len(&self) -> usize {
        ((self.version_ihl & 0x0f) as usize) * 4
    }
    pub const fn dscp(&self) -> u8 {
        self.tos >> 2
    }
    pub const fn tot_len(&self) -> u16 {
        u16::from_be(self.tot_len_be)
    }
    pub const fn frag_off(&self) -> u16 {
        u16::from_be(self.frag_off_be)
    }
    pub const fn is_fragment(&self) -> bool {
        self.frag_off() & IPV4_FRAGMENT_MASK != 0
    }
    pub const fn check(&self) -> u16 {
        u16::from_be(self.check_be)
    }
    /// Set the total length, updating the checksum incrementally (RFC 1624).
    #[inline(always)]
    pub fn set_tot_len(&mut self, tot_len: u16) {
        let check = crate::checksum::replace16(self.check(), self.tot_len(), tot_len);
        self.tot_len_be = tot_len.to_be();
        self.check_be = check.to_be();
    }
}

/// Where the fragment flags and offset sit in an IPv4 header.
pub const IPV4_FRAG_OFF_OFFSET: usize = core::mem::offset_of!(Ipv4Hdr, frag_off_be);
/// Where the protocol sits in an IPv4 header.
pub const IPV4_PROTOCOL_OFFSET: usize = core::mem::offset_of!(Ipv4Hdr, protocol);

/// Where the destination address sits in an IPv4 header.
pub const IPV4_DST_OFFSET: usize = core::mem::offset_of!(Ipv4Hdr, dst);
/// Where the source address sits in an IPv4 header.
pub const IPV4_SRC_OFFSET: usize = core::mem::offset_of!(Ipv4Hdr, src);

/// IPv6 fixed header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ipv6Hdr {
    /// Version (4 bits), traffic class (8), flow label (20).
    pub vtc_flow: [u8; 4],
    payload_len_be: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

impl Ipv6Hdr {
    pub const fn new(src: [u8; 16], dst: [u8; 16], next_header: u8, hop_limit: u8, payload_len: u16) -> Self {
        Self { vtc_flow: [0x60, 0, 0, 0], payload_len_be: payload_len.to_be(), next_header, hop_limit, src, dst }
    }
    pub const fn version(&self) -> u8 {
        self.vtc_flow[0] >> 4
    }
    pub const fn traffic_class(&self) -> u8 {
        ((self.vtc_flow[0] & 0x0f) << 4) | (self.vtc_flow[1] >> 4)
    }
    pub const fn payload_len(&self) -> u16 {
        u16::from_be(self.payload_len_be)
    }
    pub fn set_payload_len(&mut self, len: u16) {
        self.payload_len_be = len.to_be();
    }
}

/// Where the next-header field sits in an IPv6 header.
pub const IPV6_NEXT_HEADER_OFFSET: usize = core::mem::offset_of!(Ipv6Hdr, next_header);

/// Where the destination address sits in an IPv6 header.
pub const IPV6_DST_OFFSET: usize = core::mem::offset_of!(Ipv6Hdr, dst);
/// Where the source address sits in an IPv6 header.
pub const IPV6_SRC_OFFSET: usize = core::mem::offset_of!(Ipv6Hdr, src);

/// UDP header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct UdpHdr {
    sport_be: u16,
    dport_be: u16,
    len_be: u16,
    check_be: u16,
}

impl UdpHdr {
    /// Checksum 0 ("none"): see [`crate::template`] for why that is enough.
    pub const fn new(sport: u16, dport: u16, len: u16) -> Self {
        Self { sport_be: sport.to_be(), dport_be: dport.to_be(), len_be: len.to_be(), check_be: 0 }
    }
    pub const fn sport(&self) -> u16 {
        u16::from_be(self.sport_be)
    }
    pub const fn dport(&self) -> u16 {
        u16::from_be(self.dport_be)
    }
    pub const fn len(&self) -> u16 {
        u16::from_be(self.len_be)
    }
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn set_len(&mut self, len: u16) {
        self.len_be = len.to_be();
    }
}

/// Source and destination port of a TCP or UDP header: its first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ports {
    sport_be: u16,
    dport_be: u16,
}

impl Ports {
    pub const fn new(sport: u16, dport: u16) -> Self {
        Self { sport_be: sport.to_be(), dport_be: dport.to_be() }
    }
    pub const fn sport(&self) -> u16 {
        u16::from_be(self.sport_be)
    }
    pub const fn dport(&self) -> u16 {
        u16::from_be(self.dport_be)
    }
}

/// TCP flag SYN (in [`TcpHdr::flags`]).
pub const TCP_SYN: u8 = 0x02;

/// TCP header without options (the options, if any, follow it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TcpHdr {
    pub ports: Ports,
    seq_be: u32,
    ack_be: u32,
    /// Data offset (header length in 32-bit words) in the high nibble.
    pub data_off: u8,
    pub flags: u8,
    window_be: u16,
    check_be: u16,
    urgent_be: u16,
}

impl TcpHdr {
    /// A header of `options_len` bytes of options (a multiple of 4), sequence
    /// numbers and window zero: what the tests need to build packets.
    pub const fn new(sport: u16, dport: u16, flags: u8, options_len: usize) -> Self {
        let data_off = (((TCP_HLEN + options_len) / 4) << 4) as u8;
        Self {
            ports: Ports::new(sport, dport),
            seq_be: 0,
            ack_be: 0,
            data_off,
            flags,
            window_be: 0,
            check_be: 0,
            urgent_be: 0,
        }
    }
    /// The whole header's length, options included.
    pub const fn header_len(&self) -> usize {
        ((self.data_off >> 4) as usize) * 4
    }
    pub const fn check(&self) -> u16 {
        u16::from_be(self.check_be)
    }
    pub fn set_check(&mut self, check: u16) {
        self.check_be = check.to_be();
    }
}

/// Length of a TCP header without options.
pub const TCP_HLEN: usize = 20;
/// Where the checksum sits in a TCP header.
pub const TCP_CHECK_OFFSET: usize = core::mem::offset_of!(TcpHdr, check_be);
/// Where the data offset sits in a TCP header (the flags follow it).
pub const TCP_DATA_OFF_OFFSET: usize = core::mem::offset_of!(TcpHdr, data_off);

/// Everything the data path puts in front of an inner packet over IPv4.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OuterV4 {
    pub ip: Ipv4Hdr,
    pub udp: UdpHdr,
    pub mp: MpHeader,
}

/// Everything the data path puts in front of an inner packet over IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OuterV6 {
    pub ip: Ipv6Hdr,
    pub udp: UdpHdr,
    pub mp: MpHeader,
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<EthHdr>() == crate::wire::ETH_HLEN);
    assert!(size_of::<Ipv4Hdr>() == crate::wire::IPV4_HLEN);
    assert!(size_of::<Ipv6Hdr>() == crate::wire::IPV6_HLEN);
    assert!(size_of::<UdpHdr>() == crate::wire::UDP_HLEN);
    assert!(size_of::<TcpHdr>() == TCP_HLEN);
    assert!(TCP_CHECK_OFFSET == 16);
    assert!(TCP_DATA_OFF_OFFSET == 12);
    assert!(IPV6_NEXT_HEADER_OFFSET == 6);
    assert!(IPV4_FRAG_OFF_OFFSET == 6);
    assert!(IPV4_PROTOCOL_OFFSET == 9);
    assert!(size_of::<OuterV4>() == 60);
    assert!(size_of::<OuterV6>() == 80);
    assert!(ETH_PROTO_OFFSET == 12);
    assert!(IPV4_DST_OFFSET == 16);
    assert!(IPV6_DST_OFFSET == 24);
    assert!(IPV4_SRC_OFFSET == 12);
    assert!(IPV6_SRC_OFFSET == 8);
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::ipv4_header_checksum;

    #[test]
    fn ipv4_header_is_network_order_with_a_valid_checksum() {
        let mut h = Ipv4Hdr::new([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 0, IPV4_DF);
        let b = h.bytes();
        assert_eq!(&b[..4], &[0x45, 0, 0, 0]);
        assert_eq!(&b[6..10], &[0x40, 0, 64, 17]);
        assert_eq!(&b[12..20], &[10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(ipv4_header_checksum(&b), 0);
        h.set_tot_len(1500);
        assert_eq!(ipv4_header_checksum(&h.bytes()), 0, "incremental update stays valid");
        assert_eq!((h.tot_len(), h.header_len(), h.version(), h.is_fragment()), (1500, 20, 4, false));
    }

    #[test]
    fn ipv6_and_udp_fields_round_trip() {
        let mut h = Ipv6Hdr::new([1; 16], [2; 16], 17, 64, 100);
        h.vtc_flow = [0x6b, 0x80, 0, 0];
        assert_eq!((h.version(), h.traffic_class(), h.payload_len()), (6, 0xb8, 100));
        h.set_payload_len(7);
        assert_eq!(&bytemuck::bytes_of(&h)[4..6], &[0, 7]);
        let u = UdpHdr::new(7495, 53, 28);
        assert_eq!(bytemuck::bytes_of(&u), &[0x1d, 0x47, 0, 53, 0, 28, 0, 0]);
        assert_eq!((u.sport(), u.dport(), u.len()), (7495, 53, 28));
        let e = EthHdr::new([1; 6], [2; 6], 0x86dd);
        assert_eq!(&bytemuck::bytes_of(&e)[12..], &[0x86, 0xdd]);
    }
}
