//! The control protocol between two controllers, carried in UDP on the bond
//! port with the multipath header's `kind` = control (the XDP program passes
//! these up to the controller's socket).
//!
//! ```text
//! MpHeader (32 B, kind=control, token, subflow id) | type (1 B) | body | stamp (8 B) | HMAC-SHA256 (32 B)
//! ```
//! The tag is HMAC-SHA256 keyed by the pre-shared key over everything before
//! it. The stamp makes a message fresh: the sender's stamps only grow (its
//! monotonic clock, µs, which a restarted controller continues), and a
//! receiver acts on a subflow's messages only while their stamps do
//! ([`Freshness`]), so a captured probe, answer or hint replayed later is
//! refused. Handshakes need no stamp: their nonces make them fresh. Handshakes (first subflow and JOIN alike) are challenge/response, so a
//! replayed message cannot create state:
//!
//! ```text
//! client                                  concentrator
//!   HELLO {join?, nonce_c, key_c, prefixes} ->
//!                 <- CHALLENGE {nonce_c, nonce_s, key_s}   (token assigned)
//!   PROOF {nonce_c, nonce_s}              ->   subflow installed
//!                 <- ACCEPT {nonce_c, nonce_s}              subflow installed
//! ```
//! CHALLENGE, PROOF and ACCEPT are HMACs over both sides' nonces. A message
//! whose tag does not verify is refused and counted; the concentrator answers
//! a HELLO that fails verification with an (unauthenticated) REJECT so that a
//! client with the wrong key fails fast with a clear error.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use mptcp_common::auth::{ConnKeys, DataKey};
use mptcp_common::wire::{MpHeader, KIND_CONTROL, MP_HDR_LEN, VERSION};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const TAG_LEN: usize = 32;
/// The freshness stamp before the tag.
pub const STAMP_LEN: usize = 8;
/// At most this many prefixes in a HELLO.
pub const MAX_PREFIXES: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Hello {
        join: bool,
        nonce_c: u64,
        key_c: u64,
        /// The client's view of this path, so the return direction honours it.
        path: PathHint,
        prefixes: Vec<IpNet>,
    },
    Challenge {
        nonce_c: u64,
        nonce_s: u64,
        key_s: u64,
    },
    Proof {
        nonce_c: u64,
        nonce_s: u64,
    },
    Accept {
        nonce_c: u64,
        nonce_s: u64,
    },
    Reject {
        reason: RejectReason,
        nonce_c: u64,
    },
    Probe {
        seq: u32,
        sent_us: u64,
        srtt_us: u32,
        /// The client's windowed minimum RTT of this path (propagation delay × 2).
        min_rtt_us: u32,
        /// The client's next probe on this subflow follows within this many
        /// milliseconds (sooner while it carries traffic): the concentrator
        /// takes a silence of a few of these for a dead path.
        interval_ms: u32,
        /// The client's bond MTU (its smallest path MTU less the
        /// encapsulation; 0 = not known): the concentrator routes the
        /// client's prefixes with it, so what it forwards there fits.
        bond_mtu: u32,
        /// What the client received on this subflow so far.
        rx: RxReport,
    },
    ProbeAck {
        seq: u32,
        sent_us: u64,
        /// When the concentrator sent this answer, µs of its clock: the
        /// client's next probe reports the answer's one-way delay
        /// ([`RxReport::probe_owd_us`]).
        acked_us: u64,
        /// What the concentrator received on this subflow so far.
        rx: RxReport,
    },
    /// The client changed this path's hints at runtime (`mptcp-user path set`).
    Hint {
        path: PathHint,
    },
    /// Path MTU search (client): padded with `pad` zero bytes so the whole
    /// outer IP packet is `size` bytes; sent with don't-fragment.
    MtuProbe {
        round: u32,
        size: u16,
        pad: u16,
    },
    /// The concentrator received that probe: padded to the same `size`
    /// (and sent with don't-fragment), so an answered size crossed the path
    /// both ways.
    MtuAck {
        round: u32,
        size: u16,
        pad: u16,
    },
    /// One of a train of `count` back-to-back packets (client), padded with
    /// `pad` zero bytes: how fast the path lets them through measures its
    /// capacity before any traffic needs it.
    RateProbe {
        train: u32,
        index: u8,
        count: u8,
        /// When it was sent, ns after the train's first packet: the
        /// receiver checks that the path spread the train, not the sender.
        sent_ns: u32,
        pad: u16,
    },
    /// The concentrator's measure of train `train`: `bytes` on the wire
    /// arrived in `span_us` (the train's second half, past any burst a
    /// token bucket lets through at once).
    RateAck {
        train: u32,
        bytes: u32,
        span_us: u32,
    },
}

/// Bytes of an encoded [`Body::MtuProbe`] or [`Body::MtuAck`] message
/// besides its padding: multipath header, type, round, size, pad length, tag.
pub const MTU_PROBE_LEN: usize = MP_HDR_LEN + 1 + 4 + 2 + 2 + STAMP_LEN + TAG_LEN;

