//! What the bond's egress program reads from an inner packet (IP behind an
//! Ethernet header, as the bond device has it), as pure functions the
//! kernel program and the fuzzer's host reference both run: which
//! connection it goes to, and its protocol, DSCP, addresses and ports
//! (which class, which flowlet).

use crate::classify::PacketMeta;
use crate::headers::{Ipv4Hdr, Ipv6Hdr, Ports, ETH_PROTO_OFFSET, IPV4_DST_OFFSET, IPV6_DST_OFFSET};
use crate::packet::PacketBytes;
use crate::wire::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6, IPV6_HLEN};
use crate::DropReason;

/// An inner packet's address: IPv4 in the first 4 bytes of `addr`, the
/// rest zero. (Not an enum: the BPF backend fills an enum's unused payload
/// with whatever a register held, which the verifier refuses.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InnerAddr {
    pub family: u8,
    pub addr: [u8; 16],
}

impl InnerAddr {
    /// An IPv4 address.
    #[inline(always)]
    pub fn v4(a: [u8; 4]) -> Self {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        InnerAddr { family: FAMILY_V4, addr }
    }

    /// An IPv6 address.
    #[inline(always)]
    pub const fn v6(addr: [u8; 16]) -> Self {
        InnerAddr { family: FAMILY_V6, addr }
    }

    /// The first 4 bytes (the address of an IPv4 one).
    #[inline(always)]
    pub fn ipv4(&self) -> [u8; 4] {
        [self.addr[0], self.addr[1], self.addr[2], self.addr[3]]
    }

    /// The EtherType of a packet from or to it.
    #[inline(always)]
    pub const fn proto(&self) -> u16 {
        if self.family == FAMILY_V6 {
            ETH_P_IPV6
        } else {
            ETH_P_IP
        }
    }
}

/// Which connection the inner packet in an Ethernet frame goes to, and its
/// EtherType: `by_v4`/`by_v6` look its destination up (the longest prefix
/// match). Anything but IPv4 or IPv6, or too short to hold the address, is
/// `NotIp`; a destination no connection covers, `NoConnection`. (Each
/// family's address stays in its own branch: held in one value across
/// them, it took the 16 bytes of stack the egress program lacks.)
#[inline(always)]
pub fn connection<P: PacketBytes + ?Sized>(
    p: &P,
    by_v4: impl FnOnce([u8; 4]) -> Option<u32>,
    by_v6: impl FnOnce([u8; 16]) -> Option<u32>,
) -> Result<(u16, u32), DropReason> {
    let proto = u16::from_be(p.read::<u16>(ETH_PROTO_OFFSET).ok_or(DropReason::NotIp)?);
    let token = if proto == ETH_P_IP {
        by_v4(p.read(ETH_HLEN + IPV4_DST_OFFSET).ok_or(DropReason::NotIp)?)
    } else if proto == ETH_P_IPV6 {
        by_v6(p.read(ETH_HLEN + IPV6_DST_OFFSET).ok_or(DropReason::NotIp)?)
    } else {
        return Err(DropReason::NotIp);
    };
    Ok((proto, token.ok_or(DropReason::NoConnection)?))
}

/// The inner packet's protocol, DSCP, addresses and ports (EtherType
/// `proto`): a header too short for its fixed part is `NotIp`; ports past
/// the end read as 0.
#[inline(always)]
pub fn packet_meta<P: PacketBytes + ?Sized>(p: &P, proto: u16) -> Result<PacketMeta, DropReason> {
    if proto == ETH_P_IP {
        let h: Ipv4Hdr = p.read(ETH_HLEN).ok_or(DropReason::NotIp)?;
        let l4: Ports = p.read(ETH_HLEN + h.header_len()).unwrap_or_default();
        Ok(PacketMeta::from_ipv4(&h, &l4))
    } else {
        let h: Ipv6Hdr = p.read(ETH_HLEN).ok_or(DropReason::NotIp)?;
        let l4: Ports = p.read(ETH_HLEN + IPV6_HLEN).unwrap_or_default();
        Ok(PacketMeta::from_ipv6(&h, &l4))
    }
}
