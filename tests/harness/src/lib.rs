//! Test support, not part of the product: the kernel programs on
//! BPF_PROG_TEST_RUN, the object loaded with private pins, a connection and
//! subflows written into its maps, and packets as a peer would send them.
//! Shared by the fixture tests, the differential test and the benchmark's
//! per-packet cost measurement. Needs root.

pub mod fuzz;

use std::path::PathBuf;

use anyhow::{Context, Result};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::util::nr_cpus;
use aya::{Ebpf, EbpfLoader};
use mptcp_common::auth::{self, ConnKeys, DataKey};
use mptcp_common::checksum::fold;
use mptcp_common::classify::{ClassRule, IPPROTO_TCP, IPPROTO_UDP};
use mptcp_common::headers::{EthHdr, Ipv4Hdr, Ipv6Hdr, OuterV4, OuterV6, TcpHdr, UdpHdr, TCP_HLEN};
use mptcp_common::maps::{
    names, programs, Connection, DedupWindow, FlowKey, OuterTemplate, PathState, RxSeq, Settings, Subflow, SubflowKey,
    SubflowStats, TxState, PATH_ESTABLISHED, PATH_UP,
};
use mptcp_common::wire::{
    MpHeader, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, FAMILY_V4, FAMILY_V6, IPV4_HLEN, KIND_DATA, UDP_HLEN,
};
use mptcp_common::{template, ClassPolicy, DropReason, Policy};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

use mptcp_user::object::EBPF_OBJECT;

pub const PORT: u16 = 7495;
pub const TOKEN: u32 = 0x1122_3344;
/// The connection's data keys as the programs under test hold them: they
/// tag with `tx`, and take what the peer tagged with `rx`.
pub const KEYS: ConnKeys = ConnKeys {
    tx: DataKey { k0: 0x0706_0504_0302_0100, k1: 0x0f0e_0d0c_0b0a_0908 },
    rx: DataKey { k0: 0x1716_1514_1312_1110, k1: 0x1f1e_1d1c_1b1a_1918 },
};
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const CL4: [u8; 4] = [10, 1, 0, 2];
pub const CO4: [u8; 4] = [10, 1, 0, 1];
pub const CL6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const CO6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The object loaded with its maps pinned in a private directory, removed on Drop.
pub struct Fixture {
    pub ebpf: Ebpf,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = mptcp_user::lifecycle::remove_pins(&self.dir);
    }
}

