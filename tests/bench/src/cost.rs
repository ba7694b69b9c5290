//! Per-packet cost of the kernel programs on BPF_PROG_TEST_RUN: the verified
//! programs run on a realistic connection (two IPv4 subflows under min-rtt),
//! each run timed by the kernel, next to an empty program of the same type.

use anyhow::{ensure, Context, Result};
use mptcp_common::maps::programs;
use mptcp_common::wire::MpHeader;
use mptcp_common::{template, Policy};
use mptcp_harness::*;
use mptcp_testbed::traffic::median;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Cost {
    /// Timed single runs per program (after a warm-up).
    pub samples: usize,
    /// Medians, nanoseconds per packet.
    pub egress_ns: f64,
    pub ingress_ns: f64,
    pub noop_tc_ns: f64,
    pub noop_xdp_ns: f64,
}

pub fn measure(samples: usize) -> Result<Cost> {
    let mut f = Fixture::new()?;
    f.load_noops()?;
    let far = [10, 2, 0, 1];
    f.tx_connection(
        (24, [10, 200, 0, 0]),
        &[
            subflow(template::ipv4(CL4, CO4, PORT, PORT, 1), 2_000, 0),
            subflow(template::ipv4(CL4, far, PORT, PORT, 1), 9_000, 1),
        ],
        Policy::MinRtt,
    )?;
    f.rx_subflow(v4_key(PORT), 0)?;
    let mut egress_in = eth([0xff; 6], MAC_A, 0x0800);
    egress_in.extend_from_slice(&inner_v4([10, 200, 0, 2]));
    // Each ingress run a packet the receiver has not taken yet (its tag
    // and replay window checked, as on the wire): subflow sequence numbers
    // go on from run to run.
    let mut seq = 0u32;
    let mut ingress_in = |_| {
        seq += 1;
        encapsulated(
            &template::ipv4(CL4, CO4, PORT, PORT, 0),
            MpHeader::data(TOKEN, 0, seq, seq, 0),
            &inner_v4([10, 200, 0, 2]),
        )
    };
    let mut egress_in = |_| egress_in.clone();
    let mut time = |name: &str, input: &mut dyn FnMut(usize) -> Vec<u8>, want: u32| -> Result<f64> {
        f.time_runs(name, input, samples / 10)?; // warm caches and branch predictors
        let (verdict, t) = f.time_runs(name, input, samples)?;
        ensure!(verdict == want, "{name} returned {verdict}, expected {want}: the measured path is not the real one");
        median(t.into_iter().map(|ns| ns as f64)).context("no timed runs")
    };
    Ok(Cost {
        samples,
        egress_ns: time(programs::BOND_EGRESS, &mut egress_in, TC_ACT_REDIRECT)?,
        ingress_ns: time(programs::UPLINK_INGRESS, &mut ingress_in, XDP_PASS)?,
        noop_tc_ns: time(programs::NOOP_TC, &mut egress_in, 0)?,
        noop_xdp_ns: time(programs::NOOP_XDP, &mut ingress_in, XDP_PASS)?,
    })
}
