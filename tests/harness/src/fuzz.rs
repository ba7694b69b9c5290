//! The packet fuzzer: generated and mutated packets through the real
//! programs on BPF_PROG_TEST_RUN, each verdict, output packet and drop
//! counter compared with a host reference built from the same
//! `mptcp-common` functions over a model of the maps: the XDP ingress
//! ([`uplink::parse`], [`uplink::accept`], [`mss_rewrite`] over
//! [`ModelRx`]) and the tc egress with the encapsulation it tail-calls
//! ([`inner::connection`], [`mss_rewrite`], [`inner::packet_meta`],
//! [`classify`], [`decide`] over [`ModelTx`]).
//!
//! What the comparison finds is where the kernel's run of that code parts
//! from the host's: a read the verifier's shape got wrong, a map the
//! program uses differently from the model, a helper that does more than
//! the code says. On top, two properties hold whatever the code says: only
//! headers the peer sealed are ever delivered, and a subflow sequence
//! number at most as often as the peer's headers with it say (GSO segments
//! share one header; a captured one replayed is refused).

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context, Result};
use mptcp_common::auth::{self, DataKey};
use mptcp_common::checksum::replace16;
use mptcp_common::classify::{classify, ClassRule, DEFAULT_CLASS, IPPROTO_UDP};
use mptcp_common::dedup::{dedup_check, dedup_slot, Dedup, DEDUP_SLOTS};
use mptcp_common::headers::{EthHdr, TCP_SYN};
use mptcp_common::inner::{self, InnerAddr};
use mptcp_common::maps::{
    names, Bucket, FlowKey, OuterTemplate, PathState, RxSeq, Settings, SubflowKey, SubflowStats, TxState, MAX_SUBFLOWS,
};
use mptcp_common::mtu::{mss_rewrite, MssRewrite};
use mptcp_common::packet::PacketBytes;
use mptcp_common::policy::{decide, ConnectionPaths, FlowletEntry, SchedState};
use mptcp_common::seq::{rx_seq_update, SeqEvent};
use mptcp_common::uplink::{self, RxState};
use mptcp_common::wire::wire_len;
use mptcp_common::wire::{
    MpHeader, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6, FLAG_REPLICATED, IPV4_HLEN, IPV6_HLEN, MP_HDR_LEN,
    UDP_HLEN,
};
use mptcp_common::{template, ClassPolicy, DropReason, Policy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::*;

/// The bond MTU the fuzzed programs clamp SYNs to.
const BOND_MTU: u32 = 1452;
/// The largest packet generated (XDP's test run takes up to a page less
/// headroom).
const MAX_LEN: usize = 1600;

/// The receive state as the fixture installs it ([`Fixture::rx_subflow`]),
/// and as [`uplink::accept`] changes it.
#[derive(Default)]
pub struct ModelRx {
    client: bool,
    tuples: HashMap<FlowKey, SubflowKey>,
    keys: HashMap<u32, DataKey>,
    /// Exact inner sources (the fixture's /32 and /128) and their token.
    owners: HashMap<InnerAddr, u32>,
    seq: HashMap<SubflowKey, RxSeq>,
    dedup: HashMap<u32, Vec<u64>>,
    pub stats: HashMap<SubflowKey, SubflowStats>,
}

impl RxState for ModelRx {
    fn subflow(&self, key: &FlowKey) -> Option<SubflowKey> {
        self.tuples.get(key).copied()
    }
    fn rx_key(&self, token: u32) -> Option<DataKey> {
        self.keys.get(&token).copied()
    }
    fn checks_sources(&self) -> bool {
        !self.client
    }
    fn owner(&self, src: &InnerAddr) -> Option<u32> {
        self.owners.get(src).copied()
    }
    fn seq_update(&mut self, sk: SubflowKey, seq: u64, segs: u32) -> Option<SeqEvent> {
        self.seq.get_mut(&sk).map(|s| rx_seq_update(s, seq, segs))
    }
    fn account(&mut self, sk: SubflowKey, wire_len: u64, event: SeqEvent, _hdr: &MpHeader) {
        let s = self.stats.entry(sk).or_default();
        s.rx_packets += 1;
        s.rx_bytes += wire_len;
        match event {
            SeqEvent::Gap(n) => s.rx_gaps += n as u64,
            SeqEvent::Late => s.rx_late += 1,
            _ => {}
        }
    }
    fn first_copy(&mut self, token: u32, dsn: u32, subflow: u8) -> Result<(), DropReason> {
        let Some(w) = self.dedup.get_mut(&token) else { return Ok(()) };
        let slot = &mut w[dedup_slot(dsn)];
        match dedup_check(*slot, dsn, subflow) {
            Dedup::Again => Ok(()),
            Dedup::Duplicate => Err(DropReason::Duplicate),
            Dedup::Stale => Err(DropReason::StaleCopy),
            Dedup::Claim(new) => {
                *slot = new;
                Ok(())
            }
        }
    }
}

/// What the XDP program should make of a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// XDP_PASS with this packet (the input, or the inner packet behind an
    /// Ethernet header).
    Pass(Vec<u8>),
    /// XDP_DROP, counted under this reason.
    Drop(DropReason),
}

