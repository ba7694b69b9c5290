//! Fixture tests of the kernel programs on BPF_PROG_TEST_RUN: an input packet
//! goes through the real verifier-approved program and the test checks the
//! verdict, the output packet and the counters. Run as root.

use anyhow::Result;
use aya::maps::lpm_trie::Key;
use aya::maps::{HashMap, LpmTrie};
use mptcp_common::checksum::ipv4_header_checksum;
use mptcp_common::maps::{names, Connection, FlowKey};
use mptcp_common::wire::{MpHeader, FAMILY_V6, KIND_CONTROL, MP_HDR_LEN};
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
    let data = |id, seq| MpHeader::data(TOKEN, id, seq, seq, 0);
    let (in4, in6) = (inner_v4([10, 200, 0, 2]), inner_v6());
    let decap = |proto: u16, inner: &[u8]| {
        let mut p = eth(MAC_B, MAC_A, proto);
        p.extend_from_slice(inner);
        Decapsulated(p)
    };
    let junk = inner_v4([1, 1, 1, 1]);
    let mut bad_version = encapsulated(&t4, data(0, 0), &junk);
    bad_version[14 + 28] = 9;
    let full = encapsulated(&t4, data(0, 0), &[]);
    let mut control = encapsulated(&t4, data(0, 0), &[1, 2, 3]);
    control[14 + 28 + 1] = KIND_CONTROL;
    let mut arp = eth([0xff; 6], MAC_A, 0x0806);
    arp.extend_from_slice(&[0u8; 28]);
    check_ingress(
        &mut f,
        vec![
            // Data: decapsulated, the Ethernet header kept with the inner protocol.
            ("IPv4 in IPv4", encapsulated(&t4, data(0, 0), &in4), decap(0x0800, &in4)),
            ("IPv6 in IPv4", encapsulated(&t4, data(0, 1), &in6), decap(0x86dd, &in6)),
            ("IPv4 in IPv6", encapsulated(&t6, data(1, 0), &in4), decap(0x0800, &in4)),
            ("IPv6 in IPv6", encapsulated(&t6, data(1, 1), &in6), decap(0x86dd, &in6)),
            // Refused, each for its reason.
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
    // Only the data packets count as received; a skipped subflow sequence
    // number is a counted gap.
    assert_eq!((f.stats(0)?.rx_packets, f.stats(1)?.rx_packets), (2, 2));
    f.run_xdp(&encapsulated(&t4, data(0, 5), &in4))?;
    assert_eq!(f.stats(0)?.rx_gaps, 3);
    Ok(())
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
    f.set_class_policy(0, ClassPolicy::new(Policy::ActiveBackup))?;
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

    // Too big for the uplink once encapsulated (nothing fragments on the
    // redirect path): refused and counted, to the byte.
    let v4_outer = 20 + 8 + MP_HDR_LEN as u32;
    f.set_uplink_mtu(inner.len() as u32 + v4_outer - 1)?;
    f.set_class_policy(0, ClassPolicy::new(Policy::MinRtt))?;
    assert_eq!(f.run_tc(&input)?.0, TC_ACT_SHOT);
    assert_eq!(f.drops(DropReason::TooBig)?, 1);
    f.set_uplink_mtu(inner.len() as u32 + v4_outer)?;
    assert_eq!(f.run_tc(&input)?.0, TC_ACT_REDIRECT, "a packet that just fits goes");
    f.set_uplink_mtu(1500)?;

    // Encapsulation refused: a second run on the same skb finds it already
    // encapsulated (its outer destination routed into the bond as well), and
    // bpf_skb_adjust_room fails.
    let mut lpm: LpmTrie<_, [u8; 4], u32> = f.ebpf.map_mut(names::CONN_BY_DEST_V4).unwrap().try_into()?;
    lpm.insert(&Key::new(32, CO4), TOKEN, 0)?;
    assert_eq!(f.run_tc_repeated(&input, 2)?.0, TC_ACT_SHOT);
    assert_eq!(f.drops(DropReason::EncapFailed)?, 1);

    // No established subflow.
    let mut c: HashMap<_, u32, Connection> = f.ebpf.map_mut(names::CONNECTIONS).unwrap().try_into()?;
    c.insert(TOKEN, Connection { token: TOKEN, n_subflows: 2, ..Default::default() }, 0)?;
    assert_eq!(f.run_tc(&input)?.0, TC_ACT_SHOT);
    assert_eq!(f.drops(DropReason::NoSubflow)?, 1);
    Ok(())
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
    let copy = |port: u16, id: u8, dsn: u32, seq: u32, flags: u8| {
        encapsulated(
            &template::ipv4(CL4, CO4, port, PORT, 0),
            MpHeader::data(TOKEN, id, dsn, seq, 0).with_flags(flags),
            &inner,
        )
    };
    // DSN 10: subflow 1's copy first, then a further segment of it, then subflow 0's copy.
    assert_eq!(f.run_xdp(&copy(PORT + 1, 1, 10, 0, FLAG_REPLICATED))?.0, XDP_PASS);
    assert_eq!(f.run_xdp(&copy(PORT + 1, 1, 10, 0, FLAG_REPLICATED))?.0, XDP_PASS);
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

/// The names the controller pins, opens and attaches by (`maps::names`,
/// `maps::programs`) are exactly those in the object: a map renamed in the
/// kernel crate alone fails here, not at a user's first start.
#[test]
fn the_object_holds_exactly_the_named_maps_and_programs() -> Result<()> {
    use mptcp_common::maps::programs;
    let f = Fixture::new()?;
    // Sections such as .rodata (the compiler's constants) become maps too.
    let mut maps: Vec<&str> = f.ebpf.maps().map(|(name, _)| name).filter(|n| !n.starts_with('.')).collect();
    let mut want: Vec<&str> = names::ALL.iter().chain(names::UNPINNED.iter()).copied().collect();
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