impl Fixture {
    pub fn new() -> Result<Fixture> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/mptcp-ebpf/fixture-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let ebpf = EbpfLoader::new().default_map_pin_directory(&dir).load(EBPF_OBJECT)?;
        let mut f = Fixture { ebpf, dir };
        mptcp_user::lifecycle::set_encap(&mut f.ebpf)?;
        let p: &mut SchedClassifier = f.ebpf.program_mut(programs::BOND_EGRESS).unwrap().try_into()?;
        p.load()?;
        let p: &mut Xdp = f.ebpf.program_mut(programs::UPLINK_INGRESS).unwrap().try_into()?;
        p.load()?;
        let mut s: Array<_, Settings> = f.ebpf.map_mut(names::SETTINGS).unwrap().try_into()?;
        s.set(0, Settings { port: PORT, n_rules: 0, uplink_mtu: 1500, bond_mtu: 0, client: 0, debug: 0 }, 0)?;
        Ok(f)
    }

    pub fn zero_counters(&mut self, id: u32) -> Result<()> {
        let key = SubflowKey { token: TOKEN, subflow_id: id };
        let mut st: PerCpuHashMap<_, SubflowKey, SubflowStats> =
            self.ebpf.map_mut(names::SUBFLOW_STATS).unwrap().try_into()?;
        st.insert(key, PerCpuValues::try_from(vec![SubflowStats::default(); nr_cpus().map_err(|(_, e)| e)?])?, 0)?;
        let mut rx: HashMap<_, SubflowKey, RxSeq> = self.ebpf.map_mut(names::RX_SEQ).unwrap().try_into()?;
        rx.insert(key, RxSeq::default(), 0)?;
        Ok(())
    }

    /// The receive side knows subflow `id` under this 4-tuple (as seen by the receiver).
    pub fn rx_subflow(&mut self, key: FlowKey, id: u32) -> Result<()> {
        let mut t: HashMap<_, FlowKey, SubflowKey> = self.ebpf.map_mut(names::SUBFLOW_BY_TUPLE).unwrap().try_into()?;
        t.insert(key, SubflowKey { token: TOKEN, subflow_id: id }, 0)?;
        // The client's announced addresses, the inner sources it may send from.
        let mut l4: LpmTrie<_, [u8; 4], u32> = self.ebpf.map_mut(names::CONN_BY_DEST_V4).unwrap().try_into()?;
        l4.insert(&Key::new(32, SRC4), TOKEN, 0)?;
        let mut l6: LpmTrie<_, [u8; 16], u32> = self.ebpf.map_mut(names::CONN_BY_DEST_V6).unwrap().try_into()?;
        l6.insert(&Key::new(128, SRC6), TOKEN, 0)?;
        let mut d: HashMap<_, u32, DedupWindow> = self.ebpf.map_mut(names::DEDUP).unwrap().try_into()?;
        if d.get(&TOKEN, 0).is_err() {
            d.insert(TOKEN, DedupWindow::default(), 0)?;
        }
        self.install_keys()?;
        self.zero_counters(id)
    }

    /// The connection's data keys ([`KEYS`]), as its controller writes them.
    pub fn install_keys(&mut self) -> Result<()> {
        let mut k: HashMap<_, u32, ConnKeys> = self.ebpf.map_mut(names::DATA_KEYS).unwrap().try_into()?;
        k.insert(TOKEN, KEYS, 0)?;
        Ok(())
    }

    /// Forget the connection's data keys.
    pub fn remove_keys(&mut self) -> Result<()> {
        let mut k: HashMap<_, u32, ConnKeys> = self.ebpf.map_mut(names::DATA_KEYS).unwrap().try_into()?;
        k.remove(&TOKEN)?;
        Ok(())
    }

    /// The send side: a connection for `prefix` with these subflows.
    pub fn tx_connection(
        &mut self,
        prefix_v4: (u32, [u8; 4]),
        subflows: &[(Subflow, bool)],
        policy: Policy,
    ) -> Result<()> {
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
        self.install_keys()?;
        self.set_class_policy(0, ClassPolicy::new(policy))
    }

    pub fn set_class_policy(&mut self, class: u32, cp: ClassPolicy) -> Result<()> {
        let mut p: Array<_, ClassPolicy> = self.ebpf.map_mut(names::CLASS_POLICY).unwrap().try_into()?;
        p.set(class, cp, 0)?;
        Ok(())
    }

    /// Install classifier rules (and their count in the settings).
    pub fn set_rules(&mut self, rules: &[ClassRule]) -> Result<()> {
        let mut r: Array<_, ClassRule> = self.ebpf.map_mut(names::CLASS_RULES).unwrap().try_into()?;
        for (i, rule) in rules.iter().enumerate() {
            r.set(i as u32, *rule, 0)?;
        }
        let mut s: Array<_, Settings> = self.ebpf.map_mut(names::SETTINGS).unwrap().try_into()?;
        let mut v = s.get(&0, 0)?;
        v.n_rules = rules.len() as u16;
        s.set(0, v, 0)?;
        Ok(())
    }

    pub fn drops(&self, r: DropReason) -> Result<u64> {
        let d: PerCpuArray<_, u64> = self.ebpf.map(names::DROPS).unwrap().try_into()?;
        Ok(d.get(&(r as u32), 0)?.iter().sum())
    }

    pub fn stats(&self, id: u32) -> Result<SubflowStats> {
        let st: PerCpuHashMap<_, SubflowKey, SubflowStats> = self.ebpf.map(names::SUBFLOW_STATS).unwrap().try_into()?;
        let mut t = SubflowStats::default();
        for v in st.get(&SubflowKey { token: TOKEN, subflow_id: id }, 0)?.iter() {
            t.add(v);
        }
        Ok(t)
    }

    /// Kernel-timed single runs of program `name`, run `i` on `input(i)`
    /// (a receiver takes each data packet once, so each run needs its own):
    /// the verdict of the last run and each run's duration in nanoseconds.
    /// One run per call, because a repeated run would see the packet its
    /// previous run rewrote (encapsulated or decapsulated), not the input.
    pub fn time_runs(
        &mut self,
        name: &str,
        input: &mut dyn FnMut(usize) -> Vec<u8>,
        runs: usize,
    ) -> Result<(u32, Vec<u64>)> {
        let inputs: Vec<Vec<u8>> = (0..runs).map(&mut *input).collect();
        let program = self.ebpf.program_mut(name).with_context(|| format!("no program {name}"))?;
        let mut out = vec![0u8; inputs.iter().map(Vec::len).max().unwrap_or(0) + 256];
        let mut times = Vec::with_capacity(runs);
        let mut verdict = 0;
        for input in &inputs {
            let options = TestRunOptions { data_in: Some(input), data_out: Some(&mut out), ..Default::default() };
            let r = match program {
                aya::programs::Program::SchedClassifier(p) => p.test_run(options)?,
                aya::programs::Program::Xdp(p) => p.test_run(options)?,
                _ => anyhow::bail!("{name} is neither tc nor XDP"),
            };
            verdict = r.return_value;
            times.push(r.duration.as_nanos() as u64);
        }
        Ok((verdict, times))
    }

    /// Load the empty baseline programs (not loaded by default).
    pub fn load_noops(&mut self) -> Result<()> {
        let p: &mut SchedClassifier = self.ebpf.program_mut(programs::NOOP_TC).context("no noop_tc")?.try_into()?;
        p.load()?;
        let p: &mut Xdp = self.ebpf.program_mut(programs::NOOP_XDP).context("no noop_xdp")?.try_into()?;
        p.load()?;
        Ok(())
    }

    pub fn run_xdp(&mut self, input: &[u8]) -> Result<(u32, Vec<u8>)> {
        let p: &mut Xdp = self.ebpf.program_mut(programs::UPLINK_INGRESS).unwrap().try_into()?;
        let mut out = vec![0u8; input.len() + 256];
        let r = p.test_run(TestRunOptions { data_in: Some(input), data_out: Some(&mut out), ..Default::default() })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// The egress program run `repeat` times on one skb (each run sees what
    /// the previous one made of it): the last verdict and the output.
    pub fn run_tc_repeated(&mut self, input: &[u8], repeat: u32) -> Result<(u32, Vec<u8>)> {
        let p: &mut SchedClassifier = self.ebpf.program_mut(programs::BOND_EGRESS).unwrap().try_into()?;
        let mut out = vec![0u8; input.len() + 512];
        let options = TestRunOptions { data_in: Some(input), data_out: Some(&mut out), repeat, ..Default::default() };
        let r = p.test_run(options)?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// Change the instance-wide settings.
    fn update_settings(&mut self, change: impl FnOnce(&mut Settings)) -> Result<()> {
        let mut s: Array<_, Settings> = self.ebpf.map_mut(names::SETTINGS).unwrap().try_into()?;
        let mut v = s.get(&0, 0)?;
        change(&mut v);
        s.set(0, v, 0)?;
        Ok(())
    }

    /// The largest packet, outer headers included, the egress program may send.
    pub fn set_uplink_mtu(&mut self, mtu: u32) -> Result<()> {
        self.update_settings(|s| s.uplink_mtu = mtu)
    }

    /// The bond MTU the programs clamp TCP SYNs to (0: no clamp).
    pub fn set_bond_mtu(&mut self, mtu: u32) -> Result<()> {
        self.update_settings(|s| s.bond_mtu = mtu)
    }

    /// Run as a client's data path (bond packets come from the port; inner
    /// sources unchecked) or a concentrator's.
    pub fn set_client(&mut self, client: bool) -> Result<()> {
        self.update_settings(|s| s.client = client as u16)
    }

    /// Report drops to `DROP_EVENTS` (the controller's debug level).
    pub fn set_debug(&mut self, on: bool) -> Result<()> {
        self.update_settings(|s| s.debug = on as u16)
    }

    /// The drop events reported since the last call.
    pub fn drop_events(&mut self) -> Result<Vec<mptcp_common::maps::DropEvent>> {
        let mut ring: aya::maps::RingBuf<_> = self.ebpf.map_mut(names::DROP_EVENTS).unwrap().try_into()?;
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            out.push(bytemuck::pod_read_unaligned(&item[..std::mem::size_of::<mptcp_common::maps::DropEvent>()]));
        }
        Ok(out)
    }

    pub fn run_tc(&mut self, input: &[u8]) -> Result<(u32, Vec<u8>)> {
        self.run_tc_repeated(input, 1)
    }
}

pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

pub fn eth(dst: [u8; 6], src: [u8; 6], proto: u16) -> Vec<u8> {
    bytemuck::bytes_of(&EthHdr::new(dst, src, proto)).to_vec()
}

/// An IPv4 packet from 10.99.0.2 to `dst` carrying `payload` (valid header checksum).
fn ipv4_packet(dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4Hdr::new(SRC4, dst, protocol, 64, (IPV4_HLEN + payload.len()) as u16, 0);
    let mut p = bytemuck::bytes_of(&ip).to_vec();
    p.extend_from_slice(payload);
    p
}

/// A small ICMP echo request in IPv4 (valid header checksum).
pub fn inner_v4(dst: [u8; 4]) -> Vec<u8> {
    ipv4_packet(dst, IPPROTO_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8])
}

/// A small UDP datagram in IPv4 (valid header checksum, no UDP checksum).
pub fn udp_v4(dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let payload = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut udp = bytemuck::bytes_of(&UdpHdr::new(sport, dport, (UDP_HLEN + payload.len()) as u16)).to_vec();
    udp.extend_from_slice(&payload);
    ipv4_packet(dst, IPPROTO_UDP, &udp)
}

/// The inner packets' sources: the test client's addresses.
pub const SRC4: [u8; 4] = [10, 99, 0, 2];
pub const SRC6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST6: [u8; 16] = [0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// The TCP checksum of `segment` (its checksum field zero) under the pseudo
/// header of `src`, `dst` (4 or 16 bytes each), computed whole.
fn tcp_checksum(src: &[u8], dst: &[u8], segment: &[u8]) -> u16 {
    let mut bytes = [src, dst].concat();
    bytes.extend_from_slice(&(segment.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, IPPROTO_TCP]);
    bytes.extend_from_slice(segment);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let sum: u32 = bytes.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]]) as u32).sum();
    !fold(sum)
}

