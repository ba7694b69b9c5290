//! Fixture tests of the kernel programs on BPF_PROG_TEST_RUN: an input packet
//! goes through the real verifier-approved program and the test checks the
//! verdict, the output packet and the counters. Run as root.

use std::path::PathBuf;

use anyhow::Result;
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::util::nr_cpus;
use aya::{Ebpf, EbpfLoader};
use mptcp_common::checksum::ipv4_header_checksum;
use mptcp_common::maps::{
    names, Connection, FlowKey, PathState, RxSeq, Settings, Subflow, SubflowKey, SubflowStats, TxState,
    PATH_ESTABLISHED, PATH_UP,
};
use mptcp_common::wire::{MpHeader, FAMILY_V4, FAMILY_V6, KIND_CONTROL, MP_HDR_LEN};
use mptcp_common::{template, DropReason, Policy};
use mptcp_user::object::EBPF_OBJECT;

const PORT: u16 = 7495;
const TOKEN: u32 = 0x1122_3344;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const CL4: [u8; 4] = [10, 1, 0, 2];
const CO4: [u8; 4] = [10, 1, 0, 1];
const CL6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const CO6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The object loaded with its maps pinned in a private directory, removed on Drop.
struct Fixture {
    ebpf: Ebpf,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = mptcp_user::lifecycle::remove_pins(&self.dir);
    }
}

