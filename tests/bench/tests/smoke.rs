//! The benchmark runs end to end on a scenario that is not in the repository:
//! every system carries traffic through the emulator, the report, plots and
//! JSON appear, and a bad scenario is refused with the field named. Run as root.

use std::path::PathBuf;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_mptcp-bench");

fn controller() -> PathBuf {
    // `cargo xtask test` builds the whole workspace first, mptcp-user included.
    PathBuf::from(BENCH).with_file_name("mptcp-user")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mptcp-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_scenario_from_anywhere_runs_its_systems_and_reports() {
    let dir = scratch("smoke");
    let scenario = dir.join("smoke.toml");
    std::fs::write(
        &scenario,
        r#"
description = "smoke: two 8 Mbit/s links, one dies"
duration_s = 4
systems = ["single-path", "kernel-mptcp", "native:active-backup", "bond:min-rtt", "bond:active-backup"]
[[link]]
name = "one"
rate_mbit = 8
delay_ms = 5
[[link]]
name = "two"
rate_mbit = 8
delay_ms = 10
[[traffic]]
kind = "tcp-bulk"
[[traffic]]
kind = "udp-probe"
pps = 200
[[event]]
at_s = 2
link = "one"
action = "down"
[bond]
probe_interval_ms = 50
"#,
    )
    .unwrap();
    let out = Command::new(BENCH)
        .args(["--scenario", scenario.to_str().unwrap(), "--json", "--cost-samples", "2000", "--out"])
        .arg(dir.join("report"))
        .arg("--controller")
        .arg(controller())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let systems = summary["systems"].as_array().unwrap();
    let labels: Vec<&str> = systems.iter().map(|s| s["system"].as_str().unwrap()).collect();
    assert_eq!(labels[..2], ["single-path", "kernel-mptcp"]);
    assert!(labels.contains(&"bond:min-rtt") && labels.contains(&"bond:active-backup"), "{labels:?}");
    for s in systems {
        let g = s["goodput_mbit"].as_f64().unwrap();
        assert!(g > 1.0 && g < 16.0, "{}: goodput {g} Mbit/s over 2 × 8 Mbit/s links", s["system"]);
        assert!(s["udp_gap_ms"].as_f64().unwrap() >= 0.0);
    }
    // Single-path TCP rides link one, which dies: its probe stream never recovers.
    let single = &systems[0];
    assert!(single["udp_gap_ms"].as_f64().unwrap() > 1500.0, "{single}");
    assert!(single["recovery_s"].is_null());
    // The bond moves the probe stream to the surviving link.
    for s in systems.iter().filter(|s| s["system"].as_str().unwrap().starts_with("bond")) {
        assert!(s["udp_gap_ms"].as_f64().unwrap() < 1500.0, "{s}");
        assert!(s["controller_rss_mib"].as_f64().unwrap() > 1.0);
    }
    // Native mode moves the MPTCP flow off the dead link (UDP is not MPTCP:
    // it stays on the first subflow's route, as with kernel MPTCP).
    let native = systems.iter().find(|s| s["system"] == "native:active-backup").expect("native ran");
    assert!(native["tcp_gap_ms"].as_f64().unwrap() < 1500.0, "{native}");
    assert!(native["controller_rss_mib"].as_f64().unwrap() > 1.0, "{native}");
    let cost = &summary["datapath_cost"];
    assert!(cost["egress_ns"].as_f64().unwrap() > cost["noop_tc_ns"].as_f64().unwrap(), "{cost}");
    for f in
        ["report.md", "goodput.png", "bond_min-rtt.png", "kernel-mptcp.png", "native_active-backup.png", "results.json"]
    {
        assert!(dir.join("report").join(f).exists(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_scenario_is_refused_naming_the_field() {
    let dir = scratch("bad");
    let scenario = dir.join("bad.toml");
    std::fs::write(
        &scenario,
        "duration_s = 5\n[[link]]\nname = \"a\"\nrate_mbit = 5\nlatency_ms = 3\n[[traffic]]\nkind = \"tcp-bulk\"\n",
    )
    .unwrap();
    let out = Command::new(BENCH).args(["--scenario", scenario.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("latency_ms") && stderr.contains("bad.toml"), "{stderr}");
    let out = Command::new(BENCH).args(["--scenario", "/nonexistent/x.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read scenario /nonexistent/x.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}
