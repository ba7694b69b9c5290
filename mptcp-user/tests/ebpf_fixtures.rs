//! Fixture tests of the kernel programs on BPF_PROG_TEST_RUN: an input packet
//! goes through the real verifier-approved program and the test checks the
//! verdict, the output packet and the counters. Run as root.

use anyhow::Result;
use aya::maps::lpm_trie::Key;
use aya::maps::{HashMap, LpmTrie};
use mptcp_common::auth;
use mptcp_common::checksum::ipv4_header_checksum;
use mptcp_common::headers::TCP_SYN;
use mptcp_common::maps::{names, Connection, FlowKey, OuterTemplate};
use mptcp_common::wire::{MpHeader, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, FAMILY_V6, VERSION};
use mptcp_common::{template, ClassPolicy, DropReason, Policy};
use mptcp_harness::*;

/// What a fixture expects the ingress program to make of one packet.
enum Expect {
    /// XDP_PASS with this packet (the inner one behind an Ethernet header).
    Decapsulated(Vec<u8>),
    /// XDP_PASS, the packet untouched.
    Untouched,
    /// XDP_DROP, counted under this reason.
    Dropped(DropReason),
}

/// Run each (what, input, expectation) through the verified program on
/// BPF_PROG_TEST_RUN and check the verdict, the output and the counter.
fn check_ingress(f: &mut Fixture, cases: Vec<(&str, Vec<u8>, Expect)>) -> Result<()> {
    for (what, input, want) in cases {
        let counted = match &want {
            Expect::Dropped(r) => Some((*r, f.drops(*r)?)),
            _ => None,
        };
        let (verdict, out) = f.run_xdp(&input)?;
        match want {
            Expect::Decapsulated(p) => assert_eq!((verdict, out), (XDP_PASS, p), "{what}"),
            Expect::Untouched => assert_eq!((verdict, out), (XDP_PASS, input), "{what}"),
            Expect::Dropped(r) => {
                assert_eq!(verdict, XDP_DROP, "{what}");
                let (_, before) = counted.expect("taken above");
                assert_eq!(f.drops(r)?, before + 1, "{what}: counted as {r:?}");
            }
        }
    }
    Ok(())
}

