//! Traffic classes: ordered rules over protocol, ports, DSCP and destination
//! prefix map an inner packet to a class; each class has its own policy. The
//! first matching rule wins; no match is the default class 0.

use bytemuck::{Pod, Zeroable};

use crate::headers::{Ipv4Hdr, Ipv6Hdr, Ports};
use crate::maps::MAX_RULES;
use crate::wire::{FAMILY_V4, FAMILY_V6};

pub use crate::wire::{IPPROTO_TCP, IPPROTO_UDP};
/// `ClassRule::dscp` meaning "any DSCP".
pub const DSCP_ANY: u8 = 0xff;
/// The default class.
pub const DEFAULT_CLASS: u8 = 0;

/// What classification and flowlet need from an inner packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// IP protocol / IPv6 next header.
    pub proto: u8,
    pub dscp: u8,
    /// Ports (host byte order) for TCP and UDP that are not fragments; else 0.
    pub sport: u16,
    pub dport: u16,
    /// IPv4 addresses use the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

impl PacketMeta {
    /// From an IPv4 header (its first 20 bytes; options are not read) and the
    /// first 4 bytes after the whole header (the ports, if any).
    #[inline(always)]
    pub fn from_ipv4(h: &Ipv4Hdr, l4: &Ports) -> PacketMeta {
        let proto = h.protocol;
        let mut m = PacketMeta { family: FAMILY_V4, proto, dscp: h.dscp(), ..PacketMeta::default() };
        m.src[..4].copy_from_slice(&h.src);
        m.dst[..4].copy_from_slice(&h.dst);
        if !h.is_fragment() && (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
            m.sport = l4.sport();
            m.dport = l4.dport();
        }
        m
    }

    /// From an IPv6 header and the 4 bytes after it. Extension headers are
    /// not walked: such packets classify by addresses and DSCP only.
    #[inline(always)]
    pub fn from_ipv6(h: &Ipv6Hdr, l4: &Ports) -> PacketMeta {
        let proto = h.next_header;
        let mut m = PacketMeta { family: FAMILY_V6, proto, dscp: h.traffic_class() >> 2, ..PacketMeta::default() };
        m.src = h.src;
        m.dst = h.dst;
        if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
            m.sport = l4.sport();
            m.dport = l4.dport();
        }
        m
    }

    /// A hash of the 5-tuple naming the inner flow (for flowlet). Symmetric
    /// inputs are not needed: each direction is scheduled by its own sender.
    #[inline(always)]
    pub fn flow_hash(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5 ^ (self.proto as u32);
        let n = if self.family == FAMILY_V6 { 16 } else { 4 };
        for i in 0..16 {
            if i >= n {
                break;
            }
            h = (h ^ self.src[i] as u32).wrapping_mul(0x0100_0193);
            h = (h ^ self.dst[i] as u32).wrapping_mul(0x0100_0193);
        }
        h = (h ^ self.sport as u32).wrapping_mul(0x0100_0193);
        h = (h ^ self.dport as u32).wrapping_mul(0x0100_0193);
        h ^ (h >> 16)
    }
}

/// One classifier rule (`CLASS_RULES` value). Every field set must match.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ClassRule {
    /// The class a match maps to.
    pub class: u8,
    /// 0 = any, else [`FAMILY_V4`] / [`FAMILY_V6`] (set with a prefix).
    pub family: u8,
    /// 0 = any.
    pub proto: u8,
    /// [`DSCP_ANY`] or a DSCP value (0..=63).
    pub dscp: u8,
    /// Destination prefix length in bits; 0 = any destination.
    pub prefix_len: u8,
    pub _pad: [u8; 3],
    /// Inclusive port ranges; 0..=65535 matches anything.
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub prefix: [u8; 16],
}

impl Default for ClassRule {
    /// Matches every packet (into class 0).
    fn default() -> Self {
        ClassRule {
            class: DEFAULT_CLASS,
            family: 0,
            proto: 0,
            dscp: DSCP_ANY,
            prefix_len: 0,
            _pad: [0; 3],
            sport_lo: 0,
            sport_hi: u16::MAX,
            dport_lo: 0,
            dport_hi: u16::MAX,
            prefix: [0; 16],
        }
    }
}

/// Whether the first `len` bits of `a` and `b` agree.
#[inline(always)]
fn prefix_matches(a: &[u8; 16], b: &[u8; 16], len: u8) -> bool {
    let len = if len > 128 { 128 } else { len as usize };
    for i in 0..16 {
        let bits = len.saturating_sub(i * 8);
        if bits == 0 {
            break;
        }
        let mask: u8 = if bits >= 8 { 0xff } else { !(0xffu8 >> bits) };
        if (a[i] ^ b[i]) & mask != 0 {
            return false;
        }
    }
    true
}