/// The padding that makes an MTU probe (or its answer) an outer IP packet of
/// `size` bytes.
pub fn mtu_pad(size: u16, ipv6: bool) -> u16 {
    use mptcp_common::wire::{IPV4_HLEN, IPV6_HLEN, UDP_HLEN};
    let ip = if ipv6 { IPV6_HLEN } else { IPV4_HLEN };
    (size as usize).saturating_sub(ip + UDP_HLEN + MTU_PROBE_LEN) as u16
}

/// Bytes of an encoded [`Body::RateProbe`] besides its padding: multipath
/// header, type, train, index, count, send offset, pad length, stamp, tag.
pub const RATE_PROBE_LEN: usize = MP_HDR_LEN + 1 + 4 + 1 + 1 + 4 + 2 + STAMP_LEN + TAG_LEN;

/// The padding that makes a rate probe an outer IP packet of `size` bytes.
pub fn rate_probe_pad(size: u16, ipv6: bool) -> u16 {
    use mptcp_common::wire::{IPV4_HLEN, IPV6_HLEN, UDP_HLEN};
    let ip = if ipv6 { IPV6_HLEN } else { IPV4_HLEN };
    (size as usize).saturating_sub(ip + UDP_HLEN + RATE_PROBE_LEN) as u16
}

/// A receiver's cumulative counters of one subflow: the sender derives the
/// path's delivery rate and loss from two of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxReport {
    /// Bytes on the wire (Ethernet frame) and packets received.
    pub bytes: u64,
    pub packets: u64,
    /// Packets presumed lost (sequence gaps not filled later).
    pub lost: u64,
    /// Latest one-way delay sample (receiver's clock minus sender's stamp,
    /// wrapping: meaningful across hosts only as a trend).
    pub owd_us: u32,
    /// The same, of the latest control message that carries a stamp (the
    /// probe a [`Body::ProbeAck`] answers; the last answer before a
    /// [`Body::Probe`]), 0: none since the last report. Probes cross a path
    /// that carries no data, so they show its jitter before any load.
    pub probe_owd_us: u32,
}

impl RxReport {
    fn encode(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.bytes.to_be_bytes());
        b.extend_from_slice(&self.packets.to_be_bytes());
        b.extend_from_slice(&self.lost.to_be_bytes());
        b.extend_from_slice(&self.owd_us.to_be_bytes());
        b.extend_from_slice(&self.probe_owd_us.to_be_bytes());
    }

    fn decode(r: &mut Reader) -> Result<RxReport, DecodeError> {
        Ok(RxReport { bytes: r.u64()?, packets: r.u64()?, lost: r.u64()?, owd_us: r.u32()?, probe_owd_us: r.u32()? })
    }
}

/// Priority, backup flag, rate and weight of a path, as the client configured them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathHint {
    pub priority: u32,
    pub backup: bool,
    /// Not to be used at all (its data cap is spent, `when_spent = "unused"`).
    pub unused: bool,
    pub rate_bytes_per_sec: u64,
    /// weighted policy share; 0 = by rate.
    pub weight: u32,
}

impl PathHint {
    fn encode(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.priority.to_be_bytes());
        // One byte of flags: bit 0 backup, bit 1 unused (a peer that reads
        // the byte as a boolean takes "unused" for "backup": the safe side).
        b.push(self.backup as u8 | (self.unused as u8) << 1);
        b.extend_from_slice(&self.rate_bytes_per_sec.to_be_bytes());
        b.extend_from_slice(&self.weight.to_be_bytes());
    }

    fn decode(r: &mut Reader) -> Result<PathHint, DecodeError> {
        let priority = r.u32()?;
        let flags = r.u8()?;
        Ok(PathHint {
            priority,
            backup: flags & 1 != 0,
            unused: flags & 2 != 0,
            rate_bytes_per_sec: r.u64()?,
            weight: r.u32()?,
        })
    }

    /// Apply the hint to a subflow's path state (flags other than backup and
    /// unused are kept).
    pub fn apply(&self, p: &mut mptcp_common::maps::PathState) {
        use mptcp_common::maps::{PATH_BACKUP, PATH_UNUSED};
        p.priority = self.priority;
        p.rate_bytes_per_sec = self.rate_bytes_per_sec;
        p.weight = self.weight;
        for (flag, set) in [(PATH_BACKUP, self.backup), (PATH_UNUSED, self.unused)] {
            if set {
                p.flags |= flag;
            } else {
                p.flags &= !flag;
            }
        }
    }
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    AuthFailed = 1,
    UnknownToken = 2,
    Full = 3,
    /// The connection is known but not this subflow from this address and
    /// port: its NAT mapping changed (or the subflow was collected). The
    /// client re-JOINs the path.
    UnknownSubflow = 4,
    /// The client announced a prefix that is not among its own (the
    /// concentrator's `[[client]]` entry for its key).
    ForeignPrefix = 5,
}

