//! `status`: per-subflow state and counters. A running controller answers
//! it (with its estimates from feedback); without one, the CLI reads the
//! pinned maps itself, so it works while the data path runs alone.

use anyhow::{bail, Result};
use mptcp_common::maps::{SubflowKey, PATH_UNBRIDGEABLE};

use crate::bpfmaps::DataPathMaps;
use crate::lifecycle::{pin_dir, InstanceState};
use crate::subflows::Endpoints;

pub use mptcp_common::status::{ClassStatus, ConnectionStatus, PathStatus, Status, SubflowState, SubflowStatus};

/// The instance's status: from its controller, or from the pinned maps
/// when no controller runs (then without estimates).
pub fn query(instance: &str) -> Result<Status> {
    match crate::ctl::call(instance, &crate::ctl::Request::Status) {
        Ok(crate::ctl::Response::Status(s)) => Ok(*s),
        Ok(other) => bail!("unexpected answer to a status request: {other:?}"),
        Err(crate::ctl::CallError::NoController { .. }) => collect(instance),
        Err(e) => Err(e.into()),
    }
}

/// Status read from the pinned maps (no controller involved).
pub fn collect(instance: &str) -> Result<Status> {
    let dir = pin_dir(instance);
    if !dir.exists() {
        bail!("instance {instance} is not running (no pins under {})", dir.display());
    }
    let state = InstanceState::load(instance)?;
    let pid = state.as_ref().and_then(|s| s.live_pid());
    collect_from(instance, &DataPathMaps::open(&dir)?, state, pid, &[])
}

/// Status of `maps`, with a controller's estimates.
pub fn collect_from(
    instance: &str,
    maps: &DataPathMaps,
    state: Option<InstanceState>,
    controller_pid: Option<u32>,
    estimates: &[crate::estimate::SubflowEstimate],
) -> Result<Status> {
    let mut connections = Vec::new();
    let mut conns = maps.connections();
    conns.sort_by_key(|c| c.token);
    for c in conns {
        let mut subflows = Vec::new();
        for (id, s) in c.subflows.iter().enumerate() {
            if !s.path.established() {
                continue;
            }
            let ep = Endpoints::from_subflow(s);
            let st = maps.subflow_stats(SubflowKey { token: c.token, subflow_id: id as u32 });
            let est = estimates.iter().find(|e| e.token == c.token && e.subflow as usize == id).map(|e| e.estimate);
            let lost = st.rx_lost();
            let path = match &state {
                Some(i) if i.role == crate::config::Role::Client => i.path_names.get(id).cloned().unwrap_or_default(),
                Some(i) => i
                    .uplink_indexes
                    .iter()
                    .position(|x| *x == ep.ifindex)
                    .and_then(|k| i.uplinks.get(k).cloned())
                    .unwrap_or_else(|| format!("#{}", ep.ifindex)),
                None => format!("#{}", ep.ifindex),
            };
            subflows.push(SubflowStatus {
                id: id as u32,
                path,
                local: ep.local.to_string(),
                remote: ep.remote.to_string(),
                state: if s.path.up() { SubflowState::Up } else { SubflowState::Down },
                backup: s.path.backup(),
                unused: s.path.unused(),
                priority: s.path.priority,
                weight: s.path.weight,
                rate_mbit: s.path.rate_bytes_per_sec as f64 * 8.0 / 1e6,
                srtt_us: s.path.srtt_us,
                rttvar_us: s.path.rttvar_us,
                owd_us: s.path.owd_us,
                buffer_ms: s.path.queue_us as f64 / 1000.0,
                unbridgeable: s.path.flags & PATH_UNBRIDGEABLE != 0,
                random_loss_pct: s.path.loss_ppm as f64 / 1e4,
                delivery_mbit: est.map(|e| e.delivery_bytes_per_sec as f64 * 8.0 / 1e6),
                peer_loss_pct: est.map(|e| e.loss * 100.0),
                rx_loss: if st.rx_packets + lost == 0 { 0.0 } else { lost as f64 / (st.rx_packets + lost) as f64 },
                tx_packets: st.tx_packets,
                tx_bytes: st.tx_bytes,
                rx_packets: st.rx_packets,
                rx_bytes: st.rx_bytes,
                rx_gaps: st.rx_gaps,
                rx_late: st.rx_late,
                retransmits: 0,
            });
        }
        connections.push(ConnectionStatus {
            token: format!("{:08x}", c.token),
            prefixes: maps.prefixes_of(c.token).iter().map(|p| p.to_string()).collect(),
            subflows,
        });
    }
    let class_names = match state.as_ref().map(|s| s.classes.clone()) {
        Some(names) if !names.is_empty() => names,
        _ => vec![crate::classes::DEFAULT_CLASS_NAME.to_string()],
    };
    let classes = class_names
        .into_iter()
        .enumerate()
        .map(|(id, name)| ClassStatus {
            name,
            policy: maps.class_policy(id as u32).map(crate::classes::describe).unwrap_or_else(|e| e.to_string()),
        })
        .collect();
    Ok(Status {
        instance: instance.to_string(),
        mode: Some("bond".into()),
        role: state.as_ref().map(|s| format!("{:?}", s.role).to_lowercase()),
        bond: state.as_ref().map(|s| s.bond.clone()),
        controller_pid,
        policy: maps.class_policy(0).map(crate::classes::describe).unwrap_or_else(|e| e.to_string()),
        connections,
        drops: maps.drops().into_iter().map(|(r, n)| (r.name().to_string(), n)).collect(),
        control: maps.control_counters().into_iter().map(|(c, n)| (c.name().to_string(), n)).collect(),
        paths: Vec::new(),
        caps: Vec::new(),
        classes,
    })
}

