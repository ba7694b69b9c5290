//! What the status page shows beyond one status: each path's rate over the
//! last minutes and the events between snapshots (a path going down or
//! coming back, a connection, a data cap spent, the policy switched, the
//! controller stopping). Fed one status a second by the HTTP server; pure.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::status::{Status, SubflowState};
use crate::watch::{rates, SubflowRate};

/// Samples kept: ten minutes at one a second.
pub const SAMPLES: usize = 600;
/// Events kept.
pub const EVENTS: usize = 100;

/// Each series' rate at one time: tx + rx, Mbit/s.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub t: f64,
    pub mbit: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    pub t: f64,
    pub text: String,
}

#[derive(Default)]
pub struct History {
    samples: VecDeque<Sample>,
    events: VecDeque<Event>,
    /// The last status read and when, on the monotonic clock (None: the
    /// last read failed).
    last: Option<(f64, Status)>,
    /// Each subflow's rates over the last interval.
    now: BTreeMap<String, SubflowRate>,
    error: Option<String>,
}

/// What `/api/history` answers.
#[derive(Serialize)]
pub struct View<'a> {
    pub status: Option<&'a Status>,
    /// The latest rates, by series ("path", or "token path" with several
    /// connections).
    pub rates: &'a BTreeMap<String, SubflowRate>,
    pub samples: &'a VecDeque<Sample>,
    pub events: &'a VecDeque<Event>,
    /// Why the last status could not be read.
    pub error: Option<&'a str>,
}

impl History {
    /// The status read at `t` (Unix seconds; `mono`: seconds on a
    /// monotonic clock, which the rates are reckoned by, as the wall clock
    /// may be stepped), or why it could not be.
    pub fn record(&mut self, t: f64, mono: f64, status: Result<Status, String>) {
        match status {
            Ok(s) => {
                if let Some((m0, before)) = self.last.take() {
                    for text in events(&before, &s) {
                        self.event(t, text);
                    }
                    self.now = rates(&before, &s, mono - m0)
                        .into_iter()
                        .filter_map(|((token, id), r)| Some((series(&s, &token, id)?, r)))
                        .collect();
                    let mbit = self.now.iter().map(|(k, r)| (k.clone(), r.tx_mbit + r.rx_mbit)).collect();
                    self.samples.push_back(Sample { t, mbit });
                    while self.samples.len() > SAMPLES {
                        self.samples.pop_front();
                    }
                } else if self.error.take().is_some() {
                    self.event(t, "status readable again".into());
                }
                self.last = Some((mono, s));
            }
            Err(e) => {
                if self.error.is_none() {
                    self.event(t, format!("status unavailable: {e}"));
                }
                self.error = Some(e);
                self.last = None;
                self.now.clear();
            }
        }
    }

    fn event(&mut self, t: f64, text: String) {
        self.events.push_back(Event { t, text });
        while self.events.len() > EVENTS {
            self.events.pop_front();
        }
    }

    pub fn view(&self) -> View<'_> {
        View {
            status: self.last.as_ref().map(|(_, s)| s),
            rates: &self.now,
            samples: &self.samples,
            events: &self.events,
            error: self.error.as_deref(),
        }
    }
}

/// A subflow's series name: its path, with the connection's token when
/// there are several connections (a concentrator).
fn series(s: &Status, token: &str, id: u32) -> Option<String> {
    let c = s.connections.iter().find(|c| c.token == token)?;
    let f = c.subflows.iter().find(|f| f.id == id)?;
    Some(if s.connections.len() > 1 { format!("{token} {}", f.path) } else { f.path.clone() })
}