impl RejectReason {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::AuthFailed),
            2 => Some(Self::UnknownToken),
            3 => Some(Self::Full),
            4 => Some(Self::UnknownSubflow),
            5 => Some(Self::ForeignPrefix),
            _ => None,
        }
    }
    pub fn explain(self) -> &'static str {
        match self {
            Self::AuthFailed => "authentication failed: the pre-shared keys differ",
            Self::UnknownToken => "the concentrator does not know this connection's token",
            Self::Full => "the concentrator has no room for another connection or subflow",
            Self::UnknownSubflow => "the concentrator does not know this subflow from this address and port",
            Self::ForeignPrefix => {
                "the concentrator refuses an address this client announced: it is not among the prefixes \
                 its [[client]] entry allows (see `bond.addresses`)"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub token: u32,
    pub subflow_id: u8,
    pub body: Body,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed control message: {0}")]
    Malformed(&'static str),
    #[error("control message failed authentication (wrong pre-shared key?)")]
    BadTag,
}

const T_HELLO: u8 = 1;
const T_CHALLENGE: u8 = 2;
const T_PROOF: u8 = 3;
const T_ACCEPT: u8 = 4;
const T_REJECT: u8 = 5;
const T_PROBE: u8 = 6;
const T_PROBE_ACK: u8 = 7;
const T_HINT: u8 = 8;
const T_MTU_PROBE: u8 = 9;
const T_MTU_ACK: u8 = 10;
const T_RATE_PROBE: u8 = 11;
const T_RATE_ACK: u8 = 12;

fn tag(psk: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = HmacSha256::new_from_slice(psk).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl Message {
    /// [`Message::encode_stamped`] with stamp 0 (a handshake message).
    pub fn encode(&self, psk: &[u8]) -> Vec<u8> {
        self.encode_stamped(psk, 0)
    }

    /// The message on the wire, carrying `stamp` ([`Stamps::next`]) and
    /// authenticated with `psk`.
    pub fn encode_stamped(&self, psk: &[u8], stamp: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(bytemuck::bytes_of(
            &MpHeader::control(self.token, self.subflow_id).with_key_id(key_id(psk)),
        ));
        match &self.body {
            Body::Hello { join, nonce_c, key_c, path, prefixes } => {
                b.push(T_HELLO);
                b.push(*join as u8);
                b.extend_from_slice(&nonce_c.to_be_bytes());
                b.extend_from_slice(&key_c.to_be_bytes());
                path.encode(&mut b);
                b.push(prefixes.len().min(MAX_PREFIXES) as u8);
                for p in prefixes.iter().take(MAX_PREFIXES) {
                    match p.addr() {
                        IpAddr::V4(a) => {
                            b.push(4);
                            b.push(p.prefix_len());
                            b.extend_from_slice(&a.octets());
                        }
                        IpAddr::V6(a) => {
                            b.push(6);
                            b.push(p.prefix_len());
                            b.extend_from_slice(&a.octets());
                        }
                    }
                }
            }
            Body::Challenge { nonce_c, nonce_s, key_s } => {
                b.push(T_CHALLENGE);
                b.extend_from_slice(&nonce_c.to_be_bytes());
                b.extend_from_slice(&nonce_s.to_be_bytes());
                b.extend_from_slice(&key_s.to_be_bytes());
            }
            Body::Proof { nonce_c, nonce_s } => {
                b.push(T_PROOF);
                b.extend_from_slice(&nonce_c.to_be_bytes());
                b.extend_from_slice(&nonce_s.to_be_bytes());
            }
            Body::Accept { nonce_c, nonce_s } => {
                b.push(T_ACCEPT);
                b.extend_from_slice(&nonce_c.to_be_bytes());
                b.extend_from_slice(&nonce_s.to_be_bytes());
            }
            Body::Reject { reason, nonce_c } => {
                b.push(T_REJECT);
                b.push(*reason as u8);
                b.extend_from_slice(&nonce_c.to_be_bytes());
            }
            Body::Probe { seq, sent_us, srtt_us, min_rtt_us, interval_ms, bond_mtu, rx } => {
                b.push(T_PROBE);
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&sent_us.to_be_bytes());
                b.extend_from_slice(&srtt_us.to_be_bytes());
                b.extend_from_slice(&min_rtt_us.to_be_bytes());
                b.extend_from_slice(&interval_ms.to_be_bytes());
                b.extend_from_slice(&bond_mtu.to_be_bytes());
                rx.encode(&mut b);
            }
            Body::ProbeAck { seq, sent_us, acked_us, rx } => {
                b.push(T_PROBE_ACK);
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&sent_us.to_be_bytes());
                b.extend_from_slice(&acked_us.to_be_bytes());
                rx.encode(&mut b);
            }
            Body::Hint { path } => {
                b.push(T_HINT);
                path.encode(&mut b);
            }
            Body::MtuProbe { round, size, pad } | Body::MtuAck { round, size, pad } => {
                b.push(if matches!(self.body, Body::MtuProbe { .. }) { T_MTU_PROBE } else { T_MTU_ACK });
                b.extend_from_slice(&round.to_be_bytes());
                b.extend_from_slice(&size.to_be_bytes());
                b.extend_from_slice(&pad.to_be_bytes());
                b.resize(b.len() + *pad as usize, 0);
            }
            Body::RateProbe { train, index, count, sent_ns, pad } => {
                b.push(T_RATE_PROBE);
                b.extend_from_slice(&train.to_be_bytes());
                b.push(*index);
                b.push(*count);
                b.extend_from_slice(&sent_ns.to_be_bytes());
                b.extend_from_slice(&pad.to_be_bytes());
                b.resize(b.len() + *pad as usize, 0);
            }
            Body::RateAck { train, bytes, span_us } => {
                b.push(T_RATE_ACK);
                b.extend_from_slice(&train.to_be_bytes());
                b.extend_from_slice(&bytes.to_be_bytes());
                b.extend_from_slice(&span_us.to_be_bytes());
            }
        }
        b.extend_from_slice(&stamp.to_be_bytes());
        let t = tag(psk, &b);
        b.extend_from_slice(&t);
        b
    }

    /// [`Message::decode_stamped`] without the stamp.
    pub fn decode(buf: &[u8], psk: &[u8]) -> Result<Message, DecodeError> {
        Ok(Message::decode_stamped(buf, psk)?.0)
    }

    /// Parse and authenticate; the message and its stamp. A REJECT saying
    /// authentication failed is returned without authentication (the peer
    /// may not share our key); callers treat it as advisory.
    pub fn decode_stamped(buf: &[u8], psk: &[u8]) -> Result<(Message, u64), DecodeError> {
        if buf.len() < MP_HDR_LEN + 1 + STAMP_LEN + TAG_LEN {
            return Err(DecodeError::Malformed("too short"));
        }
        let hdr: MpHeader = bytemuck::pod_read_unaligned(&buf[..MP_HDR_LEN]);
        if hdr.version != VERSION || hdr.kind != KIND_CONTROL {
            return Err(DecodeError::Malformed("not a control message of this version"));
        }
        let (signed, t) = buf.split_at(buf.len() - TAG_LEN);
        let ty = signed[MP_HDR_LEN];
        let mut mac = HmacSha256::new_from_slice(psk).expect("HMAC takes any key length");
        mac.update(signed);
        // Only a REJECT for a failed authentication passes unverified: it
        // answers a client whose key differs, which could not check a tag.
        // Every other REJECT (unknown connection, no room) must verify, or
        // anyone could make a client drop its connection.
        let auth_failed_reject =
            ty == T_REJECT && signed.get(MP_HDR_LEN + 1) == Some(&(RejectReason::AuthFailed as u8));
        if mac.verify_slice(t).is_err() && !auth_failed_reject {
            return Err(DecodeError::BadTag);
        }
        let (signed, stamp) = signed.split_at(signed.len() - STAMP_LEN);
        let stamp = u64::from_be_bytes(stamp.try_into().expect("STAMP_LEN bytes"));
        let mut r = Reader { b: &signed[MP_HDR_LEN + 1..] };
        let body = match ty {
            T_HELLO => {
                let join = r.u8()? != 0;
                let nonce_c = r.u64()?;
                let key_c = r.u64()?;
                let path = PathHint::decode(&mut r)?;
                let n = r.u8()? as usize;
                if n > MAX_PREFIXES {
                    return Err(DecodeError::Malformed("too many prefixes"));
                }
                let mut prefixes = Vec::with_capacity(n);
                for _ in 0..n {
                    let fam = r.u8()?;
                    let len = r.u8()?;
                    let p = match fam {
                        4 => IpNet::new(IpAddr::from(<[u8; 4]>::try_from(r.take(4)?).unwrap()), len),
                        6 => IpNet::new(IpAddr::from(<[u8; 16]>::try_from(r.take(16)?).unwrap()), len),
                        _ => return Err(DecodeError::Malformed("bad prefix family")),
                    };
                    prefixes.push(p.map_err(|_| DecodeError::Malformed("bad prefix length"))?);
                }
                Body::Hello { join, nonce_c, key_c, path, prefixes }
            }
            T_CHALLENGE => Body::Challenge { nonce_c: r.u64()?, nonce_s: r.u64()?, key_s: r.u64()? },
            T_PROOF => Body::Proof { nonce_c: r.u64()?, nonce_s: r.u64()? },
            T_ACCEPT => Body::Accept { nonce_c: r.u64()?, nonce_s: r.u64()? },
            T_REJECT => {
                let reason = RejectReason::from_u8(r.u8()?).ok_or(DecodeError::Malformed("bad reject reason"))?;
                Body::Reject { reason, nonce_c: r.u64()? }
            }
            T_PROBE => Body::Probe {
                seq: r.u32()?,
                sent_us: r.u64()?,
                srtt_us: r.u32()?,
                min_rtt_us: r.u32()?,
                interval_ms: r.u32()?,
                bond_mtu: r.u32()?,
                rx: RxReport::decode(&mut r)?,
            },
            T_PROBE_ACK => {
                Body::ProbeAck { seq: r.u32()?, sent_us: r.u64()?, acked_us: r.u64()?, rx: RxReport::decode(&mut r)? }
            }
            T_HINT => Body::Hint { path: PathHint::decode(&mut r)? },
            T_MTU_PROBE => {
                let (round, size, pad) = (r.u32()?, r.u16()?, r.u16()?);
                r.take(pad as usize)?;
                Body::MtuProbe { round, size, pad }
            }
            T_MTU_ACK => {
                let (round, size, pad) = (r.u32()?, r.u16()?, r.u16()?);
                r.take(pad as usize)?;
                Body::MtuAck { round, size, pad }
            }
            T_RATE_PROBE => {
                let (train, index, count, sent_ns, pad) = (r.u32()?, r.u8()?, r.u8()?, r.u32()?, r.u16()?);
                r.take(pad as usize)?;
                Body::RateProbe { train, index, count, sent_ns, pad }
            }
            T_RATE_ACK => Body::RateAck { train: r.u32()?, bytes: r.u32()?, span_us: r.u32()? },
            _ => return Err(DecodeError::Malformed("unknown message type")),
        };
        if !r.b.is_empty() {
            return Err(DecodeError::Malformed("trailing bytes"));
        }
        Ok((Message { token: hdr.token(), subflow_id: hdr.subflow_id, body }, stamp))
    }
}

/// A sender's stamps: its monotonic clock in µs, made strictly increasing
/// (a restarted controller's continue above the previous one's, as the
/// clock does).
#[derive(Debug, Default)]
pub struct Stamps {
    last: std::cell::Cell<u64>,
}

impl Stamps {
    /// The next stamp: later than every one before, `now_us` if it is.
    pub fn next(&self, now_us: u64) -> u64 {
        let s = now_us.max(self.last.get() + 1);
        self.last.set(s);
        s
    }
}

/// A receiver's view of one subflow's stamps: a message is fresh when its
/// stamp is above every one acted on before. One path delivers a sender's
/// messages in order, so nothing genuine is lost by it; a message replayed,
/// however late, is refused. Reset with the subflow (a new connection or
/// JOIN starts from nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    latest: u64,
}

