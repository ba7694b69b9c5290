//! Differential test: for random path states and packets, the subflow the
//! verified eBPF egress program picks (on BPF_PROG_TEST_RUN) is the subflow
//! the host's `mptcp_common::policy::decide` picks for the same maps, and the
//! weighted policy's state advances identically. Run as root.

use anyhow::{Context, Result};
use aya::maps::HashMap;
use mptcp_common::classify::{ClassRule, IPPROTO_UDP};
use mptcp_common::maps::{
    names, Connection, FlowletKey, PathState, Subflow, TxState, MAX_SUBFLOWS, PATH_BACKUP, PATH_ESTABLISHED,
    PATH_UNBRIDGEABLE, PATH_UP,
};
use mptcp_common::policy::{commit, decide, ConnectionPaths, FlowletEntry, SchedState, MAX_LOSS_PPM};
use mptcp_common::wire::wire_len;
use mptcp_common::{template, ClassPolicy, Policy};
use mptcp_harness::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random_path(rng: &mut StdRng) -> PathState {
    let flags = [0, PATH_ESTABLISHED, PATH_ESTABLISHED | PATH_UP, PATH_ESTABLISHED | PATH_UP | PATH_BACKUP]
        [rng.gen_range(0..4)]
        | if rng.gen_bool(0.2) { PATH_UNBRIDGEABLE } else { 0 };
    PathState {
        flags,
        priority: rng.gen_range(0..3),
        srtt_us: if rng.gen_bool(0.1) { 0 } else { rng.gen_range(100..200_000) },
        rttvar_us: 0,
        rate_bytes_per_sec: if rng.gen_bool(0.2) { 0 } else { rng.gen_range(10_000..50_000_000) },
        weight: rng.gen_range(0..5),
        owd_us: if rng.gen_bool(0.5) { 0 } else { rng.gen_range(50..100_000) },
        queue_us: if rng.gen_bool(0.5) { 0 } else { rng.gen_range(1_000..400_000) },
        loss_ppm: if rng.gen_bool(0.7) { 0 } else { rng.gen_range(1..=MAX_LOSS_PPM) },
    }
}