/// A TCP header with `flags` and `options` (a multiple of 4 bytes) and a
/// valid checksum, between `src` and `dst`, without payload.
fn tcp_segment(src: &[u8], dst: &[u8], flags: u8, options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "TCP options come in 32-bit words");
    let mut tcp = TcpHdr::new(40000, 5201, flags, options.len());
    let mut seg = bytemuck::bytes_of(&tcp).to_vec();
    seg.extend_from_slice(options);
    tcp.set_check(tcp_checksum(src, dst, &seg));
    seg[..TCP_HLEN].copy_from_slice(bytemuck::bytes_of(&tcp));
    seg
}

/// A TCP segment in IPv4 from 10.99.0.2 to `dst` (valid checksums).
pub fn tcp_v4(dst: [u8; 4], flags: u8, options: &[u8]) -> Vec<u8> {
    ipv4_packet(dst, IPPROTO_TCP, &tcp_segment(&SRC4, &dst, flags, options))
}

/// A TCP segment in IPv6 from fd99::2 to fd00:200::2 (valid checksum).
pub fn tcp_v6(flags: u8, options: &[u8]) -> Vec<u8> {
    let seg = tcp_segment(&SRC6, &DST6, flags, options);
    let mut p = bytemuck::bytes_of(&Ipv6Hdr::new(SRC6, DST6, IPPROTO_TCP, 64, seg.len() as u16)).to_vec();
    p.extend_from_slice(&seg);
    p
}