/// The host reference of `uplink_ingress`: the same parse, acceptance and
/// clamp, then the decapsulation XDP does.
pub fn reference_ingress(p: &[u8], settings: &Settings, rx: &mut ModelRx) -> Verdict {
    let Some(eth) = p.read::<EthHdr>(0) else { return Verdict::Pass(p.to_vec()) };
    let family = match eth.proto() {
        ETH_P_IP => FAMILY_V4,
        ETH_P_IPV6 => FAMILY_V6,
        _ => return Verdict::Pass(p.to_vec()),
    };
    let d = match uplink::parse::<_, ETH_HLEN>(p, family, settings) {
        Ok(Some(d)) => d,
        Ok(None) => return Verdict::Pass(p.to_vec()),
        Err(r) => return Verdict::Drop(r),
    };
    let proto = match uplink::accept(rx, &d, p.len() as u64) {
        Ok(proto) => proto,
        Err(r) => return Verdict::Drop(r),
    };
    let mut out = bytemuck::bytes_of(&EthHdr::new(eth.dst, eth.src, proto)).to_vec();
    out.extend_from_slice(&p[ETH_HLEN + d.outer_len..]);
    if let Some(r) = mss_rewrite(&out[..], ETH_HLEN, proto, settings.bond_mtu) {
        rewrite_mss(&mut out, r);
    }
    Verdict::Pass(out)
}

/// Write the clamp's MSS into `p`, keeping the TCP checksum valid, as the
/// programs do.
fn rewrite_mss(p: &mut [u8], r: MssRewrite) {
    let check = u16::from_be_bytes([p[r.check_off], p[r.check_off + 1]]);
    let sum = replace16(check, u16::from_be(r.old), r.new);
    p[r.check_off..r.check_off + 2].copy_from_slice(&sum.to_be_bytes());
    p[r.off..r.off + 2].copy_from_slice(&r.new.to_be_bytes());
}

/// Where a generated packet's multipath header sits, if it has one where
/// its outer family puts it.
fn header_at(p: &[u8]) -> Option<usize> {
    let l3 = match p.read::<EthHdr>(0)?.proto() {
        ETH_P_IP => IPV4_HLEN,
        ETH_P_IPV6 => IPV6_HLEN,
        _ => return None,
    };
    let at = ETH_HLEN + l3 + UDP_HLEN;
    (p.len() >= at + MP_HDR_LEN).then_some(at)
}

/// The packet generator: valid data packets as the peer sends them, and
/// every kind of damage done to them.
pub struct Generator {
    rng: StdRng,
    /// The next subflow sequence number and DSN the peer uses (subflow 1's
    /// crosses 32 bits early on).
    seq: [u64; 2],
    dsn: u32,
    /// Packets sent before, to replay.
    sent: Vec<Vec<u8>>,
    /// Sequence numbers a gap skipped, per subflow, to send late.
    skipped: Vec<(u8, u64)>,
    /// The other copy of a redundant packet, sent next.
    copies: Vec<Vec<u8>>,
    /// Every header the peer sealed (what may be delivered).
    pub sealed: HashSet<[u8; MP_HDR_LEN]>,
    /// Per (subflow, 48-bit sequence number), the most packets a sealed
    /// header with it said share it.
    pub allowed: HashMap<(u8, u64), u32>,
}