#[test]
fn ingress_fixtures() -> Result<()> {
    use Expect::*;
    let mut f = Fixture::new()?;
    f.rx_subflow(v4_key(PORT), 0)?;
    let k6 = FlowKey { remote: CL6, local: CO6, remote_port: PORT, local_port: PORT, family: FAMILY_V6, _pad: [0; 3] };
    f.rx_subflow(k6, 1)?;
    let t4 = template::ipv4(CL4, CO4, PORT, PORT, 0);
    let t6 = template::ipv6(CL6, CO6, PORT, PORT, 0);
    f.set_bond_mtu(1452)?;
    let data = |id, seq| MpHeader::data(TOKEN, id, seq, seq, 0);
    let (in4, in6) = (inner_v4([10, 200, 0, 2]), inner_v6());
    let decap = |proto: u16, inner: &[u8]| {
        let mut p = eth(MAC_B, MAC_A, proto);
        p.extend_from_slice(inner);
        Decapsulated(p)
    };
    let junk = inner_v4([1, 1, 1, 1]);
    let mut other_version = data(0, 0);
    other_version.version = VERSION + 1;
    let bad_version = encapsulated(&t4, other_version, &junk);
    let full = encapsulated(&t4, data(0, 0), &[]);
    let control = encapsulated(&t4, MpHeader::control(TOKEN, 0), &[1, 2, 3]);
    let arp = arp();
    // The same packets from addresses the client never announced.
    let (mut foreign4, mut foreign6) = (in4.clone(), in6.clone());
    foreign4[12..16].copy_from_slice(&[10, 98, 0, 2]);
    foreign6[8] = 0xfe;
    check_ingress(
        &mut f,
        vec![
            // Data: decapsulated, the Ethernet header kept with the inner protocol.
            ("IPv4 in IPv4", encapsulated(&t4, data(0, 0), &in4), decap(ETH_P_IP, &in4)),
            ("IPv6 in IPv4", encapsulated(&t4, data(0, 1), &in6), decap(ETH_P_IPV6, &in6)),
            ("IPv4 in IPv6", encapsulated(&t6, data(1, 0), &in4), decap(ETH_P_IP, &in4)),
            ("IPv6 in IPv6", encapsulated(&t6, data(1, 1), &in6), decap(ETH_P_IPV6, &in6)),
            // A SYN(-ACK) from the peer leaves the bond announcing no more
            // than a full segment through it carries (see the egress cases).
            (
                "a SYN announcing 1460",
                encapsulated(&t4, data(0, 2), &tcp_v4(DST, TCP_SYN | TCP_ACK, &mss_first(1460))),
                decap(ETH_P_IP, &tcp_v4(DST, TCP_SYN | TCP_ACK, &mss_first(1412))),
            ),
            (
                "in IPv6, after other options",
                encapsulated(&t6, data(1, 2), &tcp_v6(TCP_SYN, &mss_last(1500))),
                decap(ETH_P_IPV6, &tcp_v6(TCP_SYN, &mss_last(1392))),
            ),
            // Refused, each for its reason.
            ("the same packet again", encapsulated(&t4, data(0, 2), &in4), Dropped(DropReason::Replayed)),
            ("an older one again", encapsulated(&t4, data(0, 0), &in4), Dropped(DropReason::Replayed)),
            ("a header made without the key", encapsulated_as_is(&t4, data(0, 3), &in4), Dropped(DropReason::Forged)),
            (
                "a tag made with the wrong key (ours: a packet reflected back)",
                encapsulated_as_is(&t4, auth::seal(&KEYS.tx, data(0, 3)), &in4),
                Dropped(DropReason::Forged),
            ),
            (
                "a tagged header changed on the way",
                {
                    let mut p = encapsulated(&t4, data(0, 3), &in4);
                    p[ETH_HLEN + 20 + 8 + 8] ^= 0x80; // the DSN's top bit
                    p
                },
                Dropped(DropReason::Forged),
            ),
            (
                "an unknown 4-tuple",
                encapsulated(&template::ipv4(CL4, CO4, 40000, PORT, 0), data(0, 0), &junk),
                Dropped(DropReason::UnknownSubflow),
            ),
            (
                "the wrong token",
                encapsulated(&t4, MpHeader::data(TOKEN ^ 1, 0, 0, 0, 0), &junk),
                Dropped(DropReason::BadToken),
            ),
            ("another subflow's id", encapsulated(&t4, data(1, 0), &junk), Dropped(DropReason::BadToken)),
            // A concentrator takes inner packets only from the sending
            // client's prefixes (what it routes back to that client).
            (
                "IPv4 from a foreign source",
                encapsulated(&t4, data(0, 3), &foreign4),
                Dropped(DropReason::ForeignSource),
            ),
            (
                "IPv6 from a foreign source",
                encapsulated(&t6, data(1, 3), &foreign6),
                Dropped(DropReason::ForeignSource),
            ),
            ("another header version", bad_version, Dropped(DropReason::BadHeader)),
            ("cut short", full[..full.len() - 4].to_vec(), Dropped(DropReason::Truncated)),
            (
                "not an IP packet inside",
                encapsulated(&t4, data(0, 0), &[0x12, 0, 0, 0]),
                Dropped(DropReason::DecapFailed),
            ),
            // Not ours to decapsulate: passed on untouched.
            ("a control message", control, Untouched),
            ("another UDP port", encapsulated(&template::ipv4(CL4, CO4, PORT, 53, 0), data(0, 0), &junk), Untouched),
            ("not IP", arp, Untouched),
        ],
    )?;
    // Only the data packets count as received (a foreign source, a forged
    // or replayed header are dropped before); a skipped subflow sequence
    // number is a counted gap.
    assert_eq!((f.stats(0)?.rx_packets, f.stats(1)?.rx_packets), (3, 3));
    f.run_xdp(&encapsulated(&t4, data(0, 6), &in4))?;
    assert_eq!(f.stats(0)?.rx_gaps, 3);
    // A GSO super-packet's header is taken once per segment it announces.
    let gso = |seq| encapsulated(&t4, data(0, seq).with_segs(2), &in4);
    check_ingress(
        &mut f,
        vec![
            ("a GSO segment", gso(7), decap(ETH_P_IP, &in4)),
            ("its second segment", gso(7), decap(ETH_P_IP, &in4)),
            ("a third under a header of two", gso(7), Dropped(DropReason::Replayed)),
        ],
    )?;
    // A connection without keys takes nothing.
    f.remove_keys()?;
    check_ingress(&mut f, vec![("no keys", encapsulated(&t4, data(0, 9), &in4), Dropped(DropReason::Forged))])?;
    f.install_keys()?;
    // A client's inner packets come from anywhere: not checked there.
    f.set_client(true)?;
    check_ingress(
        &mut f,
        vec![
            ("a client takes any source", encapsulated(&t4, data(0, 10), &foreign4), decap(ETH_P_IP, &foreign4)),
            ("in IPv6 too", encapsulated(&t6, data(1, 7), &foreign6), decap(ETH_P_IPV6, &foreign6)),
        ],
    )?;
    Ok(())
}