impl Freshness {
    /// Whether a message stamped `stamp` is fresh; if so it becomes the latest.
    pub fn accept(&mut self, stamp: u64) -> bool {
        if stamp <= self.latest {
            return false;
        }
        self.latest = stamp;
        true
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Malformed("truncated body"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
}

/// The client nonce of a HELLO that failed authentication, read without
/// trusting anything else in it: only to address the REJECT that tells a
/// client with the wrong key so.
pub fn unverified_hello_nonce(buf: &[u8]) -> Option<u64> {
    let body = buf.get(MP_HDR_LEN..)?;
    if body.first() != Some(&T_HELLO) {
        return None;
    }
    // type, join flag, then the nonce.
    Some(u64::from_be_bytes(body.get(2..10)?.try_into().ok()?))
}

/// The token and subflow id a control message names, read without
/// verifying anything: only to tell whether it comes from a known subflow.
pub fn unverified_ids(buf: &[u8]) -> Option<(u32, u8)> {
    let hdr: MpHeader = bytemuck::pod_read_unaligned(buf.get(..MP_HDR_LEN)?);
    Some((hdr.token(), hdr.subflow_id))
}

/// The id a control header names its key by (so a concentrator serving
/// several clients knows whose key to check it with): the first 32 bits of
/// SHA-256 of a label and the key, never 0. It tells nothing of the key.
pub fn key_id(key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(b"mptcp-ebpf key id v1");
    h.update(key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]).max(1)
}

/// The key id a control message names, before anything is verified.
pub fn unverified_key_id(buf: &[u8]) -> Option<u32> {
    let hdr: MpHeader = bytemuck::pod_read_unaligned(buf.get(..MP_HDR_LEN)?);
    (hdr.kind == KIND_CONTROL).then(|| hdr.key_id())
}

/// Which end of a connection: its data keys are used the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Client,
    Concentrator,
}

