//! What an uplink hook does with an arriving packet, as pure functions: the
//! XDP program (Ethernet uplinks), the tc program (raw-IP uplinks) and the
//! fuzzer's host reference all run these.
//!
//! - [`parse`]: is it a bond data packet, and which 4-tuple, header and
//!   inner source does it carry? Anything that is not ours (another port,
//!   IPv4 with options or fragmented, IPv6 with extension headers, control
//!   messages) goes up the stack untouched; a bond packet too short or with
//!   a header we do not speak is dropped, with its reason.
//! - [`accept`]: whether the receiver takes it — known subflow, the header
//!   made with the connection's key, never taken before, an inner source
//!   the sending connection owns — accounting it on the way, against the
//!   receive state behind [`RxState`] (the maps, or the host's model of
//!   them).

use crate::auth::{self, DataKey};
use crate::headers::{Ipv4Hdr, Ipv6Hdr, Ports, IPV4_PLAIN, IPV4_SRC_OFFSET, IPV6_SRC_OFFSET};
use crate::inner::InnerAddr;
use crate::maps::{FlowKey, Settings, SubflowKey};
use crate::packet::PacketBytes;
use crate::seq::SeqEvent;
use crate::wire::{
    MpHeader, FAMILY_V4, FAMILY_V6, FLAG_REPLICATED, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, KIND_CONTROL, KIND_DATA,
    MP_HDR_LEN, UDP_HLEN, VERSION,
};
use crate::DropReason;

/// A bond data packet, as [`parse`] found it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    /// The outer 4-tuple as the receiver sees it (remote = its source).
    pub key: FlowKey,
    pub hdr: MpHeader,
    pub src: InnerAddr,
    /// Bytes of outer IP, UDP and multipath header in front of the inner
    /// packet (after the link header).
    pub outer_len: usize,
}

/// Parse a packet whose IP header of `family` starts at `L2` (the link
/// header's length): `Ok(Some(_))` for a bond data packet, `Ok(None)` for
/// anything else (up the stack untouched).
pub fn parse<P: PacketBytes + ?Sized, const L2: usize>(
    p: &P,
    family: u8,
    settings: &Settings,
) -> Result<Option<Datagram>, DropReason> {
    let data = |d: &Datagram| Ok(Some(*d));
    match family {
        FAMILY_V4 => parse_v4::<P, L2, _>(p, settings, None, data),
        FAMILY_V6 => parse_v6::<P, L2, _>(p, settings, None, data),
        _ => Ok(None),
    }
}

/// [`parse`] for an IPv4 packet, in the shape the kernel programs need: a
/// bond data packet goes on to `then`, anything else is `not_ours`.
/// (The datagram returned, inside an `Option` it took stack twice over and
/// left bytes the BPF backend filled from any register, which the verifier
/// refuses; written into the caller's zeroed one, it cost a `memset` and a
/// `memmove` call, 50 ns a packet.)
#[inline(always)]
pub fn parse_v4<P: PacketBytes + ?Sized, const L2: usize, R>(
    p: &P,
    settings: &Settings,
    not_ours: R,
    then: impl FnOnce(&Datagram) -> Result<R, DropReason>,
) -> Result<R, DropReason> {
    let Some(ip) = p.read::<Ipv4Hdr>(L2) else { return Ok(not_ours) };
    // Only option-less, unfragmented IPv4 carrying UDP can be ours (a
    // fragment's bytes are no UDP header; the stack reassembles it).
    if ip.version_ihl != IPV4_PLAIN || ip.protocol != IPPROTO_UDP || ip.is_fragment() {
        return Ok(not_ours);
    }
    let mut key = FlowKey { family: FAMILY_V4, ..FlowKey::default() };
    key.remote[..4].copy_from_slice(&ip.src);
    key.local[..4].copy_from_slice(&ip.dst);
    after_ip::<P, L2, IPV4_HLEN, R>(p, settings, key, not_ours, then)
}

/// [`parse_v4`] for an IPv6 packet.
#[inline(always)]
pub fn parse_v6<P: PacketBytes + ?Sized, const L2: usize, R>(
    p: &P,
    settings: &Settings,
    not_ours: R,
    then: impl FnOnce(&Datagram) -> Result<R, DropReason>,
) -> Result<R, DropReason> {
    let Some(ip) = p.read::<Ipv6Hdr>(L2) else { return Ok(not_ours) };
    // A UDP header right behind: extension headers (fragments included)
    // are not ours.
    if ip.next_header != IPPROTO_UDP {
        return Ok(not_ours);
    }
    let key = FlowKey { family: FAMILY_V6, remote: ip.src, local: ip.dst, ..FlowKey::default() };
    after_ip::<P, L2, IPV6_HLEN, R>(p, settings, key, not_ours, then)
}

