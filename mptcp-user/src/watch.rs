//! `status --watch`: the status again every interval, with what only two
//! snapshots tell: each subflow's current send and receive rates and its
//! share of what the connection sends. On a terminal the table is redrawn
//! in place; otherwise (a pipe, a log) each refresh is one line per
//! subflow, and `--json` one JSON object per refresh.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::status::{query, Status};

/// A subflow's rates between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SubflowRate {
    pub tx_mbit: f64,
    pub rx_mbit: f64,
    /// Of the bytes its connection sent over the interval (0..=1).
    pub share: f64,
}

/// (connection token, subflow id).
pub type SubflowName = (String, u32);

/// Each subflow's rates from `before` to `after`, `secs` apart (subflows
/// new in `after` are left out; a counter that went back, as after a
/// restart, counts as 0).
pub fn rates(before: &Status, after: &Status, secs: f64) -> BTreeMap<SubflowName, SubflowRate> {
    let was: BTreeMap<SubflowName, (u64, u64)> = before
        .connections
        .iter()
        .flat_map(|c| c.subflows.iter().map(move |f| ((c.token.clone(), f.id), (f.tx_bytes, f.rx_bytes))))
        .collect();
    let mut out = BTreeMap::new();
    for c in &after.connections {
        let sent: Vec<(u32, u64, u64)> = c
            .subflows
            .iter()
            .filter_map(|f| {
                let (tx, rx) = was.get(&(c.token.clone(), f.id))?;
                Some((f.id, f.tx_bytes.saturating_sub(*tx), f.rx_bytes.saturating_sub(*rx)))
            })
            .collect();
        let total: u64 = sent.iter().map(|(_, tx, _)| tx).sum();
        for (id, tx, rx) in sent {
            let mbit = |bytes: u64| if secs > 0.0 { bytes as f64 * 8.0 / secs / 1e6 } else { 0.0 };
            let share = if total > 0 { tx as f64 / total as f64 } else { 0.0 };
            out.insert((c.token.clone(), id), SubflowRate { tx_mbit: mbit(tx), rx_mbit: mbit(rx), share });
        }
    }
    out
}

/// One `--json` refresh.
#[derive(Serialize)]
struct Frame<'a> {
    /// Seconds since the Unix epoch.
    time: f64,
    status: &'a Status,
    /// `"token/id"` → rates.
    rates: BTreeMap<String, SubflowRate>,
}

/// Show the instance's status every `interval` until interrupted. An error
/// reading it (the controller restarting) is shown and the watch goes on.
pub fn run(instance: &str, interval: Duration, json: bool) -> Result<()> {
    let tty = std::io::stdout().is_terminal() && !json;
    let mut last: Option<(Instant, Status)> = None;
    loop {
        let now = Instant::now();
        let mut out = std::io::stdout().lock();
        match query(instance) {
            Ok(s) => {
                let r =
                    last.as_ref().map(|(t, b)| rates(b, &s, now.duration_since(*t).as_secs_f64())).unwrap_or_default();
                let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                if json {
                    let rates = r.iter().map(|((t, id), v)| (format!("{t}/{id}"), *v)).collect();
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string(&Frame { time: time.as_secs_f64(), status: &s, rates })?
                    )?;
                } else if tty {
                    // Home, clear, redraw.
                    write!(out, "\x1b[H\x1b[2J")?;
                    writeln!(out, "every {:.1} s, Ctrl-C to stop", interval.as_secs_f64())?;
                    table(&mut out, &s, &r)?;
                } else {
                    lines(&mut out, time.as_secs(), &s, &r)?;
                }
                last = Some((now, s));
            }
            Err(e) => writeln!(out, "mptcp-user: status of {instance}: {e:#}")?,
        }
        out.flush()?;
        drop(out);
        std::thread::sleep(interval.saturating_sub(now.elapsed()));
    }
}

/// A subflow's state as the tables show it: "up", "up/b" (a backup),
/// "up/u" (left unused: a spent data cap).
pub fn state(f: &crate::status::SubflowStatus) -> String {
    match (f.unused, f.backup) {
        (true, _) => format!("{}/u", f.state),
        (false, true) => format!("{}/b", f.state),
        (false, false) => f.state.to_string(),
    }
}