#[test]
fn the_kernel_program_and_the_host_function_choose_the_same_subflow() -> Result<()> {
    let mut f = Fixture::new()?;
    let mut rng = StdRng::seed_from_u64(0x5eed_0004);
    let prefix = (24, [10, 200, 0, 0]);
    // A rule sending UDP to class 3, to check classification on the way.
    let rule = ClassRule { class: 3, proto: IPPROTO_UDP, ..Default::default() };
    let mut input = eth([0xff; 6], MAC_A, 0x0800);
    input.extend_from_slice(&inner_v4([10, 200, 0, 2])); // ICMP: the default class
    let mut compared = [0u32; Policy::ALL.len()];
    for case in 0..400 {
        let n = rng.gen_range(1..=MAX_SUBFLOWS);
        let subs: Vec<(Subflow, bool)> = (0..n)
            .map(|i| {
                let t = template::ipv4(CL4, CO4, PORT + i as u16, PORT, 1);
                (Subflow { outer: t, path: random_path(&mut rng) }, true)
            })
            .collect();
        let policy = Policy::ALL[rng.gen_range(0..Policy::ALL.len())];
        let class = ClassPolicy::new(policy).with_base(Policy::ALL[rng.gen_range(0..Policy::ALL.len())]);
        f.tx_connection(prefix, &subs, Policy::MinRtt)?;
        f.set_class_policy(0, class)?;
        f.set_class_policy(3, ClassPolicy::new(Policy::ActiveBackup))?;
        f.set_rules(&[rule])?;
        // Weighted's tags at random; buckets idle (full on both sides, whatever
        // the clock) or, for half the subflows, frozen at a random credit: a
        // bucket last charged in the future has not refilled, on either side.
        let mut tx = TxState::default();
        for b in tx.buckets.iter_mut() {
            if rng.gen_bool(0.5) {
                b.credit = rng.gen_range(-2_000_000..200_000);
                b.last_ns = u64::MAX / 2;
            }
        }
        tx.sched.wrr_clock = rng.gen_range(0..1 << 30);
        for t in tx.sched.wrr_finish.iter_mut() {
            *t = rng.gen_range(0..1 << 31);
        }
        let mut txs: HashMap<_, u32, TxState> = f.ebpf.map_mut(names::TX_STATE).unwrap().try_into()?;
        txs.insert(TOKEN, tx, 0)?;
        // No flow has a placement yet (flowlet's entries hold kernel times).
        let mut flows: HashMap<_, FlowletKey, FlowletEntry> = f.ebpf.map_mut(names::FLOWLETS).unwrap().try_into()?;
        for k in flows.keys().flatten().collect::<Vec<_>>() {
            flows.remove(&k)?;
        }
        let conns: HashMap<_, u32, Connection> = f.ebpf.map(names::CONNECTIONS).unwrap().try_into()?;
        let conn = conns.get(&TOKEN, 0)?;

        let states: Vec<PathState> = conn.subflows[..n].iter().map(|s| s.path).collect();
        let host = ConnectionPaths { states: &states, buckets: &tx.buckets, now_ns: 1 << 50 };
        let wire = wire_len((input.len() - 14) as u32, 1);
        let want = decide(class, &host, wire, host.now_ns, &tx.sched, &FlowletEntry::default());
        let (verdict, out) = f.run_tc(&input)?;
        match want {
            None => assert_eq!(verdict, TC_ACT_SHOT, "case {case}: no established subflow, the packet must drop"),
            Some(d) => {
                assert_eq!(verdict, TC_ACT_REDIRECT, "case {case}");
                let hdr = Encapsulated::parse(&out).expect("encapsulated").mp();
                assert_eq!(
                    hdr.subflow_id as usize,
                    d.subflow,
                    "case {case}: {} over {:#?}",
                    policy.name(),
                    &conn.subflows[..n]
                );
                let mut sched: SchedState = tx.sched;
                commit(&d, &host, wire, host.now_ns, &mut sched, &mut FlowletEntry::default(), false);
                let txs: HashMap<_, u32, TxState> = f.ebpf.map(names::TX_STATE).unwrap().try_into()?;
                assert_eq!(txs.get(&TOKEN, 0)?.sched, sched, "case {case}: weighted's tags");
                compared[policy as usize] += 1;
            }
        }
    }
    for p in Policy::ALL {
        assert!(compared[p as usize] >= 20, "too few comparisons of {}: {compared:?}", p.name());
    }

    // A UDP packet matches the rule: class 3, active-backup.
    let mut f2 = Fixture::new()?;
    f2.tx_connection(
        prefix,
        &[
            subflow(template::ipv4(CL4, CO4, PORT, PORT, 1), 1_000, 1),
            subflow(template::ipv4(CL4, CO4, PORT + 1, PORT, 1), 9_000, 0),
        ],
        Policy::MinRtt,
    )?;
    f2.set_class_policy(3, ClassPolicy::new(Policy::ActiveBackup))?;
    let udp = udp_v4([10, 200, 0, 2], 4000, 53);
    let mut input = eth([0xff; 6], MAC_A, 0x0800);
    input.extend_from_slice(&udp);
    let pick = |f: &mut Fixture, input: &[u8]| -> Result<u8> {
        let (_, out) = f.run_tc(input)?;
        Ok(Encapsulated::parse(&out).context("not encapsulated")?.mp().subflow_id)
    };
    assert_eq!(pick(&mut f2, &input)?, 0, "no rules: the default class, min-rtt");
    f2.set_rules(&[rule])?;
    assert_eq!(pick(&mut f2, &input)?, 1, "UDP rule: class 3, active-backup");
    Ok(())
}
