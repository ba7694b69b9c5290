//! Data caps end to end: a metered path's budget runs out in the middle of a
//! transfer, the path stops carrying in both directions (the client's data
//! path and, by its hint, the concentrator's) while the transfer finishes on
//! the other path, and the spent budget stays spent across a restart that
//! adopts the data path and across a fresh start — until a new period
//! begins. Real controllers in namespaces; run as root.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use mptcp_common::status::{CapStatus, Status};
use mptcp_testbed::{tcp_bulk, Netns, Testbed};
use mptcp_user::config::Config;
use mptcp_user::datacap::{CapConfig, Period, WhenSpent};
use nix::sys::signal::Signal;
use support::*;

const BUDGET_MB: f64 = 3.0;

/// Removes the test's state directory (the usage file) however the test ends.
struct StateDir(PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn capped_config(state_dir: &std::path::Path) -> Config {
    let mut c = weighted_config("weighted", [1, 1], vec![]);
    c.state_dir = state_dir.to_path_buf();
    c.paths[1].cap =
        Some(CapConfig { budget_mb: BUDGET_MB, period: Period::Day, renews_on: 1, when_spent: WhenSpent::Unused });
    c
}

fn cap(s: &Status) -> CapStatus {
    s.caps.first().cloned().unwrap_or_else(|| panic!("no cap in the status: {s}"))
}

/// Bytes subflow 1 (the capped path) carried, as `inst`'s data path counts them.
fn carried(inst: &Instance, ns: &Netns) -> Result<u64> {
    let s = inst.status(ns)?;
    Ok(s.subflow(1).map_or(0, |f| f.tx_bytes + f.rx_bytes))
}

/// Start the stopped client again from `config`, both its subflows up.
fn start_again(bed: &Testbed, client: &mut Instance, config: &std::path::Path, tag: &str) -> Result<()> {
    let args = ["--config".to_string(), config.display().to_string()];
    client.respawn(&bed.clients[0], &args, tag, "mptcp-user: connected")?;
    wait_subflows(client, &bed.clients[0], 2)
}

#[test]
fn a_spent_data_cap_takes_the_path_out_mid_transfer_and_stays_spent_until_it_renews() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    bed.shape_uplinks(0, 20)?;
    let cl = &bed.clients[0];
    let state = StateDir(std::env::temp_dir().join(format!("{}-state", bed.prefix)));
    let config = capped_config(&state.0);
    let conc = start_conc(&bed, &[])?;
    let mut client = start_client_config(&bed, 0, &config)?;
    let config_file = std::env::temp_dir().join(format!("{}.toml", client.name));
    let s = client.status(cl)?;
    let c = cap(&s);
    assert!(!c.spent && c.budget_bytes == 3_000_000 && c.period == "day", "{s}");
    assert!(client.status(cl)?.caps[0].used_bytes > 0, "the probes count from the start");

    // 8 MB, shared 1:1 by weight: the capped path reaches its 3 MB midway.
    let mut spent_at: Option<(u64, u64, u64)> = None;
    let ((), t) = transfer_across(&bed, cl, 5001, 8_000_000, (Duration::ZERO, Duration::from_secs(60)), || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let s = client.status(cl)?;
            if cap(&s).spent {
                spent_at = Some((cap(&s).used_bytes, carried(&client, cl)?, carried(&conc, &bed.conc)?));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("the budget was never spent: {}", client.status(cl)?)
    })?;
    let (used_then, client_then, conc_then) = spent_at.expect("the event saw the budget spent");
    eprintln!("8 MB in {:?}; budget spent at {used_then} bytes", t.duration);
    // Counted from the data path's counters every tick: at 20 Mbit/s a tick
    // is some 125 kB; allow a few late ticks.
    assert!((3_000_000..3_600_000).contains(&used_then), "spent once 3 MB were used, not much later: {used_then}");
    std::thread::sleep(Duration::from_millis(500));
    let s = client.status(cl)?;
    let (client_after, conc_after) = (carried(&client, cl)?, carried(&conc, &bed.conc)?);
    eprintln!(
        "capped path after the budget was spent: client +{} bytes, concentrator +{} bytes",
        client_after - client_then,
        conc_after - conc_then
    );
    // What was in flight at that tick and the ACKs of it: a few packets.
    assert!(client_after - client_then < 150_000, "the client went on using the spent path: {s}");
    assert!(conc_after - conc_then < 150_000, "the concentrator went on using the spent path");
    assert!(sub(&s, 0).tx_bytes > 4_500_000, "the other path carried the rest: {s}");
    assert!(sub(&s, 1).unused, "the client's subflow is left unused: {s}");
    wait_status(&conc, &bed.conc, "the concentrator leaves the spent path unused", |s| {
        s.subflow(1).is_some_and(|f| f.unused)
    })?;
    let (ok, out) = cli(&client, cl, &["status"])?;
    assert!(ok && out.contains("cap u1:") && out.contains("SPENT: unused"), "{out}");
    let (ok, out) = cli(&client, cl, &["path", "set", "u1", "--weight", "1"])?;
    assert!(ok && out.contains("data cap spent: unused until it renews"), "path set says what the path is: {out}");

    // Kept across a restart that adopts the data path (SIGTERM), and across a
    // fresh start with a new connection (Ctrl-C removes the data path).
    for (signal, tag) in [(Signal::SIGTERM, "adopting"), (Signal::SIGINT, "fresh")] {
        client.stop(signal)?;
        start_again(&bed, &mut client, &config_file, tag)?;
        let s = client.status(cl)?;
        assert!(cap(&s).spent && cap(&s).used_bytes >= used_then, "{tag}: the budget stays spent: {s}");
        let before = carried(&client, cl)?;
        tcp_bulk(&bed.server, cl, server(5002), 2_000_000, Duration::from_secs(30))?;
        let after = carried(&client, cl)?;
        assert!(
            after - before < 20_000,
            "{tag}: 2 MB sent with the budget spent, {} bytes on the capped path",
            after - before
        );
    }
    assert!(client.output().contains("data cap spent in this period"), "{}", client.output());

    // A new period began while the controller was stopped: the path is used again.
    client.stop(Signal::SIGTERM)?;
    let file = state.0.join(format!("{}.usage.json", client.name));
    let mut usage: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    assert!(usage["u1"]["used_bytes"].as_u64().unwrap() >= used_then, "{usage}");
    usage["u1"]["period"] = "2020-01-01".into(); // counted in a period long past
    std::fs::write(&file, usage.to_string())?;
    start_again(&bed, &mut client, &config_file, "renewed")?;
    let s = client.status(cl)?;
    assert!(!cap(&s).spent && cap(&s).used_bytes < 1_000_000, "a new period, a new budget: {s}");
    // The restarted client adopted the data path; the concentrator hears the
    // renewed hint all the same, and sends on the path again. (It may still
    // hold the connection before the fresh start, until it collects it.)
    let token = s.connections[0].token.clone();
    wait_status(&conc, &bed.conc, "the concentrator uses the renewed path again", |s| {
        let live = s.connections.iter().find(|c| c.token == token);
        live.and_then(|c| c.subflows.iter().find(|f| f.id == 1)).is_some_and(|f| !f.unused)
    })?;
    let before = carried(&client, cl)?;
    tcp_bulk(&bed.server, cl, server(5003), 2_000_000, Duration::from_secs(30))?;
    assert!(carried(&client, cl)? - before > 500_000, "the renewed path carries its share again");
    Ok(())
}