/// TCP options announcing `mss` (first, as Linux puts it) and SACK-permitted.
pub fn mss_first(mss: u16) -> Vec<u8> {
    let [hi, lo] = mss.to_be_bytes();
    vec![2, 4, hi, lo, 4, 2, 1, 1]
}

/// TCP options with window scale, SACK-permitted and timestamps before the
/// MSS: the walk must step over them.
pub fn mss_last(mss: u16) -> Vec<u8> {
    let [hi, lo] = mss.to_be_bytes();
    vec![1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 2, 4, hi, lo, 0, 0]
}

/// An ICMPv6 echo request from fd99::2 to fd00:200::2.
pub fn inner_v6() -> Vec<u8> {
    let icmp = [128, 0, 0, 0, 0, 1, 0, 1];
    let (src, dst) = (SRC6, DST6);
    let mut p = bytemuck::bytes_of(&Ipv6Hdr::new(src, dst, IPPROTO_ICMPV6, 64, icmp.len() as u16)).to_vec();
    p.extend_from_slice(&icmp);
    p
}

/// What a peer puts on the wire: Ethernet, then the outer headers as the
/// egress program lays them out (`template::outer_v4`/`outer_v6`), a data
/// header tagged with the peer's key, then the inner packet.
pub fn encapsulated(t: &OuterTemplate, hdr: MpHeader, inner: &[u8]) -> Vec<u8> {
    let hdr = if hdr.kind == KIND_DATA { auth::seal(&KEYS.rx, hdr) } else { hdr };
    encapsulated_as_is(t, hdr, inner)
}

/// [`encapsulated`] with the header exactly as given (its tag included):
/// what an attacker without the key can send.
pub fn encapsulated_as_is(t: &OuterTemplate, hdr: MpHeader, inner: &[u8]) -> Vec<u8> {
    let v6 = t.family == FAMILY_V6;
    let mut p = eth(MAC_B, MAC_A, if v6 { ETH_P_IPV6 } else { ETH_P_IP });
    if v6 {
        p.extend_from_slice(bytemuck::bytes_of(&template::outer_v6(t, inner.len() as u16, &hdr)));
    } else {
        p.extend_from_slice(bytemuck::bytes_of(&template::outer_v4(t, inner.len() as u16, &hdr)));
    }
    p.extend_from_slice(inner);
    p
}

/// An egress program's output taken apart: Ethernet, the outer headers of
/// its family, the inner packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Encapsulated {
    V4(EthHdr, OuterV4, Vec<u8>),
    V6(EthHdr, OuterV6, Vec<u8>),
}

impl Encapsulated {
    pub fn parse(p: &[u8]) -> Option<Encapsulated> {
        let eth: EthHdr = bytemuck::pod_read_unaligned(p.get(..ETH_HLEN)?);
        let rest = &p[ETH_HLEN..];
        match eth.proto() {
            ETH_P_IP => {
                let n = std::mem::size_of::<OuterV4>();
                Some(Encapsulated::V4(eth, bytemuck::pod_read_unaligned(rest.get(..n)?), rest[n..].to_vec()))
            }
            ETH_P_IPV6 => {
                let n = std::mem::size_of::<OuterV6>();
                Some(Encapsulated::V6(eth, bytemuck::pod_read_unaligned(rest.get(..n)?), rest[n..].to_vec()))
            }
            _ => None,
        }
    }

    pub fn mp(&self) -> MpHeader {
        match self {
            Encapsulated::V4(_, o, _) => o.mp,
            Encapsulated::V6(_, o, _) => o.mp,
        }
    }
}

pub fn v4_key(remote_port: u16) -> FlowKey {
    let mut k = FlowKey { remote_port, local_port: PORT, family: FAMILY_V4, ..Default::default() };
    k.remote[..4].copy_from_slice(&CL4);
    k.local[..4].copy_from_slice(&CO4);
    k
}

pub fn subflow(t: OuterTemplate, srtt_us: u32, priority: u32) -> (Subflow, bool) {
    (
        Subflow {
            outer: t,
            path: PathState { flags: PATH_ESTABLISHED | PATH_UP, priority, srtt_us, ..Default::default() },
        },
        true,
    )
}