/// The live table: per subflow its state, delays, loss, the rate the
/// scheduler uses, what it sends and receives now and its share.
fn table(out: &mut impl Write, s: &Status, r: &BTreeMap<SubflowName, SubflowRate>) -> Result<()> {
    let mode = if s.mode.as_deref() == Some("mptcp") { "native MPTCP" } else { "bond" };
    writeln!(out, "instance {} ({mode}, {}) policy {}", s.instance, s.role.as_deref().unwrap_or("?"), s.policy)?;
    if s.classes.len() > 1 {
        writeln!(out, "{}", crate::status::classes_line(s))?;
    }
    for p in &s.paths {
        let cap = p.cap_mbit.map(|c| format!(", cap {c:.1} Mbit/s")).unwrap_or_default();
        let state = if p.backup { format!("{}/b", p.state) } else { p.state.to_string() };
        writeln!(
            out,
            "path {} ({}): {state}, probe rtt {:.2} ms{cap}",
            p.name,
            p.interface,
            p.srtt_us as f64 / 1000.0
        )?;
    }
    if s.connections.is_empty() {
        writeln!(out, "no connections")?;
    }
    for c in &s.connections {
        writeln!(out, "connection {}", c.token)?;
        writeln!(
            out,
            "  {:>2} {:<10} {:<6} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>6}",
            "id", "path", "state", "rtt_ms", "owd_ms", "loss%", "est_mbit", "tx_mbit", "rx_mbit", "share"
        )?;
        for f in &c.subflows {
            let now = r.get(&(c.token.clone(), f.id)).copied().unwrap_or_default();
            writeln!(
                out,
                "  {:>2} {:<10} {:<6} {:>8.2} {:>8.2} {:>6.2} {:>9.1} {:>9.2} {:>9.2} {:>5.0}%",
                f.id,
                f.path,
                state(f),
                f.srtt_us as f64 / 1000.0,
                f.owd_us as f64 / 1000.0,
                f.rx_loss * 100.0,
                f.rate_mbit,
                now.tx_mbit,
                now.rx_mbit,
                now.share * 100.0
            )?;
        }
    }
    for c in &s.caps {
        writeln!(out, "{}", crate::status::cap_line(c))?;
    }
    let drops: Vec<String> = s.drops.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    writeln!(out, "drops: {}", if drops.is_empty() { "none".to_string() } else { drops.join(", ") })?;
    Ok(())
}

/// One line per subflow, stamped, for a pipe or a log.
fn lines(out: &mut impl Write, unix_s: u64, s: &Status, r: &BTreeMap<SubflowName, SubflowRate>) -> Result<()> {
    if s.connections.is_empty() {
        writeln!(out, "{unix_s} {} no connections", s.instance)?;
    }
    for c in &s.connections {
        for f in &c.subflows {
            let now = r.get(&(c.token.clone(), f.id)).copied().unwrap_or_default();
            writeln!(
                out,
                "{unix_s} {} conn {} subflow {} path {} {} rtt_ms {:.2} loss% {:.2} tx_mbit {:.2} rx_mbit {:.2} share% {:.0}",
                s.instance,
                c.token,
                f.id,
                f.path,
                state(f),
                f.srtt_us as f64 / 1000.0,
                f.rx_loss * 100.0,
                now.tx_mbit,
                now.rx_mbit,
                now.share * 100.0
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ConnectionStatus, SubflowStatus};

    fn status(bytes: &[(u32, u64, u64)]) -> Status {
        Status {
            connections: vec![ConnectionStatus {
                token: "abcd".into(),
                prefixes: vec![],
                subflows: bytes
                    .iter()
                    .map(|&(id, tx_bytes, rx_bytes)| SubflowStatus { id, tx_bytes, rx_bytes, ..Default::default() })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn rates_and_shares_come_from_two_snapshots() {
        let before = status(&[(0, 1_000_000, 0), (1, 0, 500)]);
        let after = status(&[(0, 1_750_000, 0), (1, 250_000, 500), (2, 9_999, 9_999)]);
        let r = rates(&before, &after, 0.5);
        let a = r[&("abcd".to_string(), 0)];
        assert!((a.tx_mbit - 12.0).abs() < 1e-9 && (a.share - 0.75).abs() < 1e-9, "{a:?}");
        let b = r[&("abcd".to_string(), 1)];
        assert!((b.tx_mbit - 4.0).abs() < 1e-9 && b.rx_mbit == 0.0 && (b.share - 0.25).abs() < 1e-9, "{b:?}");
        assert!(!r.contains_key(&("abcd".to_string(), 2)), "a subflow new since the last look has no rate yet");
        // A counter that went back (a restart) counts as nothing sent.
        let r = rates(&after, &before, 0.5);
        assert_eq!(r[&("abcd".to_string(), 0)].tx_mbit, 0.0);
    }
}