/// How a packet was made, for the report.
pub const KINDS: [&str; 12] = [
    "valid",
    "byte flips",
    "byte flips, resealed",
    "truncated",
    "extended",
    "other EtherType or VLAN",
    "IPv4 options or fragment",
    "IPv6 extension header",
    "header fields, resealed",
    "random bytes",
    "replayed",
    "other ports",
];

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            seq: [0, (1 << 32) - 20_000],
            dsn: 0,
            sent: vec![],
            skipped: vec![],
            copies: vec![],
            sealed: HashSet::new(),
            allowed: HashMap::new(),
        }
    }

    /// A data packet as the peer sends it on subflow 0 (IPv4 outer) or 1
    /// (IPv6 outer), sealed, with the next numbers; now and then one copy
    /// of a redundant packet on each subflow (the second comes next).
    pub fn valid(&mut self) -> Vec<u8> {
        if let Some(p) = self.copies.pop() {
            return p;
        }
        let mss = self.rng.gen_range(500..9000);
        let inner = match self.rng.gen_range(0..7) {
            0 => inner_v4([10, 200, 0, 2]),
            1 => inner_v6(),
            2 => tcp_v4([10, 200, 0, 2], TCP_SYN, &mss_first(mss)),
            3 => tcp_v6(TCP_SYN, &mss_last(mss)),
            4 => udp_v4([10, 200, 0, 2], 4000, 5201),
            5 => tcp_v4([10, 200, 0, 2], 0x10, &[]),
            _ => {
                // An inner packet of random bytes from an own or a foreign source.
                let n = self.rng.gen_range(1..600);
                let mut b: Vec<u8> = (0..n).map(|_| self.rng.gen()).collect();
                b[0] = if self.rng.gen() { 0x45 } else { 0x60 };
                if self.rng.gen_bool(0.7) && b.len() >= 24 {
                    if b[0] == 0x45 {
                        b[12..16].copy_from_slice(&SRC4);
                    } else if b.len() >= 40 {
                        b[8..24].copy_from_slice(&SRC6);
                    }
                }
                b
            }
        };
        let segs = if self.rng.gen_bool(0.1) { self.rng.gen_range(2..5u16) } else { 1 };
        let dsn = self.dsn;
        self.dsn = self.dsn.wrapping_add(segs as u32);
        if self.rng.gen_bool(0.15) {
            let first = self.rng.gen_range(0..2u8);
            let copy = self.on_subflow(1 - first, dsn, segs, FLAG_REPLICATED, &inner);
            self.copies.push(copy);
            return self.on_subflow(first, dsn, segs, FLAG_REPLICATED, &inner);
        }
        let id = self.rng.gen_range(0..2u8);
        self.on_subflow(id, dsn, segs, 0, &inner)
    }

    /// The packet carrying `inner` on subflow `id`: the subflow's next
    /// sequence number, or now and then a gap (numbers skipped, as when
    /// packets are lost or overtaken), or a number skipped earlier (late).
    fn on_subflow(&mut self, id: u8, dsn: u32, segs: u16, flags: u8, inner: &[u8]) -> Vec<u8> {
        let t = if id == 0 { template::ipv4(CL4, CO4, PORT, PORT, 0) } else { template::ipv6(CL6, CO6, PORT, PORT, 0) };
        let next = &mut self.seq[id as usize];
        let seq = match self.rng.gen_range(0..20) {
            0 => {
                let gap = self.rng.gen_range(1..8);
                self.skipped.extend((0..gap).map(|k| (id, *next + k)));
                *next += gap;
                let seq = *next;
                *next += segs as u64;
                seq
            }
            1 if self.skipped.iter().any(|s| s.0 == id) => {
                let i = self.skipped.iter().rposition(|s| s.0 == id).expect("checked");
                self.skipped.swap_remove(i).1
            }
            _ => {
                let seq = *next;
                *next += segs as u64;
                seq
            }
        };
        let hdr = MpHeader::data(TOKEN, id, dsn, seq as u32, self.rng.gen())
            .with_seq_hi((seq >> 32) as u16)
            .with_flags(flags)
            .with_segs(segs);
        let p = encapsulated(&t, hdr, inner);
        self.note_sealed(&p);
        p
    }

    fn note_sealed(&mut self, p: &[u8]) {
        let Some(at) = header_at(p) else { return };
        let Some(h) = p.read::<MpHeader>(at) else { return };
        self.sealed.insert(p[at..at + MP_HDR_LEN].try_into().expect("header length"));
        let n = self.allowed.entry((h.subflow_id, h.subflow_seq48())).or_default();
        *n = (*n).max(h.segs().max(1));
    }

    /// Seal the header of `p` again, as the peer would have made it.
    fn reseal(&mut self, p: &mut [u8]) {
        let Some(at) = header_at(p) else { return };
        // A peer's numbers stay below 2^47 (bits 32..48 at most 0x7fff):
        // one that followed a jump to the top of the 48 bits would wrap
        // to 0 and stay behind the receiver's window for the rest of the run.
        p[at + 22] &= 0x7f;
        let Some(h) = p.read::<MpHeader>(at) else { return };
        let h = auth::seal(&KEYS.rx, h);
        p[at..at + MP_HDR_LEN].copy_from_slice(bytemuck::bytes_of(&h));
        self.note_sealed(p);
        // A peer that numbered this far ahead goes on from there (else every
        // later packet would be older than the receiver's window).
        if let Some(next) = self.seq.get_mut(h.subflow_id as usize) {
            if h.subflow_seq48() >= *next {
                *next = h.subflow_seq48() + h.segs().max(1) as u64;
            }
        }
    }

    /// One packet, and which of [`KINDS`] made it.
    pub fn packet(&mut self) -> (Vec<u8>, usize) {
        let kind = match self.rng.gen_range(0..100) {
            0..=19 => 0,
            20..=34 => 1,
            35..=44 => 2,
            45..=54 => 3,
            55..=59 => 4,
            60..=63 => 5,
            64..=69 => 6,
            70..=74 => 7,
            75..=84 => 8,
            85..=89 => 9,
            90..=94 => 10,
            _ => 11,
        };
        let mut p = if kind == 10 && !self.sent.is_empty() {
            self.sent[self.rng.gen_range(0..self.sent.len())].clone()
        } else {
            self.valid()
        };
        match kind {
            1 | 2 => {
                for _ in 0..self.rng.gen_range(1..5) {
                    let i = self.rng.gen_range(0..p.len());
                    p[i] ^= self.rng.gen_range(1..=255u8);
                }
                if kind == 2 {
                    self.reseal(&mut p);
                }
            }
            3 => p.truncate(self.rng.gen_range(ETH_HLEN..p.len())),
            4 => p.extend((0..self.rng.gen_range(1..200)).map(|_| self.rng.gen::<u8>())),
            5 => {
                let proto: u16 = match self.rng.gen_range(0..4) {
                    0 => 0x8100,
                    1 => 0x88a8,
                    2 => 0x0806,
                    _ => self.rng.gen(),
                };
                if self.rng.gen() {
                    p[12..14].copy_from_slice(&proto.to_be_bytes());
                } else {
                    // A VLAN tag in front of the real EtherType.
                    p.splice(12..12, [0x81, 0x00, 0x00, self.rng.gen()]);
                }
            }
            6 if p[12..14] == ETH_P_IP.to_be_bytes() => {
                if self.rng.gen() {
                    // Options: a longer header, its words inserted.
                    let words = self.rng.gen_range(1..=10usize);
                    p[ETH_HLEN] = 0x40 | (5 + words as u8);
                    let opts: Vec<u8> = (0..words * 4).map(|_| self.rng.gen()).collect();
                    p.splice(ETH_HLEN + IPV4_HLEN..ETH_HLEN + IPV4_HLEN, opts);
                } else {
                    // A fragment: more fragments, or an offset.
                    let frag: u16 = if self.rng.gen() { 0x2000 } else { self.rng.gen_range(1..0x2000) };
                    p[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&frag.to_be_bytes());
                }
            }
            7 if p[12..14] == ETH_P_IPV6.to_be_bytes() => {
                // An extension header (hop-by-hop, routing, fragment,
                // destination options) in front of UDP.
                let next = [0u8, 43, 44, 60][self.rng.gen_range(0..4)];
                p[ETH_HLEN + 6] = next;
                let mut ext = vec![17u8, 0, 0, 0, 0, 0, 0, 0];
                ext[2..].iter_mut().for_each(|b| *b = self.rng.gen());
                p.splice(ETH_HLEN + IPV6_HLEN..ETH_HLEN + IPV6_HLEN, ext);
            }
            8 => {
                // Any header field, as the peer might seal it (or nobody).
                if let Some(at) = header_at(&p) {
                    p[at + self.rng.gen_range(0..24)] = self.rng.gen();
                    if self.rng.gen_bool(0.8) {
                        self.reseal(&mut p);
                    }
                }
            }
            9 => {
                let n = self.rng.gen_range(ETH_HLEN..MAX_LEN);
                let keep = self.rng.gen_range(0..=ETH_HLEN + IPV6_HLEN + UDP_HLEN).min(p.len());
                let tail: Vec<u8> = (0..n).map(|_| self.rng.gen()).collect();
                p.truncate(keep);
                p.extend(tail);
            }
            11 => {
                let at = match p[12..14] == ETH_P_IP.to_be_bytes() {
                    true => ETH_HLEN + IPV4_HLEN,
                    false => ETH_HLEN + IPV6_HLEN,
                };
                let i = at + self.rng.gen_range(0..4);
                p[i] = self.rng.gen();
            }
            _ => {}
        }
        p.truncate(MAX_LEN);
        if kind == 0 && self.sent.len() < 4096 {
            self.sent.push(p.clone());
        }
        (p, kind)
    }

    /// Every prefix of a few valid packets of each shape, from the
    /// Ethernet header on: truncation at every offset.
    pub fn every_prefix(&mut self) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for _ in 0..8 {
            let p = self.valid();
            out.extend((ETH_HLEN..=p.len()).map(|n| p[..n].to_vec()));
        }
        out
    }
}