impl ClassRule {
    #[inline(always)]
    pub fn matches(&self, m: &PacketMeta) -> bool {
        if self.family != 0 && self.family != m.family {
            return false;
        }
        if self.proto != 0 && self.proto != m.proto {
            return false;
        }
        if self.dscp != DSCP_ANY && self.dscp != m.dscp {
            return false;
        }
        if m.sport < self.sport_lo || m.sport > self.sport_hi || m.dport < self.dport_lo || m.dport > self.dport_hi {
            return false;
        }
        self.prefix_len == 0 || prefix_matches(&self.prefix, &m.dst, self.prefix_len)
    }
}

/// The class of `m` under rules `rule(0..n)`: the first that matches, else
/// [`DEFAULT_CLASS`]. `rule` returns `None` for a slot it cannot read.
#[inline(always)]
pub fn classify<'a, F: Fn(u32) -> Option<&'a ClassRule>>(rule: F, n: u32, m: &PacketMeta) -> u8 {
    for i in 0..MAX_RULES {
        if i >= n {
            break;
        }
        if let Some(r) = rule(i) {
            if r.matches(m) {
                return r.class;
            }
        }
    }
    DEFAULT_CLASS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, tos: u8, dst: [u8; 4], sport: u16, dport: u16) -> PacketMeta {
        let mut h = Ipv4Hdr::new([10, 0, 0, 1], dst, proto, 64, 40, 0);
        h.tos = tos;
        PacketMeta::from_ipv4(&h, &Ports::new(sport, dport))
    }

    #[test]
    fn parses_ipv4_and_skips_ports_of_fragments() {
        let m = v4(IPPROTO_UDP, 46 << 2, [192, 0, 2, 9], 5000, 53);
        assert_eq!((m.proto, m.dscp, m.sport, m.dport), (IPPROTO_UDP, 46, 5000, 53));
        let fragment = Ipv4Hdr::new([10, 0, 0, 1], [10, 0, 0, 2], IPPROTO_UDP, 64, 40, 10);
        assert_eq!(PacketMeta::from_ipv4(&fragment, &Ports::new(1, 2)).dport, 0);
    }

    #[test]
    fn parses_ipv6_traffic_class() {
        let mut dst = [0u8; 16];
        dst[0] = 0x20;
        let mut h = Ipv6Hdr::new([0; 16], dst, IPPROTO_TCP, 64, 0);
        h.vtc_flow = [0x60 | (0xb8 >> 4), 0x80, 0, 0]; // traffic class 0xb8 = DSCP 46
        let m = PacketMeta::from_ipv6(&h, &Ports::new(80, 443));
        assert_eq!((m.family, m.dscp, m.sport, m.dport, m.dst[0]), (FAMILY_V6, 46, 80, 443, 0x20));
    }

    #[test]
    fn first_matching_rule_wins_and_default_catches_the_rest() {
        let voice = ClassRule { class: 1, proto: IPPROTO_UDP, dport_lo: 5060, dport_hi: 5070, ..Default::default() };
        let ef = ClassRule { class: 2, dscp: 46, ..Default::default() };
        let mut net = ClassRule { class: 3, family: FAMILY_V4, prefix_len: 12, ..Default::default() };
        net.prefix[..4].copy_from_slice(&[172, 16, 0, 0]);
        let rules = [voice, ef, net];
        let class = |m: &PacketMeta| classify(|i| rules.get(i as usize), rules.len() as u32, m);
        assert_eq!(class(&v4(IPPROTO_UDP, 46 << 2, [1, 1, 1, 1], 1, 5065)), 1);
        assert_eq!(class(&v4(IPPROTO_TCP, 46 << 2, [1, 1, 1, 1], 1, 5065)), 2);
        assert_eq!(class(&v4(IPPROTO_TCP, 0, [172, 31, 9, 9], 1, 80)), 3);
        assert_eq!(class(&v4(IPPROTO_TCP, 0, [172, 32, 9, 9], 1, 80)), DEFAULT_CLASS);
        // Only the first n rules count.
        assert_eq!(classify(|i| rules.get(i as usize), 1, &v4(IPPROTO_TCP, 46 << 2, [1; 4], 1, 1)), DEFAULT_CLASS);
    }

    #[test]
    fn flow_hash_separates_flows() {
        let a = v4(IPPROTO_TCP, 0, [1, 2, 3, 4], 1000, 80);
        let b = v4(IPPROTO_TCP, 0, [1, 2, 3, 4], 1001, 80);
        assert_eq!(a.flow_hash(), v4(IPPROTO_TCP, 0, [1, 2, 3, 4], 1000, 80).flow_hash());
        assert_ne!(a.flow_hash(), b.flow_hash());
    }
}