/// An inner destination inside the test connection's prefix.
const DST: [u8; 4] = [10, 200, 0, 2];
const TCP_ACK: u8 = 0x10;

/// What a fixture expects the egress program to make of one packet.
enum Sent {
    /// TC_ACT_REDIRECT, encapsulated for `subflow` (in its template's outer
    /// family, with a valid checksum) with these sequence numbers, and
    /// counted on that subflow.
    Encapsulated { subflow: u8, dsn: u32, seq: u32 },
    /// TC_ACT_SHOT, counted under this reason.
    Dropped(DropReason),
}

type Setup = Box<dyn Fn(&mut Fixture) -> Result<()>>;

/// One egress fixture: a change to the maps first, then the input packet
/// through `runs` runs on one skb, and what must come out.
struct EgressCase {
    what: &'static str,
    setup: Option<Setup>,
    input: Vec<u8>,
    runs: u32,
    want: Sent,
    /// The inner packet that must come out encapsulated, if not the input's.
    inner_out: Option<Vec<u8>>,
}

fn case(what: &'static str, input: Vec<u8>, want: Sent) -> EgressCase {
    EgressCase { what, setup: None, input, runs: 1, want, inner_out: None }
}

impl EgressCase {
    fn after(mut self, setup: impl Fn(&mut Fixture) -> Result<()> + 'static) -> Self {
        self.setup = Some(Box::new(setup));
        self
    }
    fn inner_out(mut self, inner: Vec<u8>) -> Self {
        self.inner_out = Some(inner);
        self
    }
}

/// Run each case through the verified egress program and check the verdict,
/// the output packet byte for byte (the kernel's send timestamp aside) and
/// the counter it moves.
fn check_egress(f: &mut Fixture, templates: &[OuterTemplate], cases: Vec<EgressCase>) -> Result<()> {
    for c in cases {
        let what = c.what;
        if let Some(setup) = &c.setup {
            setup(f)?;
        }
        match c.want {
            Sent::Encapsulated { subflow, dsn, seq } => {
                let before = f.stats(subflow as u32)?.tx_packets;
                let (verdict, out) = f.run_tc_repeated(&c.input, c.runs)?;
                assert_eq!(verdict, TC_ACT_REDIRECT, "{what}");
                let got = Encapsulated::parse(&out).unwrap_or_else(|| panic!("{what}: not encapsulated"));
                // The send timestamp is the kernel's clock: take it from the output.
                // Tagged with the connection's key for this direction.
                let hdr = auth::seal(&KEYS.tx, MpHeader::data(TOKEN, subflow, dsn, seq, got.mp().tstamp_us()));
                let inner = c.inner_out.as_deref().unwrap_or(&c.input[ETH_HLEN..]);
                let mut want = encapsulated_as_is(&templates[subflow as usize], hdr, inner);
                // The destination MAC is zeroed for bpf_redirect_neigh, which fills it in.
                want[..6].copy_from_slice(&[0; 6]);
                assert_eq!(got, Encapsulated::parse(&want).expect("built above"), "{what}");
                if let Encapsulated::V4(_, o, _) = got {
                    assert_eq!(ipv4_header_checksum(&o.ip.bytes()), 0, "{what}: outer IPv4 checksum");
                }
                assert_eq!(f.stats(subflow as u32)?.tx_packets, before + 1, "{what}: counted on its subflow");
            }
            Sent::Dropped(r) => {
                let before = f.drops(r)?;
                let (verdict, _) = f.run_tc_repeated(&c.input, c.runs)?;
                assert_eq!(verdict, TC_ACT_SHOT, "{what}");
                assert_eq!(f.drops(r)?, before + 1, "{what}: counted as {r:?}");
            }
        }
    }
    Ok(())
}