pub fn print_table(s: &Status) {
    if s.mode.as_deref() == Some("mptcp") {
        return print_native(s);
    }
    println!(
        "instance {}: {} bond {} policy {} controller {}",
        s.instance,
        s.role.as_deref().unwrap_or("?"),
        s.bond.as_deref().unwrap_or("?"),
        s.policy,
        s.controller_pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "not running (data path only)".into())
    );
    if s.classes.len() > 1 {
        println!("{}", classes_line(s));
    }
    if s.connections.is_empty() {
        println!("no connections");
    }
    for c in &s.connections {
        println!("connection {}  prefixes {}", c.token, c.prefixes.join(" "));
        println!(
            "  {:>2} {:<10} {:<24} {:<24} {:<5} {:>8} {:>6} {:>10} {:>12} {:>10} {:>12}",
            "id", "path", "local", "remote", "state", "rtt_ms", "loss%", "tx_pkts", "tx_bytes", "rx_pkts", "rx_bytes"
        );
        for f in &c.subflows {
            let state = crate::watch::state(f);
            println!(
                "  {:>2} {:<10} {:<24} {:<24} {:<5} {:>8.2} {:>6.2} {:>10} {:>12} {:>10} {:>12}",
                f.id,
                f.path,
                f.local,
                f.remote,
                state,
                f.srtt_us as f64 / 1000.0,
                f.rx_loss * 100.0,
                f.tx_packets,
                f.tx_bytes,
                f.rx_packets,
                f.rx_bytes
            );
        }
    }
    for c in &s.caps {
        println!("{}", cap_line(c));
    }
    let drops: Vec<String> = s.drops.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    println!("drops: {}", if drops.is_empty() { "none".to_string() } else { drops.join(", ") });
    let ctl: Vec<String> = s.control.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("control: {}", ctl.join(", "));
}

/// "classes: default auto (min-rtt), voice active-backup".
pub fn classes_line(s: &Status) -> String {
    let all: Vec<String> = s.classes.iter().map(|c| format!("{} {}", c.name, c.policy)).collect();
    format!("classes: {}", all.join(", "))
}

/// One line of a path's data cap: "cap lte: 1.25 of 20.00 GB this month
/// (6 %), renews 2026-12-15 00:00; spent: backup only".
pub fn cap_line(c: &mptcp_common::status::CapStatus) -> String {
    let renews = chrono::DateTime::from_timestamp(c.renews_at, 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "?".into());
    let pct = if c.budget_bytes == 0 { 0.0 } else { c.used_bytes as f64 * 100.0 / c.budget_bytes as f64 };
    let spent = match (c.spent, c.when_spent.as_str()) {
        (false, _) => String::new(),
        (true, "unused") => "; SPENT: unused until then".into(),
        (true, _) => "; SPENT: backup only until then".into(),
    };
    format!(
        "cap {}: {} of {} this {} ({pct:.0} %), renews {renews}{spent}",
        c.path,
        bytes(c.used_bytes),
        bytes(c.budget_bytes),
        c.period
    )
}

/// Bytes in the unit a plan is sold in.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} MB", n as f64 / 1e6),
        n => format!("{:.1} kB", n as f64 / 1e3),
    }
}

/// Native mode's status: the paths and their endpoints.
fn print_native(s: &Status) {
    println!(
        "instance {}: {} (native MPTCP) policy {} controller {}",
        s.instance,
        s.role.as_deref().unwrap_or("?"),
        s.policy,
        s.controller_pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "not running".into())
    );
    println!(
        "  {:<10} {:<10} {:<24} {:>8} {:<5} {:>8} {:>8} {:>9}",
        "path", "interface", "address", "endpoint", "state", "rtt_ms", "answers", "cap_mbit"
    );
    for p in &s.paths {
        let state = if p.backup { format!("{}/b", p.state) } else { p.state.to_string() };
        println!(
            "  {:<10} {:<10} {:<24} {:>8} {:<5} {:>8.2} {:>8} {:>9}",
            p.name,
            p.interface,
            p.address.as_deref().unwrap_or("-"),
            p.endpoint.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
            state,
            p.srtt_us as f64 / 1000.0,
            p.probes_answered.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            p.cap_mbit.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into())
        );
    }
    for c in &s.connections {
        println!("connection {}", c.token);
        println!(
            "  {:<10} {:<24} {:<24} {:<6} {:>8} {:>12} {:>12} {:>8}",
            "path", "local", "remote", "state", "rtt_ms", "acked", "received", "retrans"
        );
        for f in &c.subflows {
            println!(
                "  {:<10} {:<24} {:<24} {:<6} {:>8.2} {:>12} {:>12} {:>8}",
                f.path,
                f.local,
                f.remote,
                if f.backup { "backup" } else { "active" },
                f.srtt_us as f64 / 1000.0,
                f.tx_bytes,
                f.rx_bytes,
                f.retransmits
            );
        }
    }
    let ctl: Vec<String> = s.control.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("control: {}", ctl.join(", "));
}
