//! The status of an instance as `mptcp-user status --json` prints it and
//! the controller answers it: one type for the CLI, the tests, the
//! benchmark and the demo (host side only, feature `serde`).

use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::maps::ControlCounter;
use crate::DropReason;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub instance: String,
    /// "bond" or "mptcp" (native mode).
    #[serde(default)]
    pub mode: Option<String>,
    pub role: Option<String>,
    pub bond: Option<String>,
    pub controller_pid: Option<u32>,
    pub policy: String,
    pub connections: Vec<ConnectionStatus>,
    pub drops: BTreeMap<String, u64>,
    pub control: BTreeMap<String, u64>,
    /// Native mode: each path and what the kernel's path manager has of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathStatus>,
    /// Client: each path's data cap (`[path.cap]`) and what it used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<CapStatus>,
    /// Bond mode: each traffic class and its policy now, in class-id order
    /// (the first is the default class, whose policy is `policy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassStatus>,
}

/// A traffic class and the policy the data path runs for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassStatus {
    pub name: String,
    /// As `policy show` says it: "auto (min-rtt)" for auto and what it stands for now.
    pub policy: String,
}

/// A path's data cap and its use in the current period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CapStatus {
    pub path: String,
    pub budget_bytes: u64,
    pub used_bytes: u64,
    /// "day", "week" or "month".
    pub period: String,
    /// When the period began and when the budget renews, Unix seconds.
    pub period_start: i64,
    pub renews_at: i64,
    /// The budget is spent: the path is `when_spent` until it renews.
    pub spent: bool,
    /// "backup" or "unused".
    pub when_spent: String,
}

/// A path in native mode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathStatus {
    pub name: String,
    pub interface: String,
    /// The address its subflows use, while it has one.
    pub address: Option<String>,
    /// Its endpoint in the kernel's path manager, while it is up.
    pub endpoint: Option<u8>,
    pub state: SubflowState,
    /// Its subflows are backups now (configured, or by the policy).
    pub backup: bool,
    /// Its probes' smoothed round trip, µs (0: not probed, or no answer yet).
    #[serde(default)]
    pub srtt_us: u32,
    /// Probe answers heard from where it is now (None: not probed).
    #[serde(default)]
    pub probes_answered: Option<u64>,
    /// The pacing cap on its subflows, Mbit/s (weighted; None: uncapped).
    #[serde(default)]
    pub cap_mbit: Option<f64>,
}

impl Status {
    /// Subflow `id` of the first connection (a client has one).
    pub fn subflow(&self, id: u32) -> Option<&SubflowStatus> {
        self.connections.first()?.subflows.iter().find(|f| f.id == id)
    }

    /// The first connection's subflows that are up.
    pub fn subflows_up(&self) -> usize {
        self.connections.first().map_or(0, |c| c.subflows.iter().filter(|f| f.state == SubflowState::Up).count())
    }

    /// Packets the data path dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.name()).copied().unwrap_or(0)
    }

    pub fn control(&self, c: ControlCounter) -> u64 {
        self.control.get(c.name()).copied().unwrap_or(0)
    }

    /// The first connection's token.
    pub fn token(&self) -> Option<u32> {
        u32::from_str_radix(&self.connections.first()?.token, 16).ok()
    }
}

/// As `status --json` prints it (test and log messages show it so).
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| core::fmt::Error)?)
    }
}

/// Whether the scheduler may use a subflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubflowState {
    Up,
    #[default]
    Down,
}

impl std::fmt::Display for SubflowState {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            SubflowState::Up => "up",
            SubflowState::Down => "down",
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub token: String,
    pub prefixes: Vec<String>,
    pub subflows: Vec<SubflowStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SubflowStatus {
    pub id: u32,
    pub path: String,
    pub local: String,
    pub remote: String,
    pub state: SubflowState,
    pub backup: bool,
    /// Left unused: its path's data cap is spent (`when_spent = "unused"`).
    #[serde(default)]
    pub unused: bool,
    pub priority: u32,
    /// weighted policy share (0 = by rate).
    pub weight: u32,
    /// Capacity the scheduler uses (the hint, else the estimate), Mbit/s (0 = unknown).
    pub rate_mbit: f64,
    pub srtt_us: u32,
    pub rttvar_us: u32,
    /// One-way propagation delay estimate (half the windowed minimum RTT).
    pub owd_us: u32,
    /// How long a queue the path holds before it drops, ms (0 = not known yet).
    #[serde(default)]
    pub buffer_ms: f64,
    /// earliest-arrival leaves the path out: it cannot be used in order
    /// beside the biggest path (see `policy::mark_unbridgeable`).
    #[serde(default)]
    pub unbridgeable: bool,
    /// Random loss the path shows with no queue standing, % (the policies
    /// that choose by delay count it against the path).
    #[serde(default)]
    pub random_loss_pct: f64,
    /// What the peer reports receiving on this subflow, last probe interval.
    pub delivery_mbit: Option<f64>,
    pub peer_loss_pct: Option<f64>,
    /// Fraction of this subflow's packets lost on the way in.
    pub rx_loss: f64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_gaps: u64,
    pub rx_late: u64,
    /// Native mode: segments the subflow's TCP retransmitted.
    #[serde(default)]
    pub retransmits: u64,
}