fn arp() -> Vec<u8> {
    let mut p = eth([0xff; 6], MAC_A, 0x0806);
    p.extend_from_slice(&[0u8; 28]);
    p
}

#[test]
fn egress_fixtures() -> Result<()> {
    use Sent::*;
    let mut f = Fixture::new()?;
    // Subflow 0: IPv4 outer, 2 ms, priority 1; subflow 1: IPv6 outer, 9 ms, priority 0.
    let templates = [template::ipv4(CL4, CO4, PORT, PORT, 1), template::ipv6(CL6, CO6, PORT, PORT, 1)];
    f.tx_connection(
        (24, [10, 200, 0, 0]),
        &[subflow(templates[0], 2_000, 1), subflow(templates[1], 9_000, 0)],
        Policy::MinRtt,
    )?;
    let bond_frame = |proto: u16, inner: &[u8]| {
        let mut p = eth([0xff; 6], MAC_A, proto);
        p.extend_from_slice(inner);
        p
    };
    let inner = inner_v4(DST);
    let input = bond_frame(ETH_P_IP, &inner);
    let syn4 = |options: Vec<u8>| tcp_v4(DST, TCP_SYN, &options);
    let syn6 = |options: Vec<u8>| tcp_v6(TCP_SYN, &options);
    let policy = |p: Policy| move |f: &mut Fixture| f.set_class_policy(0, ClassPolicy::new(p));
    let mtu = |mtu: usize| move |f: &mut Fixture| f.set_uplink_mtu(mtu as u32);
    let fits = inner.len() + template::V4_OUTER;
    check_egress(
        &mut f,
        &templates,
        vec![
            // The data sequence number counts per connection, the subflow's per subflow.
            case("min-rtt: the 2 ms subflow", input.clone(), Encapsulated { subflow: 0, dsn: 0, seq: 0 }),
            case("min-rtt again", input.clone(), Encapsulated { subflow: 0, dsn: 1, seq: 1 }),
            case(
                "active-backup: the lowest priority value, IPv6 outer",
                input.clone(),
                Encapsulated { subflow: 1, dsn: 2, seq: 0 },
            )
            .after(policy(Policy::ActiveBackup)),
            case(
                "inner IPv6 on the same subflows",
                bond_frame(ETH_P_IPV6, &inner_v6()),
                Encapsulated { subflow: 1, dsn: 3, seq: 1 },
            ),
            case(
                "no connection covers the destination",
                bond_frame(ETH_P_IP, &inner_v4([8, 8, 8, 8])),
                Dropped(DropReason::NoConnection),
            ),
            case("not IP", arp(), Dropped(DropReason::NotIp)),
            // Nothing fragments on the redirect path: refused and counted, to the byte.
            case("one byte too big for the uplink once encapsulated", input.clone(), Dropped(DropReason::TooBig))
                .after(move |f| {
                    policy(Policy::MinRtt)(f)?;
                    mtu(fits - 1)(f)
                }),
            case("a packet that just fits", input.clone(), Encapsulated { subflow: 0, dsn: 4, seq: 2 })
                .after(mtu(fits)),
            // TCP SYNs leave announcing no more than a full segment through
            // the bond carries (bond MTU 1452: 1412 in IPv4, 1392 in IPv6);
            // the output is compared with a packet built and summed afresh.
            case(
                "a SYN announcing 1460",
                bond_frame(ETH_P_IP, &syn4(mss_first(1460))),
                Encapsulated { subflow: 0, dsn: 5, seq: 3 },
            )
            .after(move |f| {
                mtu(1500)(f)?;
                f.set_bond_mtu(1452)
            })
            .inner_out(syn4(mss_first(1412))),
            case(
                "its MSS after other options",
                bond_frame(ETH_P_IP, &syn4(mss_last(9000))),
                Encapsulated { subflow: 0, dsn: 6, seq: 4 },
            )
            .inner_out(syn4(mss_last(1412))),
            case("in IPv6", bond_frame(ETH_P_IPV6, &syn6(mss_last(1440))), Encapsulated { subflow: 0, dsn: 7, seq: 5 })
                .inner_out(syn6(mss_last(1392))),
            case(
                "a SYN announcing less: untouched",
                bond_frame(ETH_P_IP, &syn4(mss_first(1300))),
                Encapsulated { subflow: 0, dsn: 8, seq: 6 },
            ),
            case(
                "a segment that is not a SYN: untouched",
                bond_frame(ETH_P_IP, &tcp_v4(DST, TCP_ACK, &mss_first(1460))),
                Encapsulated { subflow: 0, dsn: 9, seq: 7 },
            ),
            case(
                "no bond MTU known: untouched",
                bond_frame(ETH_P_IP, &syn4(mss_first(1460))),
                Encapsulated { subflow: 0, dsn: 10, seq: 8 },
            )
            .after(|f| f.set_bond_mtu(0)),
            // A second run on the same skb finds it already encapsulated (its
            // outer destination routed into the bond as well), and
            // bpf_skb_adjust_room refuses.
            EgressCase {
                runs: 2,
                ..case("encapsulation refused", input.clone(), Dropped(DropReason::EncapFailed)).after(move |f| {
                    mtu(1500)(f)?;
                    let mut lpm: LpmTrie<_, [u8; 4], u32> =
                        f.ebpf.map_mut(names::CONN_BY_DEST_V4).unwrap().try_into()?;
                    lpm.insert(&Key::new(32, CO4), TOKEN, 0)?;
                    Ok(())
                })
            },
            case("no established subflow", input.clone(), Dropped(DropReason::NoSubflow)).after(|f| {
                let mut c: HashMap<_, u32, Connection> = f.ebpf.map_mut(names::CONNECTIONS).unwrap().try_into()?;
                c.insert(TOKEN, Connection { token: TOKEN, n_subflows: 2, ..Default::default() }, 0)?;
                Ok(())
            }),
        ],
    )
}