/// A concentrator path takes no cap, nor does native mode: refused by
/// `config check`, naming why.
#[test]
fn caps_where_nothing_can_count_them_are_refused() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mptcp-cap-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _guard = StateDir(dir.clone());
    let key = key_file();
    let cases = [
        (
            format!(
                "role = \"concentrator\"\nkey_file = \"{key}\"\n[[path]]\ninterface = \"eth0\"\n[path.cap]\nbudget_mb = 5\n"
            ),
            "a data cap belongs on the client's path",
        ),
        (
            "role = \"client\"\nmode = \"mptcp\"\n[[path]]\ninterface = \"eth0\"\n[path.cap]\nbudget_mb = 5\n".to_string(),
            "data caps are for mode = \"bond\"",
        ),
        (
            format!(
                "role = \"client\"\nkey_file = \"{key}\"\n[bond]\naddresses = [\"10.99.0.2/32\"]\n[[path]]\ninterface = \"eth0\"\nremote = \"192.0.2.1\"\n[path.cap]\nbudget_mb = 5\nperiod = \"week\"\nrenews_on = 9\n"
            ),
            "cap.renews_on 9 is not a day of the week",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("{i}.toml"));
        std::fs::write(&f, text)?;
        let out = std::process::Command::new(BIN).args(["config", "check", &f.display().to_string()]).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "case {i}: want {want:?}, got {err}");
    }
    Ok(())
}