/// The part after the outer IP header, whose length `L3` is a constant so
/// the verifier sees fixed offsets.
#[inline(always)]
fn after_ip<P: PacketBytes + ?Sized, const L2: usize, const L3: usize, R>(
    p: &P,
    settings: &Settings,
    mut key: FlowKey,
    not_ours: R,
    then: impl FnOnce(&Datagram) -> Result<R, DropReason>,
) -> Result<R, DropReason> {
    let udp_off = L2 + L3;
    let Some(ports) = p.read::<Ports>(udp_off) else { return Ok(not_ours) };
    if !settings.bond_ports(ports.sport(), ports.dport()) {
        return Ok(not_ours);
    }
    let hdr: MpHeader = p.read(udp_off + UDP_HLEN).ok_or(DropReason::Truncated)?;
    if hdr.version != VERSION {
        return Err(DropReason::BadHeader);
    }
    match hdr.kind {
        KIND_CONTROL => return Ok(not_ours), // for the controller's socket
        KIND_DATA => {}
        _ => return Err(DropReason::BadHeader),
    }
    key.remote_port = ports.sport();
    key.local_port = ports.dport();
    let inner = udp_off + UDP_HLEN + MP_HDR_LEN;
    let first = p.read::<u8>(inner).ok_or(DropReason::DecapFailed)?;
    let src = match first >> 4 {
        4 => InnerAddr::v4(p.read(inner + IPV4_SRC_OFFSET).ok_or(DropReason::DecapFailed)?),
        6 => InnerAddr::v6(p.read(inner + IPV6_SRC_OFFSET).ok_or(DropReason::DecapFailed)?),
        _ => return Err(DropReason::DecapFailed),
    };
    then(&Datagram { key, hdr, src, outer_len: L3 + UDP_HLEN + MP_HDR_LEN })
}

/// The receiver's state [`accept`] reads and updates: the kernel's maps, or
/// the host's model of them.
pub trait RxState {
    /// The subflow known under this 4-tuple.
    fn subflow(&self, key: &FlowKey) -> Option<SubflowKey>;
    /// The key the connection's peer tags its headers with.
    fn rx_key(&self, token: u32) -> Option<DataKey>;
    /// Whether inner sources must lie in the sending connection's prefixes.
    fn checks_sources(&self) -> bool;
    /// The connection whose prefixes hold `src`.
    fn owner(&self, src: &InnerAddr) -> Option<u32>;
    /// [`crate::seq::rx_seq_update`] on the subflow's window, if it has one.
    fn seq_update(&mut self, sk: SubflowKey, seq: u64, segs: u32) -> Option<SeqEvent>;
    /// Count a taken packet of `wire_len` bytes.
    fn account(&mut self, sk: SubflowKey, wire_len: u64, event: SeqEvent, hdr: &MpHeader);
    /// Whether this copy of a redundant packet is the first of its DSN
    /// ([`crate::dedup::dedup_check`] on the connection's window).
    fn first_copy(&mut self, token: u32, dsn: u32, subflow: u8) -> Result<(), DropReason>;
}

/// Whether the receiver takes data packet `d` of `wire_len` bytes: the
/// subflow must be known by its 4-tuple and named by the header, the
/// header made with the connection's key and never taken before, and on a
/// concentrator the inner source must be the sending connection's.
/// Accounts it, and answers the inner packet's EtherType.
#[inline(always)]
pub fn accept<S: RxState>(s: &mut S, d: &Datagram, wire_len: u64) -> Result<u16, DropReason> {
    let hdr = &d.hdr;
    let sk = s.subflow(&d.key).ok_or(DropReason::UnknownSubflow)?;
    if sk.token != hdr.token() || sk.subflow_id != hdr.subflow_id as u32 {
        return Err(DropReason::BadToken);
    }
    // Before anything is counted or remembered: only the peer can make a
    // header that passes.
    let key = s.rx_key(sk.token).ok_or(DropReason::Forged)?;
    if !auth::verify(&key, hdr) {
        return Err(DropReason::Forged);
    }
    // The concentrator routes a connection's prefixes back to its client
    // only: a source outside them is another client's or nobody's.
    if s.checks_sources() && s.owner(&d.src) != Some(sk.token) {
        return Err(DropReason::ForeignSource);
    }
    let event = s.seq_update(sk, hdr.subflow_seq48(), hdr.segs()).ok_or(DropReason::UnknownSubflow)?;
    if event == SeqEvent::Replayed {
        return Err(DropReason::Replayed);
    }
    s.account(sk, wire_len, event, hdr);
    // Copies of a redundant packet: only the first of its DSN goes up.
    if hdr.flags & FLAG_REPLICATED != 0 {
        s.first_copy(sk.token, hdr.dsn(), hdr.subflow_id)?;
    }
    Ok(d.src.proto())
}