/// The fuzz run's figures.
#[derive(Debug, Default)]
pub struct Report {
    pub packets: u64,
    /// Of them, prefixes of valid packets.
    pub prefixes: u64,
    pub by_kind: [u64; KINDS.len()],
    pub passed_untouched: u64,
    pub delivered: u64,
    pub drops: HashMap<&'static str, u64>,
    pub seconds: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} packets through uplink_ingress in {:.1} s, every verdict as the host reference's",
            self.packets, self.seconds
        )?;
        writeln!(
            f,
            "  made as: every prefix of 8 valid packets {}, {}",
            self.prefixes,
            KINDS.iter().zip(self.by_kind).map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
        )?;
        let drops = by_name(&self.drops);
        write!(
            f,
            "  verdicts: passed untouched {}, delivered {}, dropped: {drops}",
            self.passed_untouched, self.delivered
        )
    }
}

/// Counts by name, sorted: "bad-header 3, forged 5".
fn by_name(counts: &HashMap<&'static str, u64>) -> String {
    let mut v: Vec<_> = counts.iter().collect();
    v.sort();
    v.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

/// Run `packets` generated packets (plus every prefix of a few valid ones)
/// through the XDP program of a concentrator's fixture, comparing each with
/// the reference; the second half as a client's.
pub fn fuzz_ingress(packets: u64, seed: u64) -> Result<Report> {
    let start = std::time::Instant::now();
    let mut f = Fixture::new()?;
    let mut rx = ModelRx::default();
    let k6 = FlowKey { remote: CL6, local: CO6, remote_port: PORT, local_port: PORT, family: FAMILY_V6, _pad: [0; 3] };
    for (id, key) in [(0, v4_key(PORT)), (1, k6)] {
        f.rx_subflow(key, id)?;
        let sk = SubflowKey { token: TOKEN, subflow_id: id };
        rx.tuples.insert(key, sk);
        rx.seq.insert(sk, RxSeq::default());
    }
    rx.keys.insert(TOKEN, KEYS.rx);
    rx.owners.insert(InnerAddr::v4(SRC4), TOKEN);
    rx.owners.insert(InnerAddr::v6(SRC6), TOKEN);
    rx.dedup.insert(TOKEN, vec![0; DEDUP_SLOTS]);
    f.set_bond_mtu(BOND_MTU)?;
    let mut settings = Settings { port: PORT, n_rules: 0, uplink_mtu: 1500, bond_mtu: BOND_MTU, client: 0, debug: 0 };

    let mut g = Generator::new(seed);
    let mut report = Report::default();
    let prefixes = g.every_prefix();
    let mut counted = [0u64; DropReason::COUNT as usize];
    let mut delivered: HashMap<(u8, u64), u32> = HashMap::new();
    let mut history: HashMap<(u8, u64), Vec<String>> = HashMap::new();
    let mut run = |f: &mut Fixture, p: Vec<u8>, settings: &Settings, rx: &mut ModelRx, g: &Generator| -> Result<()> {
        let want = reference_ingress(&p, settings, rx);
        let before = match &want {
            Verdict::Drop(r) => f.drops(*r)?,
            Verdict::Pass(_) => 0,
        };
        let (verdict, out) = f.run_xdp(&p)?;
        let got = match verdict {
            XDP_PASS => Verdict::Pass(out),
            XDP_DROP => match &want {
                Verdict::Drop(r) if f.drops(*r)? == before + 1 => Verdict::Drop(*r),
                _ => bail!("dropped, but not counted as {want:?}"),
            },
            v => bail!("verdict {v}"),
        };
        if got != want {
            bail!("the kernel made {got:?} of {p:02x?}; the reference {want:?}");
        }
        match want {
            Verdict::Pass(out) if out != p => {
                // Delivered: the peer sealed this header.
                let at = header_at(&p).expect("a delivered packet has a header");
                let h: [u8; MP_HDR_LEN] = p[at..at + MP_HDR_LEN].try_into()?;
                if !g.sealed.contains(&h) {
                    bail!("delivered a header the peer never sealed: {p:02x?}");
                }
                let hdr: MpHeader = bytemuck::pod_read_unaligned(&h);
                let id = (hdr.subflow_id, hdr.subflow_seq48());
                let n = delivered.entry(id).or_default();
                *n += 1;
                history.entry(id).or_default().push(format!("{hdr:?}"));
                if *n > g.allowed[&id] {
                    bail!(
                        "delivered {n} packets numbered {id:?}, sealed for {}: {p:02x?} {:#?}",
                        g.allowed[&id],
                        history[&id]
                    );
                }
                report.delivered += 1;
            }
            Verdict::Pass(_) => report.passed_untouched += 1,
            Verdict::Drop(r) => {
                counted[r as usize] += 1;
                *report.drops.entry(r.name()).or_default() += 1;
            }
        }
        report.packets += 1;
        Ok(())
    };
    let n_prefixes = prefixes.len() as u64;
    for p in prefixes {
        run(&mut f, p, &settings, &mut rx, &g)?;
    }
    for i in 0..packets {
        if i == packets / 2 {
            // The second half as a client's data path: bond packets come
            // from the port, inner sources unchecked.
            f.set_client(true)?;
            settings.client = 1;
            rx.client = true;
        }
        let (p, kind) = g.packet();
        report.by_kind[kind] += 1;
        run(&mut f, p, &settings, &mut rx, &g)?;
    }
    // Nothing dropped without a reason, nothing counted twice, and each
    // subflow accounted as the reference accounted it.
    for r in DropReason::ALL {
        if f.drops(r)? != counted[r as usize] {
            bail!("{} counted {} times, the reference {}", r.name(), f.drops(r)?, counted[r as usize]);
        }
    }
    for id in 0..2 {
        let (got, want) = (f.stats(id)?, rx.stats.get(&SubflowKey { token: TOKEN, subflow_id: id }).copied());
        let want = want.unwrap_or_default();
        let fields = |s: &SubflowStats| (s.rx_packets, s.rx_bytes, s.rx_gaps, s.rx_late);
        if fields(&got) != fields(&want) {
            bail!("subflow {id} accounted {:?}, the reference {:?}", fields(&got), fields(&want));
        }
    }
    report.prefixes = n_prefixes;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The send side as [`fuzz_egress`] installs it: two subflows, classes and
/// the connection's counters, as the egress program changes them.
pub struct ModelTx {
    prefix_v4: (u32, [u8; 4]),
    templates: [OuterTemplate; 2],
    states: [PathState; 2],
    rules: Vec<ClassRule>,
    policies: [ClassPolicy; 2],
    dsn: u64,
    seq: [u64; 2],
}

/// What the egress program should make of a frame from the bond device.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Encapsulated on this subflow with these numbers, this inner packet.
    On {
        subflow: usize,
        dsn: u32,
        seq: u64,
        inner: Vec<u8>,
    },
    Drop(DropReason),
}

/// The host reference of `bond_egress` (and `bond_encap`), in its order:
/// the connection, the MSS clamp, the class and its policy's subflow, the
/// size check, the numbers.
pub fn reference_egress(p: &[u8], settings: &Settings, m: &mut ModelTx) -> Sent {
    let lpm4 = |a: [u8; 4]| {
        let bits = m.prefix_v4.0;
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        (u32::from_be_bytes(a) & mask == u32::from_be_bytes(m.prefix_v4.1) & mask).then_some(TOKEN)
    };
    let (proto, _token) = match inner::connection(p, lpm4, |_| Some(TOKEN)) {
        Ok(c) => c,
        Err(r) => return Sent::Drop(r),
    };
    let mut frame = p.to_vec();
    if let Some(r) = mss_rewrite(p, ETH_HLEN, proto, settings.bond_mtu) {
        rewrite_mss(&mut frame, r);
    }
    let inner_len = (p.len() - ETH_HLEN) as u32;
    let mut class = DEFAULT_CLASS;
    if !m.rules.is_empty() {
        let meta = match inner::packet_meta(&frame[..], proto) {
            Ok(meta) => meta,
            Err(r) => return Sent::Drop(r),
        };
        class = classify(|i| m.rules.get(i as usize), m.rules.len() as u32, &meta);
    }
    let buckets = [Bucket::default(); MAX_SUBFLOWS];
    let paths = ConnectionPaths { states: &m.states, buckets: &buckets, now_ns: 0 };
    let wire = wire_len(inner_len, 0);
    let cp = m.policies[class as usize];
    let Some(d) = decide(cp, &paths, wire, 0, &SchedState::default(), &FlowletEntry::default()) else {
        return Sent::Drop(DropReason::NoSubflow);
    };
    let i = d.subflow;
    let outer = if m.templates[i].family == FAMILY_V6 { template::V6_OUTER } else { template::V4_OUTER };
    if inner_len as usize + outer > settings.uplink_mtu as usize {
        return Sent::Drop(DropReason::TooBig);
    }
    let (dsn, seq) = (m.dsn as u32, m.seq[i]);
    m.dsn += 1;
    m.seq[i] += 1;
    Sent::On { subflow: i, dsn, seq, inner: frame[ETH_HLEN..].to_vec() }
}

/// Frames as the bond device hands them to its egress program: inner
/// packets of every shape, and damaged ones.
fn bond_frame(rng: &mut StdRng) -> Vec<u8> {
    let dst = if rng.gen_bool(0.8) { [10, 200, 0, rng.gen()] } else { rng.gen() };
    let mss = rng.gen_range(500..9000);
    let inner = match rng.gen_range(0..8) {
        0 => inner_v4(dst),
        1 => inner_v6(),
        2 => tcp_v4(dst, TCP_SYN, &mss_first(mss)),
        3 => tcp_v6(TCP_SYN, &mss_last(mss)),
        4 => udp_v4(dst, rng.gen(), if rng.gen() { 5201 } else { rng.gen() }),
        5 => {
            // A SYN with options of random bytes (the MSS walk's input).
            let words = rng.gen_range(0..=10);
            let opts: Vec<u8> = (0..words * 4).map(|_| rng.gen()).collect();
            tcp_v4(dst, TCP_SYN | rng.gen::<u8>(), &opts)
        }
        6 => {
            // Large: some do not fit the uplink once encapsulated.
            let mut p = udp_v4(dst, 4000, 5201);
            p.extend((0..rng.gen_range(1000..1500)).map(|_| rng.gen::<u8>()));
            p
        }
        _ => {
            let n = rng.gen_range(0..200);
            let mut b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            if let Some(first) = b.first_mut() {
                *first = [0x45, 0x60, 0x46, 0x4f, 0x40, rng.gen()][rng.gen_range(0..6)];
            }
            b
        }
    };
    let v6 = inner.first().is_some_and(|b| b >> 4 == 6);
    let mut proto = if v6 { ETH_P_IPV6 } else { ETH_P_IP };
    let mut inner = inner;
    match rng.gen_range(0..12) {
        0 => proto = [0x0806, 0x8100, 0x88a8, rng.gen()][rng.gen_range(0..4)],
        1 => inner.truncate(rng.gen_range(0..=inner.len())),
        2 if !inner.is_empty() => {
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..inner.len());
                inner[i] = rng.gen();
            }
        }
        3 if !v6 && inner.len() >= 20 => {
            // IPv4 options, or a fragment.
            if rng.gen() {
                let words = rng.gen_range(1..=10usize);
                inner[0] = 0x40 | (5 + words as u8);
                let opts: Vec<u8> = (0..words * 4).map(|_| rng.gen()).collect();
                inner.splice(IPV4_HLEN..IPV4_HLEN, opts);
            } else {
                let frag: u16 = if rng.gen() { 0x2000 } else { rng.gen_range(1..0x2000) };
                inner[6..8].copy_from_slice(&frag.to_be_bytes());
            }
        }
        4 if v6 && inner.len() >= 40 => {
            inner[6] = [0u8, 43, 44, 60][rng.gen_range(0..4)];
            let mut ext = vec![6u8, 0, 0, 0, 0, 0, 0, 0];
            ext[2..].iter_mut().for_each(|b| *b = rng.gen());
            inner.splice(IPV6_HLEN..IPV6_HLEN, ext);
        }
        _ => {}
    }
    let mut p = eth([0xff; 6], MAC_A, proto);
    p.extend(inner);
    p
}