/// The connection's data keys ([`mptcp_common::auth`]), as `end` uses them:
/// HMAC-SHA256, keyed by the pre-shared key, of a label, the token and both
/// sides' keys from the first subflow's handshake. Its first half tags what
/// the client sends, its second what the concentrator sends, so a packet
/// reflected back to its sender does not verify. Fresh per connection (the
/// concentrator draws `key_s` anew), and secret while the pre-shared key is.
pub fn data_keys(psk: &[u8], token: u32, key_c: u64, key_s: u64, end: End) -> ConnKeys {
    let mut mac = HmacSha256::new_from_slice(psk).expect("HMAC takes any key length");
    mac.update(b"mptcp-ebpf data keys v1");
    mac.update(&token.to_be_bytes());
    mac.update(&key_c.to_be_bytes());
    mac.update(&key_s.to_be_bytes());
    let d: [u8; 32] = mac.finalize().into_bytes().into();
    let half = |i: usize| DataKey::from_bytes(d[i * 16..i * 16 + 16].try_into().expect("16 bytes"));
    let (from_client, from_concentrator) = (half(0), half(1));
    match end {
        End::Client => ConnKeys { tx: from_client, rx: from_concentrator },
        End::Concentrator => ConnKeys { tx: from_concentrator, rx: from_client },
    }
}