impl Fixture {
    fn new() -> Result<Fixture> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/mptcp-ebpf/fixture-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let ebpf = EbpfLoader::new().default_map_pin_directory(&dir).load(EBPF_OBJECT)?;
        let mut f = Fixture { ebpf, dir };
        let p: &mut SchedClassifier = f.ebpf.program_mut("bond_egress").unwrap().try_into()?;
        p.load()?;
        let p: &mut Xdp = f.ebpf.program_mut("uplink_ingress").unwrap().try_into()?;
        p.load()?;
        let mut s: Array<_, Settings> = f.ebpf.map_mut(names::SETTINGS).unwrap().try_into()?;
        s.set(0, Settings { port: PORT, _pad: 0, uplink_mtu: 1500 }, 0)?;
        Ok(f)
    }

    fn zero_counters(&mut self, id: u32) -> Result<()> {
        let key = SubflowKey { token: TOKEN, subflow_id: id };
        let mut st: PerCpuHashMap<_, SubflowKey, SubflowStats> =
            self.ebpf.map_mut(names::SUBFLOW_STATS).unwrap().try_into()?;
        st.insert(key, PerCpuValues::try_from(vec![SubflowStats::default(); nr_cpus().map_err(|(_, e)| e)?])?, 0)?;
        let mut rx: HashMap<_, SubflowKey, RxSeq> = self.ebpf.map_mut(names::RX_SEQ).unwrap().try_into()?;
        rx.insert(key, RxSeq::default(), 0)?;
        Ok(())
    }

    /// The receive side knows subflow `id` under this 4-tuple (as seen by the receiver).
    fn rx_subflow(&mut self, key: FlowKey, id: u32) -> Result<()> {
        let mut t: HashMap<_, FlowKey, SubflowKey> = self.ebpf.map_mut(names::SUBFLOW_BY_TUPLE).unwrap().try_into()?;
        t.insert(key, SubflowKey { token: TOKEN, subflow_id: id }, 0)?;
        self.zero_counters(id)
    }

    /// The send side: a connection for `prefix` with these subflows.
    fn tx_connection(&mut self, prefix_v4: (u32, [u8; 4]), subflows: &[(Subflow, bool)], policy: Policy) -> Result<()> {
        let mut conn = Connection { token: TOKEN, n_subflows: subflows.len() as u32, ..Default::default() };
        for (i, (s, _)) in subflows.iter().enumerate() {
            conn.subflows[i] = *s;
            self.zero_counters(i as u32)?;
        }
        let mut c: HashMap<_, u32, Connection> = self.ebpf.map_mut(names::CONNECTIONS).unwrap().try_into()?;
        c.insert(TOKEN, conn, 0)?;
        let mut tx: HashMap<_, u32, TxState> = self.ebpf.map_mut(names::TX_STATE).unwrap().try_into()?;
        tx.insert(TOKEN, TxState::default(), 0)?;
        let mut l4: LpmTrie<_, [u8; 4], u32> = self.ebpf.map_mut(names::CONN_BY_DEST_V4).unwrap().try_into()?;
        l4.insert(&Key::new(prefix_v4.0, prefix_v4.1), TOKEN, 0)?;
        let mut l6: LpmTrie<_, [u8; 16], u32> = self.ebpf.map_mut(names::CONN_BY_DEST_V6).unwrap().try_into()?;
        l6.insert(&Key::new(0, [0; 16]), TOKEN, 0)?;
        let mut p: Array<_, u32> = self.ebpf.map_mut(names::CLASS_POLICY).unwrap().try_into()?;
        p.set(0, policy as u32, 0)?;
        Ok(())
    }

    fn drops(&self, r: DropReason) -> Result<u64> {
        let d: PerCpuArray<_, u64> = self.ebpf.map(names::DROPS).unwrap().try_into()?;
        Ok(d.get(&(r as u32), 0)?.iter().sum())
    }

    fn stats(&self, id: u32) -> Result<SubflowStats> {
        let st: PerCpuHashMap<_, SubflowKey, SubflowStats> = self.ebpf.map(names::SUBFLOW_STATS).unwrap().try_into()?;
        let mut t = SubflowStats::default();
        for v in st.get(&SubflowKey { token: TOKEN, subflow_id: id }, 0)?.iter() {
            t.add(v);
        }
        Ok(t)
    }

    fn run_xdp(&mut self, input: &[u8]) -> Result<(u32, Vec<u8>)> {
        let p: &mut Xdp = self.ebpf.program_mut("uplink_ingress").unwrap().try_into()?;
        let mut out = vec![0u8; input.len() + 256];
        let r = p.test_run(TestRunOptions { data_in: Some(input), data_out: Some(&mut out), ..Default::default() })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    fn run_tc(&mut self, input: &[u8]) -> Result<(u32, Vec<u8>)> {
        let p: &mut SchedClassifier = self.ebpf.program_mut("bond_egress").unwrap().try_into()?;
        let mut out = vec![0u8; input.len() + 256];
        let r = p.test_run(TestRunOptions { data_in: Some(input), data_out: Some(&mut out), ..Default::default() })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

fn eth(dst: [u8; 6], src: [u8; 6], proto: u16) -> Vec<u8> {
    let mut e = dst.to_vec();
    e.extend_from_slice(&src);
    e.extend_from_slice(&proto.to_be_bytes());
    e
}

/// A small ICMP echo request in IPv4 (valid header checksum).
fn inner_v4(dst: [u8; 4]) -> Vec<u8> {
    let mut ip = [0x45, 0, 0, 36, 0, 1, 0, 0, 64, 1, 0, 0, 10, 99, 0, 2, dst[0], dst[1], dst[2], dst[3]];
    let c = ipv4_header_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut p = ip.to_vec();
    p.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
    p
}

fn inner_v6() -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
    p.extend_from_slice(&[0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&[0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    p
}

/// What a peer puts on the wire: Ethernet + outer header from a template + multipath header + inner.
fn encapsulated(t: &mptcp_common::maps::OuterTemplate, hdr: MpHeader, inner: &[u8]) -> Vec<u8> {
    let v6 = t.family == FAMILY_V6;
    let mut o = t.bytes[..t.len as usize].to_vec();
    let udp_len = (8 + MP_HDR_LEN + inner.len()) as u16;
    if v6 {
        o[4..6].copy_from_slice(&udp_len.to_be_bytes());
        o[44..46].copy_from_slice(&udp_len.to_be_bytes());
    } else {
        let tot = udp_len + 20;
        o[2..4].copy_from_slice(&tot.to_be_bytes());
        o[10..12].copy_from_slice(&[0, 0]);
        let mut h = [0u8; 20];
        h.copy_from_slice(&o[..20]);
        let c = ipv4_header_checksum(&h);
        o[10..12].copy_from_slice(&c.to_be_bytes());
        o[24..26].copy_from_slice(&udp_len.to_be_bytes());
    }
    let mut p = eth(MAC_B, MAC_A, if v6 { 0x86dd } else { 0x0800 });
    p.extend_from_slice(&o);
    p.extend_from_slice(bytemuck::bytes_of(&hdr));
    p.extend_from_slice(inner);
    p
}

fn v4_key(remote_port: u16) -> FlowKey {
    let mut k = FlowKey { remote_port, local_port: PORT, family: FAMILY_V4, ..Default::default() };
    k.remote[..4].copy_from_slice(&CL4);
    k.local[..4].copy_from_slice(&CO4);
    k
}

#[test]
fn ingress_fixtures() -> Result<()> {
    let mut f = Fixture::new()?;
    f.rx_subflow(v4_key(PORT), 0)?;
    let k6 = FlowKey { remote: CL6, local: CO6, remote_port: PORT, local_port: PORT, family: FAMILY_V6, _pad: [0; 3] };
    f.rx_subflow(k6, 1)?;
    let t4 = template::ipv4(CL4, CO4, PORT, PORT, 0);
    let t6 = template::ipv6(CL6, CO6, PORT, PORT, 0);
    let data = |id, seq| MpHeader::data(TOKEN, id, seq, seq, 0);

    // Valid data packets: decapsulated, Ethernet header kept with the inner protocol.
    for (t, id, inner, proto) in [
        (&t4, 0u8, inner_v4([10, 200, 0, 2]), 0x0800u16),
        (&t4, 0, inner_v6(), 0x86dd),
        (&t6, 1, inner_v4([10, 200, 0, 2]), 0x0800),
        (&t6, 1, inner_v6(), 0x86dd),
    ] {
        let seq = f.stats(id as u32)?.rx_packets as u32;
        let (verdict, out) = f.run_xdp(&encapsulated(t, data(id, seq), &inner))?;
        assert_eq!(verdict, XDP_PASS);
        let mut want = eth(MAC_B, MAC_A, proto);
        want.extend_from_slice(&inner);
        assert_eq!(out, want, "decapsulated packet");
    }
    assert_eq!(f.stats(0)?.rx_packets, 2);
    assert_eq!(f.stats(1)?.rx_packets, 2);
    // A skipped subflow sequence number is a counted gap.
    f.run_xdp(&encapsulated(&t4, data(0, 5), &inner_v4([10, 200, 0, 2])))?;
    assert_eq!(f.stats(0)?.rx_gaps, 3);

    // Refused: (input, reason).
    let unknown = encapsulated(&template::ipv4(CL4, CO4, 40000, PORT, 0), data(0, 0), &inner_v4([1, 1, 1, 1]));
    let wrong_token = encapsulated(&t4, MpHeader::data(TOKEN ^ 1, 0, 0, 0, 0), &inner_v4([1, 1, 1, 1]));
    let wrong_id = encapsulated(&t4, data(1, 0), &inner_v4([1, 1, 1, 1]));
    let mut bad_version = encapsulated(&t4, data(0, 0), &inner_v4([1, 1, 1, 1]));
    bad_version[14 + 28] = 9;
    let full = encapsulated(&t4, data(0, 0), &[]);
    let truncated = full[..full.len() - 4].to_vec();
    let not_ip = encapsulated(&t4, data(0, 0), &[0x12, 0, 0, 0]);
    for (input, reason) in [
        (unknown, DropReason::UnknownSubflow),
        (wrong_token, DropReason::BadToken),
        (wrong_id, DropReason::BadToken),
        (bad_version, DropReason::BadHeader),
        (truncated, DropReason::Truncated),
        (not_ip, DropReason::DecapFailed),
    ] {
        let before = f.drops(reason)?;
        let (verdict, _) = f.run_xdp(&input)?;
        assert_eq!(verdict, XDP_DROP, "{reason:?}");
        assert_eq!(f.drops(reason)?, before + 1, "{reason:?} counted");
    }

    // Passed untouched: control messages, other UDP ports, non-IP.
    let mut control = encapsulated(&t4, data(0, 0), &[1, 2, 3]);
    control[14 + 28 + 1] = KIND_CONTROL;
    let other_port = encapsulated(&template::ipv4(CL4, CO4, PORT, 53, 0), data(0, 0), &inner_v4([1, 1, 1, 1]));
    let mut arp = eth([0xff; 6], MAC_A, 0x0806);
    arp.extend_from_slice(&[0u8; 28]);
    for input in [control, other_port, arp] {
        let (verdict, out) = f.run_xdp(&input)?;
        assert_eq!((verdict, &out), (XDP_PASS, &input));
    }
    Ok(())
}

fn subflow(t: mptcp_common::maps::OuterTemplate, srtt_us: u32, priority: u32) -> (Subflow, bool) {
    (
        Subflow {
            outer: t,
            path: PathState { flags: PATH_ESTABLISHED | PATH_UP, priority, srtt_us, ..Default::default() },
        },
        true,
    )
}

#[test]
fn egress_fixtures() -> Result<()> {
    let mut f = Fixture::new()?;
    let t0 = template::ipv4(CL4, CO4, PORT, PORT, 1);
    let t1 = template::ipv6(CL6, CO6, PORT, PORT, 1);
    f.tx_connection((24, [10, 200, 0, 0]), &[subflow(t0, 2_000, 1), subflow(t1, 9_000, 0)], Policy::MinRtt)?;
    let inner = inner_v4([10, 200, 0, 2]);
    let mut input = eth([0xff; 6], MAC_A, 0x0800);
    input.extend_from_slice(&inner);

    // min-rtt picks subflow 0 (2 ms): IPv4 outer, valid checksum, dsn 0 then 1.
    for dsn in 0..2u32 {
        let (verdict, out) = f.run_tc(&input)?;
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let mut want = eth([0; 6], MAC_A, 0x0800);
        let mut outer = encapsulated(&t0, MpHeader::data(TOKEN, 0, dsn, dsn, 0), &inner)[14..].to_vec();
        // The send timestamp is the kernel's clock: copy it, check the rest.
        outer[28 + 16..28 + 20].copy_from_slice(&out[14 + 28 + 16..14 + 28 + 20]);
        want.extend_from_slice(&outer);
        assert_eq!(out, want, "encapsulated packet, dsn {dsn}");
        let mut h = [0u8; 20];
        h.copy_from_slice(&out[14..34]);
        assert_eq!(ipv4_header_checksum(&h), 0, "outer IPv4 checksum valid");
    }
    assert_eq!(f.stats(0)?.tx_packets, 2);
    assert_eq!(f.stats(1)?.tx_packets, 0);

    // active-backup picks the lowest priority value: subflow 1, IPv6 outer.
    let mut p: Array<_, u32> = f.ebpf.map_mut(names::CLASS_POLICY).unwrap().try_into()?;
    p.set(0, Policy::ActiveBackup as u32, 0)?;
    let (verdict, out) = f.run_tc(&input)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&out[12..14], &[0x86, 0xdd], "outer IPv6");
    let hdr: MpHeader = bytemuck::pod_read_unaligned(&out[14 + 48..14 + 48 + MP_HDR_LEN]);
    assert_eq!((hdr.token(), hdr.subflow_id, hdr.dsn(), hdr.subflow_seq()), (TOKEN, 1, 2, 0));
    assert_eq!(&out[14 + 48 + MP_HDR_LEN..], &inner[..]);
    assert_eq!(u16::from_be_bytes([out[18], out[19]]) as usize, 8 + MP_HDR_LEN + inner.len(), "IPv6 payload length");

    // Inner IPv6 rides the same subflows.
    let mut in6 = eth([0xff; 6], MAC_A, 0x86dd);
    in6.extend_from_slice(&inner_v6());
    assert_eq!(f.run_tc(&in6)?.0, TC_ACT_REDIRECT);

    // No connection covers the destination.
    let mut other = eth([0xff; 6], MAC_A, 0x0800);
    other.extend_from_slice(&inner_v4([8, 8, 8, 8]));
    let before = f.drops(DropReason::NoConnection)?;
    assert_eq!(f.run_tc(&other)?.0, TC_ACT_SHOT);
    assert_eq!(f.drops(DropReason::NoConnection)?, before + 1);

    // Not IP.
    let mut arp = eth([0xff; 6], MAC_A, 0x0806);
    arp.extend_from_slice(&[0u8; 28]);
    assert_eq!(f.run_tc(&arp)?.0, TC_ACT_SHOT);
    assert_eq!(f.drops(DropReason::NotIp)?, 1);

    // No established subflow.
    let mut c: HashMap<_, u32, Connection> = f.ebpf.map_mut(names::CONNECTIONS).unwrap().try_into()?;
    c.insert(TOKEN, Connection { token: TOKEN, n_subflows: 2, ..Default::default() }, 0)?;
    assert_eq!(f.run_tc(&input)?.0, TC_ACT_SHOT);
    assert_eq!(f.drops(DropReason::NoSubflow)?, 1);
    Ok(())
}