/// What changed from `before` to `after`, in words.
pub fn events(before: &Status, after: &Status) -> Vec<String> {
    let mut out = Vec::new();
    match (before.controller_pid, after.controller_pid) {
        (Some(_), None) => out.push("controller stopped: the data path forwards alone".to_string()),
        (None, Some(p)) => out.push(format!("controller started (pid {p})")),
        (Some(a), Some(b)) if a != b => out.push(format!("controller restarted (pid {b})")),
        _ => {}
    }
    if before.policy != after.policy {
        out.push(format!("policy now {}", after.policy));
    }
    for c in &after.connections {
        let Some(was) = before.connections.iter().find(|b| b.token == c.token) else {
            out.push(format!("connection {} up", c.token));
            continue;
        };
        for f in &c.subflows {
            let name = if f.path.is_empty() { format!("subflow {}", f.id) } else { format!("path {}", f.path) };
            match was.subflows.iter().find(|w| w.id == f.id) {
                None => out.push(format!("{name} joined")),
                Some(w) => {
                    if w.state != f.state {
                        out.push(format!("{name} {}", if f.state == SubflowState::Up { "up" } else { "down" }));
                    }
                    if w.backup != f.backup {
                        out.push(format!("{name} {}", if f.backup { "now a backup" } else { "no longer a backup" }));
                    }
                }
            }
        }
        for w in &was.subflows {
            if !c.subflows.iter().any(|f| f.id == w.id) {
                out.push(format!("path {} left", w.path));
            }
        }
    }
    for c in &before.connections {
        if !after.connections.iter().any(|a| a.token == c.token) {
            out.push(format!("connection {} gone", c.token));
        }
    }
    for cap in &after.caps {
        let was = before.caps.iter().find(|b| b.path == cap.path).is_some_and(|b| b.spent);
        if cap.spent && !was {
            out.push(format!("path {}: data cap spent ({} now)", cap.path, cap.when_spent));
        } else if was && !cap.spent {
            out.push(format!("path {}: data cap renewed", cap.path));
        }
    }
    for (reason, n) in &after.drops {
        let was = before.drops.get(reason).copied().unwrap_or(0);
        if *n > was && was == 0 {
            out.push(format!("first drops: {reason}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ConnectionStatus, SubflowStatus};

    fn status(subflows: &[(u32, &str, bool, u64)]) -> Status {
        Status {
            controller_pid: Some(7),
            policy: "auto".into(),
            connections: vec![ConnectionStatus {
                token: "abcd".into(),
                prefixes: vec![],
                subflows: subflows
                    .iter()
                    .map(|&(id, path, up, tx_bytes)| SubflowStatus {
                        id,
                        path: path.into(),
                        state: if up { SubflowState::Up } else { SubflowState::Down },
                        tx_bytes,
                        ..Default::default()
                    })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn events_name_what_changed() {
        let a = status(&[(0, "dsl", true, 0), (1, "lte", true, 0)]);
        let mut b = status(&[(0, "dsl", true, 0), (1, "lte", false, 0), (2, "sat", true, 0)]);
        b.policy = "min-rtt".into();
        b.drops.insert("forged".into(), 3);
        assert_eq!(events(&a, &b), ["policy now min-rtt", "path lte down", "path sat joined", "first drops: forged"]);
        b.controller_pid = None;
        b.connections.clear();
        assert_eq!(events(&a, &b)[0], "controller stopped: the data path forwards alone");
        assert!(events(&a, &b).contains(&"connection abcd gone".to_string()));
        assert!(events(&a, &a).is_empty());
    }

    #[test]
    fn history_keeps_rates_by_path_and_bounded() {
        let mut h = History::default();
        h.record(100.0, 100.0, Ok(status(&[(0, "dsl", true, 0)])));
        assert!(h.view().samples.is_empty(), "one snapshot gives no rate");
        h.record(101.0, 101.0, Ok(status(&[(0, "dsl", true, 1_000_000)])));
        assert_eq!(h.view().samples[0].mbit["dsl"], 8.0);
        assert_eq!(h.view().rates["dsl"].tx_mbit, 8.0);
        // The wall clock stepped back an hour: the rate is the monotonic clock's.
        h.record(-3599.0 + 101.0, 102.0, Ok(status(&[(0, "dsl", true, 2_000_000)])));
        assert_eq!(h.view().rates["dsl"].tx_mbit, 8.0);
        h.record(102.0, 102.0, Err("no controller".into()));
        h.record(103.0, 103.0, Err("no controller".into()));
        let texts: Vec<&str> = h.view().events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["status unavailable: no controller"], "said once");
        h.record(104.0, 104.0, Ok(status(&[(0, "dsl", true, 0)])));
        assert_eq!(h.view().events.back().unwrap().text, "status readable again");
        for k in 0..(SAMPLES as u64 + 10) {
            h.record(105.0 + k as f64, 105.0 + k as f64, Ok(status(&[(0, "dsl", true, k * 1000)])));
        }
        assert_eq!(h.view().samples.len(), SAMPLES);
    }
}
