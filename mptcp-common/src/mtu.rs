//! The bond device's MTU: no encapsulated packet may exceed an uplink's MTU,
//! because nothing fragments on the redirect path (veth drops silently).

use crate::headers::{
    IPV4_FRAGMENT_MASK, IPV4_FRAG_OFF_OFFSET, IPV4_PROTOCOL_OFFSET, IPV6_NEXT_HEADER_OFFSET, TCP_CHECK_OFFSET,
    TCP_DATA_OFF_OFFSET, TCP_HLEN, TCP_SYN,
};
use crate::packet::PacketBytes;
use crate::wire::{encap_overhead, ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6, IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN};

/// Largest inner packet that still fits every uplink after encapsulation.
/// `outer_family` is the worst (largest) outer family in use.
pub const fn bond_mtu(min_uplink_mtu: u32, outer_family: u8) -> u32 {
    min_uplink_mtu.saturating_sub(encap_overhead(outer_family) as u32)
}

/// IPv6 needs an MTU of at least 1280 on every link.
pub const IPV6_MIN_MTU: u32 = 1280;

/// Most bytes of options a TCP header carries.
pub const TCP_MAX_OPTIONS: usize = 40;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_MSS_LEN: u8 = 4;

/// The largest MSS a TCP connection through a bond of MTU `bond_mtu` may
/// announce, for inner packets of `inner_family`: a full segment then fits
/// the bond, whatever path it takes. Both ends clamp the SYNs they forward,
/// both ways, so neither TCP end ever sends a segment some path cannot carry,
/// even when it never sees an ICMP "too big" (forwarded traffic, filtered ICMP).
pub const fn mss_limit(bond_mtu: u32, inner_family: u8) -> u16 {
    let ip = if inner_family == FAMILY_V6 { IPV6_HLEN } else { IPV4_HLEN };
    let mss = bond_mtu.saturating_sub((ip + TCP_HLEN) as u32);
    if mss > u16::MAX as u32 {
        u16::MAX
    } else {
        mss as u16
    }
}

/// Where the MSS option's 2-byte value sits in TCP options of `len` bytes,
/// `byte(i)` reading option byte `i`; `None` if there is none (or the options
/// are malformed before it: then nothing is rewritten).
///
/// Shaped for the verifier: it visits each byte position once, in order, and
/// reads only where the next option starts. A walk that jumped by each
/// option's length would hand it a new range of positions per option, and
/// their combinations outgrow its budget.
#[inline(always)]
pub fn mss_value_at(len: usize, byte: impl Fn(usize) -> Option<u8>) -> Option<usize> {
    let mut next = 0; // where the next option starts
    for at in 0..TCP_MAX_OPTIONS {
        if at >= len {
            return None;
        }
        if at != next {
            continue; // inside an option
        }
        let kind = byte(at)?;
        if kind == OPT_END {
            return None;
        }
        if kind == OPT_NOP {
            next = at + 1;
            continue;
        }
        let opt_len = byte(at + 1)?;
        if kind == OPT_MSS {
            return if opt_len == OPT_MSS_LEN && at + OPT_MSS_LEN as usize <= len { Some(at + 2) } else { None };
        }
        if opt_len < 2 {
            return None;
        }
        next = at + opt_len as usize;
    }
    None
}

/// The MSS to write in place of an `announced` one above `limit`.
#[inline(always)]
pub const fn clamp_mss(announced: u16, limit: u16) -> Option<u16> {
    if limit != 0 && announced > limit {
        Some(limit)
    } else {
        None
    }
}

/// An MSS to write: the 2 bytes at `off` hold `old` (as in the packet) and
/// get `new` (host order), with the TCP checksum at `check_off` kept valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MssRewrite {
    pub off: usize,
    pub old: u16,
    pub new: u16,
    pub check_off: usize,
}

/// The MSS clamp of a packet whose IP header (EtherType `proto`) starts at
/// `l3`: a TCP SYN announcing more than a full segment through a bond of
/// `bond_mtu` ([`mss_limit`]) gets that limit. Anything else (not a SYN,
/// fragments, IPv6 extension headers, malformed options, no clamp
/// configured) is left as it is.
#[inline(always)]
pub fn mss_rewrite<P: PacketBytes + ?Sized>(p: &P, l3: usize, proto: u16, bond_mtu: u32) -> Option<MssRewrite> {
    if bond_mtu == 0 {
        return None;
    }
    // Only the bytes needed are read: in the kernel this function's stack
    // adds to its caller's, and the egress program's is nearly all of the
    // 512 bytes.
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
    Some(MssRewrite { off, old, new, check_off: l4 + TCP_CHECK_OFFSET })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(opts: &[u8]) -> Option<usize> {
        mss_value_at(opts.len(), |i| opts.get(i).copied())
    }

    #[test]
    fn the_mss_option_is_found_among_the_others() {
        // Linux's SYN: MSS first.
        assert_eq!(walk(&[2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]), Some(2));
        // After NOPs, window scale, SACK-permitted and timestamps.
        assert_eq!(walk(&[1, 1, 3, 3, 7, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 0x05, 0xb4, 0, 0, 0]), Some(19));
        // None at all; after the end of options; malformed before it; cut short.
        assert_eq!(walk(&[1, 1, 4, 2]), None);
        assert_eq!(walk(&[0, 0, 2, 4, 5, 0xb4, 0, 0]), None);
        assert_eq!(walk(&[3, 0, 2, 4, 5, 0xb4, 0, 0]), None);
        assert_eq!(walk(&[3, 1, 2, 4, 5, 0xb4, 0, 0]), None);
        assert_eq!(walk(&[1, 1, 2, 4, 5]), None);
        assert_eq!(walk(&[2, 3, 5, 0xb4]), None, "an MSS option of the wrong length");
        // A length running past the options; past the 40-byte maximum.
        assert_eq!(walk(&[8, 30, 0, 0, 2, 4, 5, 0xb4]), None);
        assert_eq!(mss_value_at(60, |_| Some(OPT_NOP)), None);
    }

    #[test]
    fn only_a_larger_mss_is_lowered() {
        assert_eq!(mss_limit(1452, FAMILY_V4), 1412);
        assert_eq!(mss_limit(1432, FAMILY_V6), 1372);
        assert_eq!(mss_limit(30, FAMILY_V4), 0);
        assert_eq!(mss_limit(u32::MAX, FAMILY_V4), u16::MAX);
        assert_eq!(clamp_mss(1460, 1412), Some(1412));
        assert_eq!(clamp_mss(1412, 1412), None);
        assert_eq!(clamp_mss(536, 1412), None);
        assert_eq!(clamp_mss(1460, 0), None, "0: no clamp known");
    }

    #[test]
    fn overhead_is_subtracted() {
        assert_eq!(bond_mtu(1500, FAMILY_V4), 1440);
        assert_eq!(bond_mtu(1500, FAMILY_V6), 1420);
        assert_eq!(bond_mtu(10, FAMILY_V4), 0);
    }
}