/// The connection token both sides derive from the two keys (as MPTCP derives
/// its token from its keys): the first 32 bits of SHA-256(key_c ‖ key_s),
/// never 0.
pub fn derive_token(key_c: u64, key_s: u64) -> u32 {
    let mut h = Sha256::new();
    h.update(key_c.to_be_bytes());
    h.update(key_s.to_be_bytes());
    let d = h.finalize();
    let t = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    if t == 0 {
        1
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        let bodies = vec![
            Body::Hello {
                join: false,
                nonce_c: 1,
                key_c: 2,
                path: PathHint { priority: 3, backup: true, unused: false, rate_bytes_per_sec: 1_250_000, weight: 7 },
                prefixes: vec!["10.99.0.2/32".parse().unwrap(), "fd99::2/128".parse().unwrap()],
            },
            Body::Hello { join: true, nonce_c: 1, key_c: 0, path: PathHint::default(), prefixes: vec![] },
            Body::Challenge { nonce_c: 1, nonce_s: 3, key_s: 4 },
            Body::Proof { nonce_c: 1, nonce_s: 3 },
            Body::Accept { nonce_c: 1, nonce_s: 3 },
            Body::Reject { reason: RejectReason::AuthFailed, nonce_c: 9 },
            Body::Probe {
                seq: 7,
                sent_us: 123_456,
                srtt_us: 900,
                min_rtt_us: 800,
                interval_ms: 50,
                bond_mtu: 1352,
                rx: RxReport { bytes: 1 << 40, packets: 5, lost: 1, owd_us: 4_000_000_000, probe_owd_us: 3 },
            },
            Body::ProbeAck {
                seq: 7,
                sent_us: 123_456,
                acked_us: 654_321,
                rx: RxReport { bytes: 9, packets: 1, lost: 0, owd_us: 7, probe_owd_us: 8 },
            },
            Body::Hint {
                path: PathHint { priority: 1, backup: false, unused: true, rate_bytes_per_sec: 375_000, weight: 2 },
            },
            Body::MtuProbe { round: 3, size: 1400, pad: 1300 },
            Body::MtuAck { round: 3, size: 1400, pad: 1300 },
            Body::RateProbe { train: 4, index: 5, count: 24, sent_ns: 70_000, pad: 1100 },
            Body::RateAck { train: 4, bytes: 14_400, span_us: 5_760 },
        ];
        bodies.into_iter().map(|body| Message { token: 0xdead_beef, subflow_id: 2, body }).collect()
    }

    #[test]
    fn padded_mtu_messages_are_ip_packets_of_their_size() {
        for (v6, ip) in [(false, 20), (true, 40)] {
            for body in [Body::MtuProbe { round: 1, size: 1400, pad: 0 }, Body::MtuAck { round: 1, size: 1400, pad: 0 }]
            {
                let pad = mtu_pad(1400, v6);
                let body = match body {
                    Body::MtuProbe { round, size, .. } => Body::MtuProbe { round, size, pad },
                    Body::MtuAck { round, size, .. } => Body::MtuAck { round, size, pad },
                    other => other,
                };
                let m = Message { token: 1, subflow_id: 0, body };
                assert_eq!(m.encode(b"k").len() + ip + 8, 1400, "v6 {v6}");
            }
        }
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            assert_eq!(Message::decode(&m.encode(b"secret-key"), b"secret-key"), Ok(m));
        }
    }

    #[test]
    fn wrong_key_is_refused_except_for_the_reject_that_says_so() {
        for m in all() {
            let r = Message::decode(&m.encode(b"secret-key"), b"other-key");
            if matches!(m.body, Body::Reject { reason: RejectReason::AuthFailed, .. }) {
                assert!(r.is_ok());
            } else {
                assert_eq!(r, Err(DecodeError::BadTag), "{m:?}");
            }
        }
        // A forged "unknown connection" would make a client drop its connection.
        let forged =
            Message { token: 1, subflow_id: 0, body: Body::Reject { reason: RejectReason::UnknownToken, nonce_c: 7 } };
        assert_eq!(Message::decode(&forged.encode(b"other-key"), b"secret-key"), Err(DecodeError::BadTag));
    }

    #[test]
    fn a_rate_probe_is_an_ip_packet_of_its_size() {
        for (v6, ip) in [(false, 20), (true, 40)] {
            let pad = rate_probe_pad(1200, v6);
            let m = Message {
                token: 1,
                subflow_id: 0,
                body: Body::RateProbe { train: 1, index: 0, count: 24, sent_ns: 0, pad },
            };
            assert_eq!(m.encode(b"k").len() + ip + 8, 1200, "v6 {v6}");
        }
    }

    #[test]
    fn an_mtu_probe_is_as_long_as_it_says() {
        let m = Message { token: 1, subflow_id: 0, body: Body::MtuProbe { round: 1, size: 1400, pad: 100 } };
        assert_eq!(m.encode(b"k").len(), MTU_PROBE_LEN + 100);
    }

    #[test]
    fn tampering_is_detected() {
        let m = Message { token: 5, subflow_id: 1, body: Body::Proof { nonce_c: 1, nonce_s: 2 } };
        let mut b = m.encode(b"k");
        b[MP_HDR_LEN + 3] ^= 1;
        assert_eq!(Message::decode(&b, b"k"), Err(DecodeError::BadTag));
        assert!(matches!(Message::decode(&b[..10], b"k"), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn a_hello_with_the_wrong_key_still_names_its_nonce() {
        let hello = Body::Hello { join: false, nonce_c: 0x1234, key_c: 5, path: PathHint::default(), prefixes: vec![] };
        let b = Message { token: 0, subflow_id: 0, body: hello }.encode(b"other-key");
        assert_eq!(unverified_hello_nonce(&b), Some(0x1234));
        let proof = Message { token: 0, subflow_id: 0, body: Body::Proof { nonce_c: 1, nonce_s: 2 } }.encode(b"k");
        assert_eq!(unverified_hello_nonce(&proof), None);
        assert_eq!(unverified_hello_nonce(&b[..MP_HDR_LEN + 4]), None);
    }

    mod fuzz {
        //! Property targets for the decoder: whatever arrives on the control
        //! port, decoding ends in a message or an error, never a panic, and
        //! only an intact message under the right key decodes.
        use super::*;
        use proptest::prelude::*;

        const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

        fn prefix() -> impl Strategy<Value = IpNet> {
            prop_oneof![
                (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap()),
                (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap()),
            ]
        }

        fn hint() -> impl Strategy<Value = PathHint> {
            (any::<u32>(), any::<(bool, bool)>(), any::<u64>(), any::<u32>()).prop_map(
                |(priority, (backup, unused), rate, weight)| PathHint {
                    priority,
                    backup,
                    unused,
                    rate_bytes_per_sec: rate,
                    weight,
                },
            )
        }

        fn rx() -> impl Strategy<Value = RxReport> {
            any::<(u64, u64, u64, u32, u32)>().prop_map(|(bytes, packets, lost, owd_us, probe_owd_us)| RxReport {
                bytes,
                packets,
                lost,
                owd_us,
                probe_owd_us,
            })
        }

        fn reason() -> impl Strategy<Value = RejectReason> {
            prop_oneof![
                Just(RejectReason::AuthFailed),
                Just(RejectReason::UnknownToken),
                Just(RejectReason::Full),
                Just(RejectReason::UnknownSubflow),
            ]
        }

        /// Every kind of message, with any field values.
        fn body() -> impl Strategy<Value = Body> {
            prop_oneof![
                (any::<(bool, u64, u64)>(), hint(), proptest::collection::vec(prefix(), 0..=MAX_PREFIXES)).prop_map(
                    |((join, nonce_c, key_c), path, prefixes)| Body::Hello { join, nonce_c, key_c, path, prefixes }
                ),
                any::<(u64, u64, u64)>().prop_map(|(nonce_c, nonce_s, key_s)| Body::Challenge {
                    nonce_c,
                    nonce_s,
                    key_s
                }),
                any::<(u64, u64)>().prop_map(|(nonce_c, nonce_s)| Body::Proof { nonce_c, nonce_s }),
                any::<(u64, u64)>().prop_map(|(nonce_c, nonce_s)| Body::Accept { nonce_c, nonce_s }),
                (reason(), any::<u64>()).prop_map(|(reason, nonce_c)| Body::Reject { reason, nonce_c }),
                (any::<(u32, u64, u32, u32, u32, u32)>(), rx()).prop_map(
                    |((seq, sent_us, srtt_us, min_rtt_us, interval_ms, bond_mtu), rx)| Body::Probe {
                        seq,
                        sent_us,
                        srtt_us,
                        min_rtt_us,
                        interval_ms,
                        bond_mtu,
                        rx
                    }
                ),
                (any::<(u32, u64, u64)>(), rx()).prop_map(|((seq, sent_us, acked_us), rx)| Body::ProbeAck {
                    seq,
                    sent_us,
                    acked_us,
                    rx
                }),
                hint().prop_map(|path| Body::Hint { path }),
                (any::<(u32, u16)>(), 0u16..2000).prop_map(|((round, size), pad)| Body::MtuProbe { round, size, pad }),
                (any::<(u32, u16)>(), 0u16..2000).prop_map(|((round, size), pad)| Body::MtuAck { round, size, pad }),
                (any::<(u32, u8, u8, u32)>(), 0u16..2000).prop_map(|((train, index, count, sent_ns), pad)| {
                    Body::RateProbe { train, index, count, sent_ns, pad }
                }),
                any::<(u32, u32, u32)>().prop_map(|(train, bytes, span_us)| Body::RateAck { train, bytes, span_us }),
            ]
        }

        fn message() -> impl Strategy<Value = Message> {
            (any::<u32>(), any::<u8>(), body()).prop_map(|(token, subflow_id, body)| Message {
                token,
                subflow_id,
                body,
            })
        }

        /// A REJECT for a failed authentication, which is read unverified.
        fn unverified(m: &Message) -> bool {
            matches!(m.body, Body::Reject { reason: RejectReason::AuthFailed, .. })
        }

        /// Cases per target: `MPTCP_FUZZ_CASES` (`cargo xtask fuzz` sets it),
        /// else a bounded run for the test suite.
        fn cases() -> u32 {
            std::env::var("MPTCP_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(cases()))]

            #[test]
            fn any_message_round_trips(m in message(), stamp in any::<u64>()) {
                prop_assert_eq!(Message::decode_stamped(&m.encode_stamped(KEY, stamp), KEY), Ok((m, stamp)));
            }

            #[test]
            fn random_bytes_never_decode_under_the_key(b in proptest::collection::vec(any::<u8>(), 0..1600)) {
                if let Ok(m) = Message::decode(&b, KEY) {
                    // Only the one unverified kind may, and only as itself.
                    prop_assert!(unverified(&m), "{:?}", m);
                }
                let _ = unverified_hello_nonce(&b);
                let _ = unverified_ids(&b);
                let _ = unverified_key_id(&b);
            }

            #[test]
            fn a_truncated_message_is_refused(m in message(), cut in any::<prop::sample::Index>()) {
                let b = m.encode(KEY);
                let n = cut.index(b.len());
                prop_assert!(Message::decode(&b[..n], KEY).is_err());
                let _ = unverified_hello_nonce(&b[..n]);
            }

            #[test]
            fn a_changed_byte_is_refused_or_is_the_unverified_reject(
                m in message(),
                at in any::<prop::sample::Index>(),
                flip in 1u8..=255,
            ) {
                let mut b = m.encode(KEY);
                let i = at.index(b.len());
                b[i] ^= flip;
                match Message::decode(&b, KEY) {
                    Err(_) => {}
                    // A flip may make any message that REJECT, read unverified
                    // by design (a client with the wrong key learns so).
                    Ok(got) => prop_assert!(unverified(&got), "{:?} became {:?}", m, got),
                }
            }

            #[test]
            fn another_key_is_refused(m in message(), other in proptest::collection::vec(any::<u8>(), 16..64)) {
                prop_assume!(other != KEY);
                let r = Message::decode(&m.encode(&other), KEY);
                prop_assert!(r.is_err() || unverified(&m), "{:?}", r);
            }
        }
    }

    #[test]
    fn stamps_only_grow_and_a_stamp_is_acted_on_once() {
        let stamps = Stamps::default();
        let a = stamps.next(1_000);
        let b = stamps.next(1_000); // the clock did not move
        let c = stamps.next(900); // nor forwards (never happens; still later)
        let d = stamps.next(5_000);
        assert!(a < b && b < c && c < d && d == 5_000, "{a} {b} {c} {d}");
        let mut f = Freshness::default();
        assert!(f.accept(b) && f.accept(d));
        assert!(!f.accept(d), "the same again: a replay");
        assert!(!f.accept(c), "an older one: a replay");
        assert!(f.accept(d + 1));
        // The stamp travels authenticated: changing it breaks the tag.
        let m = Message { token: 1, subflow_id: 0, body: Body::Hint { path: PathHint::default() } };
        let mut bytes = m.encode_stamped(b"k", 77);
        assert_eq!(Message::decode_stamped(&bytes, b"k"), Ok((m, 77)));
        let at = bytes.len() - TAG_LEN - 1;
        bytes[at] ^= 1;
        assert_eq!(Message::decode_stamped(&bytes, b"k"), Err(DecodeError::BadTag));
    }

    #[test]
    fn token_is_stable_and_nonzero() {
        assert_eq!(derive_token(1, 2), derive_token(1, 2));
        // Data keys: each end's tx is the other's rx; the two directions,
        // the pre-shared key and every handshake input make other keys.
        let (c, s) = (data_keys(b"k", 7, 1, 2, End::Client), data_keys(b"k", 7, 1, 2, End::Concentrator));
        assert!(c.tx == s.rx && c.rx == s.tx && c.tx != c.rx);
        for other in [data_keys(b"K", 7, 1, 2, End::Client), data_keys(b"k", 8, 1, 2, End::Client)] {
            assert!(other.tx != c.tx && other.rx != c.rx);
        }
        for other in [data_keys(b"k", 7, 3, 2, End::Client), data_keys(b"k", 7, 1, 3, End::Client)] {
            assert!(other.tx != c.tx && other.rx != c.rx);
        }
        assert_ne!(derive_token(1, 2), derive_token(2, 1));
        assert_ne!(derive_token(0, 0), 0);
    }
}