/// Copies of a redundant packet: the first copy of a DSN is delivered, the
/// other subflow's copy is dropped and counted, further segments of the
/// winning copy pass, unreplicated packets are never suppressed.
#[test]
fn duplicate_copies_are_suppressed() -> Result<()> {
    use mptcp_common::wire::FLAG_REPLICATED;
    let mut f = Fixture::new()?;
    f.rx_subflow(v4_key(PORT), 0)?;
    f.rx_subflow(v4_key(PORT + 1), 1)?;
    let inner = inner_v4([10, 200, 0, 2]);
    let copy_of = |port: u16, id: u8, dsn: u32, seq: u32, flags: u8, segs: u16| {
        encapsulated(
            &template::ipv4(CL4, CO4, port, PORT, 0),
            MpHeader::data(TOKEN, id, dsn, seq, 0).with_flags(flags).with_segs(segs),
            &inner,
        )
    };
    let copy = |port, id, dsn, seq, flags| copy_of(port, id, dsn, seq, flags, 1);
    // DSN 10: subflow 1's copy first (a GSO packet of two segments), then
    // its further segment, then subflow 0's copy.
    assert_eq!(f.run_xdp(&copy_of(PORT + 1, 1, 10, 0, FLAG_REPLICATED, 2))?.0, XDP_PASS);
    assert_eq!(f.run_xdp(&copy_of(PORT + 1, 1, 10, 0, FLAG_REPLICATED, 2))?.0, XDP_PASS);
    assert_eq!(f.run_xdp(&copy(PORT, 0, 10, 0, FLAG_REPLICATED))?.0, XDP_DROP);
    // DSN 11 the other way round.
    assert_eq!(f.run_xdp(&copy(PORT, 0, 11, 1, FLAG_REPLICATED))?.0, XDP_PASS);
    assert_eq!(f.run_xdp(&copy(PORT + 1, 1, 11, 1, FLAG_REPLICATED))?.0, XDP_DROP);
    assert_eq!(f.drops(DropReason::Duplicate)?, 2);
    // A copy older than the window.
    assert_eq!(f.run_xdp(&copy(PORT, 0, 11 + 4096, 2, FLAG_REPLICATED))?.0, XDP_PASS);
    assert_eq!(f.run_xdp(&copy(PORT + 1, 1, 11, 2, FLAG_REPLICATED))?.0, XDP_DROP);
    assert_eq!(f.drops(DropReason::StaleCopy)?, 1);
    // Unreplicated packets with a DSN seen before are not duplicates.
    assert_eq!(f.run_xdp(&copy(PORT, 0, 10, 3, 0))?.0, XDP_PASS);
    assert_eq!(f.drops(DropReason::Duplicate)?, 2);
    // Every copy was accounted on its subflow, delivered or not.
    assert_eq!(f.stats(0)?.rx_packets + f.stats(1)?.rx_packets, 8);
    Ok(())
}