/// Run `packets` generated frames through the egress program (and the
/// encapsulation it tail-calls) on BPF_PROG_TEST_RUN, comparing each with
/// [`reference_egress`]: the verdict and drop counter, or the whole
/// encapsulated packet (its tag checked with the connection's key).
pub fn fuzz_egress(packets: u64, seed: u64) -> Result<EgressReport> {
    let start = std::time::Instant::now();
    let mut f = Fixture::new()?;
    let templates = [template::ipv4(CL4, CO4, PORT, PORT, 1), template::ipv6(CL6, CO6, PORT, PORT, 1)];
    let subs = [subflow(templates[0], 2_000, 1), subflow(templates[1], 9_000, 0)];
    let prefix_v4 = (24, [10, 200, 0, 0]);
    f.tx_connection(prefix_v4, &subs, Policy::MinRtt)?;
    // UDP to 5201 is a class of its own, on the other subflow.
    let rule = ClassRule { class: 1, proto: IPPROTO_UDP, dport_lo: 5201, dport_hi: 5201, ..Default::default() };
    f.set_rules(&[rule])?;
    f.set_class_policy(1, ClassPolicy::new(Policy::ActiveBackup))?;
    f.set_bond_mtu(BOND_MTU)?;
    // Subflow 1's numbers cross 32 bits early on.
    let start_seq = [0, (1u64 << 32) - 300];
    let mut tx: aya::maps::HashMap<_, u32, TxState> = f.ebpf.map_mut(names::TX_STATE).unwrap().try_into()?;
    let mut state = tx.get(&TOKEN, 0)?;
    state.subflow_seq[..2].copy_from_slice(&start_seq);
    tx.insert(TOKEN, state, 0)?;
    let settings = Settings { port: PORT, n_rules: 1, uplink_mtu: 1500, bond_mtu: BOND_MTU, client: 0, debug: 0 };
    let mut m = ModelTx {
        prefix_v4,
        templates,
        states: [subs[0].0.path, subs[1].0.path],
        rules: vec![rule],
        policies: [ClassPolicy::new(Policy::MinRtt), ClassPolicy::new(Policy::ActiveBackup)],
        dsn: 0,
        seq: start_seq,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = EgressReport::default();
    let mut counted = [0u64; DropReason::COUNT as usize];
    while report.packets < packets {
        let p = bond_frame(&mut rng);
        if !test_runnable(&p) {
            report.not_runnable += 1;
            continue;
        }
        let want = reference_egress(&p, &settings, &mut m);
        let before = match &want {
            Sent::Drop(r) => f.drops(*r)?,
            Sent::On { .. } => 0,
        };
        let (verdict, out) = f.run_tc(&p).with_context(|| format!("test run of {} bytes: {p:02x?}", p.len()))?;
        match &want {
            Sent::On { subflow, dsn, seq, inner } => {
                let Some(got) = Encapsulated::parse(&out).filter(|_| verdict == TC_ACT_REDIRECT) else {
                    bail!("verdict {verdict} for {p:02x?}; the reference {want:?}");
                };
                let hdr = MpHeader::data(TOKEN, *subflow as u8, *dsn, *seq as u32, got.mp().tstamp_us())
                    .with_seq_hi((*seq >> 32) as u16);
                let mut expect = encapsulated_as_is(&templates[*subflow], auth::seal(&KEYS.tx, hdr), inner);
                expect[..6].copy_from_slice(&[0; 6]);
                expect[6..12].copy_from_slice(&MAC_A);
                if out != expect {
                    bail!("the kernel sent {out:02x?} for {p:02x?}; the reference {expect:02x?}");
                }
                report.sent[*subflow] += 1;
            }
            Sent::Drop(r) => {
                if verdict != TC_ACT_SHOT || f.drops(*r)? != before + 1 {
                    bail!("verdict {verdict} for {p:02x?}; the reference {want:?}");
                }
                counted[*r as usize] += 1;
                *report.drops.entry(r.name()).or_default() += 1;
            }
        }
        report.packets += 1;
    }
    for r in DropReason::ALL {
        if f.drops(r)? != counted[r as usize] {
            bail!("{} counted {} times, the reference {}", r.name(), f.drops(r)?, counted[r as usize]);
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Whether BPF_PROG_TEST_RUN takes the frame for a tc program: it refuses
/// (EINVAL) an IPv4 or IPv6 frame too short for the fixed IP header, which
/// the stack never hands a device either.
fn test_runnable(p: &[u8]) -> bool {
    let inner = p.len().saturating_sub(ETH_HLEN);
    match p.read::<EthHdr>(0).map(|e| e.proto()) {
        Some(ETH_P_IP) => inner >= IPV4_HLEN,
        Some(ETH_P_IPV6) => inner >= IPV6_HLEN,
        Some(_) => true,
        None => false,
    }
}

/// The egress fuzz run's figures.
#[derive(Debug, Default)]
pub struct EgressReport {
    pub packets: u64,
    /// Frames the test run refuses ([`test_runnable`]), not counted in `packets`.
    pub not_runnable: u64,
    pub sent: [u64; 2],
    pub drops: HashMap<&'static str, u64>,
    pub seconds: f64,
}

impl std::fmt::Display for EgressReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let drops = by_name(&self.drops);
        write!(
            f,
            "{} frames through bond_egress in {:.1} s, every verdict and packet as the host reference's\n  \
             sent on subflow 0 {}, on subflow 1 {}; dropped: {drops}; ({} frames too short for the test run skipped)",
            self.packets, self.seconds, self.sent[0], self.sent[1], self.not_runnable
        )
    }
}
