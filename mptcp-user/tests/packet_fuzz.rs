//! The packet fuzzer's bounded run ([`mptcp_harness::fuzz`]): generated and
//! mutated packets through the real XDP and tc programs on
//! BPF_PROG_TEST_RUN, each verdict and output packet equal to the host
//! reference's. `cargo xtask fuzz` runs it with a million packets per
//! program or more (`MPTCP_FUZZ_PACKETS`). Run as root.

use anyhow::Result;
use mptcp_harness::fuzz;

/// Packets in a run: `MPTCP_FUZZ_PACKETS`, else enough to cover every kind
/// of damage many times over in a few seconds.
fn packets() -> u64 {
    std::env::var("MPTCP_FUZZ_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// The generators' seed: `MPTCP_FUZZ_SEED`, else a fixed one (the run
/// prints it; the same seed makes the same packets).
fn seed() -> u64 {
    std::env::var("MPTCP_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x6d70_7463)
}

#[test]
fn uplink_ingress_agrees_with_the_host_reference_on_fuzzed_packets() -> Result<()> {
    let seed = seed();
    let report = fuzz::fuzz_ingress(packets(), seed)?;
    eprintln!("seed {seed:#x}: {report}");
    // Every kind of packet reached every verdict it can.
    assert!(report.by_kind.iter().all(|&n| n > 0), "{report}");
    assert!(report.delivered > 0 && report.passed_untouched > 0, "{report}");
    for reason in ["truncated", "bad-header", "unknown-subflow", "bad-token", "forged", "replayed", "duplicate"] {
        assert!(report.drops.get(reason).is_some_and(|&n| n > 0), "no packet dropped as {reason}: {report}");
    }
    Ok(())
}

#[test]
fn bond_egress_agrees_with_the_host_reference_on_fuzzed_frames() -> Result<()> {
    let seed = seed();
    let report = fuzz::fuzz_egress(packets(), seed)?;
    eprintln!("seed {seed:#x}: {report}");
    assert!(report.sent.iter().all(|&n| n > 0), "{report}");
    for reason in ["not-ip", "no-connection", "too-big"] {
        assert!(report.drops.get(reason).is_some_and(|&n| n > 0), "no frame dropped as {reason}: {report}");
    }
    Ok(())
}