/// Drop events: while debugging is off a drop is only counted; on, each
/// drop is reported with its reason, where it happened, the packet's length
/// and its first bytes (all of a short one) — on XDP and on tc alike.
#[test]
fn drops_are_reported_with_the_packets_head_only_while_debugging() -> Result<()> {
    use mptcp_common::maps::{HOOK_BOND_EGRESS, HOOK_UPLINK_XDP};
    let mut f = Fixture::new()?;
    let stranger = encapsulated(
        &template::ipv4(CL4, CO4, 40000, PORT, 0),
        MpHeader::data(TOKEN, 0, 0, 0, 0),
        &inner_v4([1, 1, 1, 1]),
    );
    assert_eq!(f.run_xdp(&stranger)?.0, XDP_DROP);
    assert_eq!(f.drops(DropReason::UnknownSubflow)?, 1);
    assert!(f.drop_events()?.is_empty(), "no report while debugging is off");

    f.set_debug(true)?;
    assert_eq!(f.run_xdp(&stranger)?.0, XDP_DROP);
    assert_eq!(f.run_tc(&arp())?.0, TC_ACT_SHOT);
    let events = f.drop_events()?;
    assert_eq!(events.len(), 2, "{events:?}");
    let (e, n) = (&events[0], 64);
    assert_eq!((e.reason, e.hook, e.len as usize), (DropReason::UnknownSubflow as u8, HOOK_UPLINK_XDP, stranger.len()));
    assert_eq!(&e.head[..e.head_len as usize], &stranger[..n], "the first 64 bytes");
    let e = &events[1];
    assert_eq!((e.reason, e.hook), (DropReason::NotIp as u8, HOOK_BOND_EGRESS));
    assert_eq!(&e.head[..e.head_len as usize], &arp()[..], "a short packet whole");
    assert_eq!(f.drops(DropReason::UnknownSubflow)?, 2, "and counted as ever");
    Ok(())
}

/// The names the controller pins, opens and attaches by (`maps::names`,
/// `maps::programs`) are exactly those in the object: a map renamed in the
/// kernel crate alone fails here, not at a user's first start.
#[test]
fn the_object_holds_exactly_the_named_maps_and_programs() -> Result<()> {
    use mptcp_common::maps::programs;
    let f = Fixture::new()?;
    // Sections such as .rodata (the compiler's constants) become maps too.
    let mut maps: Vec<&str> = f.ebpf.maps().map(|(name, _)| name).filter(|n| !n.starts_with('.')).collect();
    let mut want: Vec<&str> =
        names::ALL.iter().chain(names::UNPINNED.iter()).chain([&names::DROP_EVENTS]).copied().collect();
    maps.sort_unstable();
    want.sort_unstable();
    assert_eq!(maps, want);
    let mut progs: Vec<&str> = f.ebpf.programs().map(|(name, _)| name).collect();
    let mut want = programs::ALL.to_vec();
    progs.sort_unstable();
    want.sort_unstable();
    assert_eq!(progs, want);
    Ok(())
}

/// Every program passes the verifier with room to spare: the kernel gives
/// up at 1M instructions explored, and the egress program's policies come
/// near it (they took 96 % before the encapsulation moved into a program of
/// its own). Fails here, with the numbers, before a change fails to load.
#[test]
fn every_program_leaves_the_verifier_room() -> Result<()> {
    use aya::programs::Program;
    use mptcp_common::maps::programs;
    const BUDGET: u32 = 1_000_000;
    let mut f = Fixture::new()?;
    f.load_noops()?;
    let l3: &mut aya::programs::SchedClassifier =
        f.ebpf.program_mut(programs::UPLINK_INGRESS_L3).expect("listed").try_into()?;
    l3.load()?;
    let mut report = Vec::new();
    for name in programs::ALL {
        let info = match f.ebpf.program(name).expect("listed") {
            Program::SchedClassifier(p) => p.info()?,
            Program::Xdp(p) => p.info()?,
            _ => anyhow::bail!("{name}: neither tc nor XDP"),
        };
        report.push((name, info.verified_instruction_count().unwrap_or(0)));
    }
    eprintln!("instructions the verifier explored: {report:?}");
    for (name, n) in report {
        assert!(n < BUDGET * 9 / 10, "{name}: {n} of the verifier's {BUDGET} instructions");
    }
    Ok(())
}
