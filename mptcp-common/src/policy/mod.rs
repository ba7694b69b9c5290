//! Scheduling policies: which subflow (or subflows) carries the next packet.
//!
//! [`decide`] is the one function that answers "what does policy X do". The
//! eBPF egress program, the host tests and the simulator call it unchanged;
//! each policy lives in its own module as a pure function over the
//! connection's path states ([`Paths`]) and a little per-connection state.
//!
//! All policies share one notion of eligibility, in tiers ([`paths::tier`]):
//! first the subflows that are up and not backups; if none, the backups that
//! are up; if none, any established subflow (sending on a path whose probes
//! stopped beats dropping every packet, e.g. while the peer restarts).

mod active_backup;
mod auto;
pub mod bucket;
mod earliest_arrival;
mod flowlet;
mod min_rtt;
pub mod native;
pub mod paths;
mod redundant;
mod weighted;

pub use active_backup::active_backup;
pub use auto::{auto_policy, AUTO_SPREAD_US};
pub use bucket::{backlog, bucket_credit, bucket_depth, bucket_spend};
pub use earliest_arrival::{arrival_us, bridgeable, earliest_arrival, mark_unbridgeable, ACK_SIZED, ASSUMED_QUEUE_US};
pub use flowlet::{flowlet, flowlet_entry, FLOWLET_MARGIN_NS};
pub use min_rtt::min_rtt;
pub use paths::{loss_penalty_us, ConnectionPaths, Paths, MAX_LOSS_PPM, NONE};
pub use redundant::redundant;
pub use weighted::{weight_of, weighted, wrr_cost};

use bytemuck::{Pod, Zeroable};

use crate::maps::MAX_SUBFLOWS;

/// A scheduling policy, stored as `u8` in [`ClassPolicy`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Lowest-RTT subflow with capacity left; spills to the next when its token
    /// bucket is empty.
    MinRtt = 0,
    /// The preferred (lowest priority value) subflow only; others only when it fails.
    ActiveBackup = 1,
    /// Weighted round-robin over bytes, by configured weight or rate.
    Weighted = 2,
    /// Every packet on every eligible subflow; the receiver keeps the first copy.
    Redundant = 3,
    /// The subflow with the earliest estimated arrival (delay + queue / rate),
    /// so packets arrive in order across unequal paths.
    EarliestArrival = 4,
    /// A flow keeps its subflow until it pauses longer than the paths' delay
    /// difference; then the class's base policy places it again.
    Flowlet = 5,
    /// earliest-arrival where the paths' delays differ, min-rtt where they
    /// do not ([`auto_policy`]). The controller resolves it: a class set to
    /// auto is stored as what auto stands for now, flagged
    /// ([`ClassPolicy::auto`]), so the data path runs the policy itself.
    Auto = 6,
}

impl Policy {
    pub const ALL: [Policy; 7] = [
        Policy::MinRtt,
        Policy::ActiveBackup,
        Policy::Weighted,
        Policy::Redundant,
        Policy::EarliestArrival,
        Policy::Flowlet,
        Policy::Auto,
    ];

    pub const fn from_u8(v: u8) -> Option<Policy> {
        match v {
            0 => Some(Policy::MinRtt),
            1 => Some(Policy::ActiveBackup),
            2 => Some(Policy::Weighted),
            3 => Some(Policy::Redundant),
            4 => Some(Policy::EarliestArrival),
            5 => Some(Policy::Flowlet),
            6 => Some(Policy::Auto),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Policy::MinRtt => "min-rtt",
            Policy::ActiveBackup => "active-backup",
            Policy::Weighted => "weighted",
            Policy::Redundant => "redundant",
            Policy::EarliestArrival => "earliest-arrival",
            Policy::Flowlet => "flowlet",
            Policy::Auto => "auto",
        }
    }

    pub fn from_name(s: &str) -> Option<Policy> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether flowlet may re-place flows with this policy: one subflow per
    /// packet, and not flowlet itself.
    pub const fn is_base(self) -> bool {
        !matches!(self, Policy::Redundant | Policy::Flowlet | Policy::Auto)
    }
}

/// `CLASS_POLICY[class]`: a class's policy and its parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ClassPolicy {
    /// [`Policy`] as `u8`; an unknown value behaves as min-rtt.
    pub policy: u8,
    /// Flowlet's base policy (see [`Policy::is_base`]); otherwise ignored.
    pub base: u8,
    /// Reserved (0): copies per packet for redundant, once the data path can rank them.
    pub copies: u8,
    /// 1: the class is set to [`Policy::Auto`], and `policy` is what auto
    /// stands for now (the controller keeps it so); the data path ignores it.
    pub auto: u8,
}

impl ClassPolicy {
    pub const fn new(policy: Policy) -> Self {
        Self { policy: policy as u8, base: Policy::MinRtt as u8, copies: 0, auto: 0 }
    }
    /// A class set to [`Policy::Auto`], standing for `now`.
    pub const fn auto(now: Policy) -> Self {
        Self { auto: 1, ..Self::new(now) }
    }
    pub const fn is_auto(&self) -> bool {
        self.auto != 0
    }
    /// The policy chosen for the class: [`Policy::Auto`], or the one it runs.
    pub const fn chosen(&self) -> Policy {
        if self.is_auto() {
            Policy::Auto
        } else {
            self.policy()
        }
    }
    pub const fn with_base(mut self, base: Policy) -> Self {
        self.base = base as u8;
        self
    }
    /// The policy the data path runs: a bare auto value (never written: a
    /// class set to auto holds what it stands for) or an unknown one runs
    /// min-rtt. (So the data path has no auto case to verify.)
    pub const fn policy(&self) -> Policy {
        match Policy::from_u8(self.policy) {
            Some(Policy::Auto) | None => Policy::MinRtt,
            Some(p) => p,
        }
    }
    /// The policy flowlet falls back to (min-rtt when unset or unusable).
    pub const fn base(&self) -> Policy {
        match Policy::from_u8(self.base) {
            Some(p) if p.is_base() => p,
            _ => Policy::MinRtt,
        }
    }
}

/// Per-connection scheduler state, written by the data path only (in `TX_STATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SchedState {
    /// weighted: the virtual clock, the smallest start tag seen at the last decision.
    pub wrr_clock: u64,
    /// weighted: each subflow's virtual finish tag.
    pub wrr_finish: [u64; MAX_SUBFLOWS],
}

/// A flow's placement under flowlet (`FLOWLETS` value). `last_ns == 0`: none yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowletEntry {
    pub subflow: u32,
    pub _pad: u32,
    /// When the flow last sent a packet.
    pub last_ns: u64,
    /// When that packet is expected to arrive ([`arrival_us`] at the time).
    pub arrival_ns: u64,
}

/// What [`decide`] chose for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The subflow that carries the packet.
    pub subflow: usize,
    /// Further subflows that carry a copy (bit i = subflow i); redundant only.
    pub replicas: u32,
    /// The policy that actually decided (flowlet's base policy when it re-placed the flow).
    pub by: Policy,
    /// weighted: the new virtual clock for [`commit`].
    pub wrr_clock: u64,
}

/// The whole scheduling decision for a packet of `pkt_len` bytes at `now_ns`
/// in a class with policy `class`, or `None` if no subflow is established.
/// `flow` is the packet's flow placement (flowlet classes only).
///
/// Pure: the caller applies the result with [`commit`] and charges each used
/// subflow's token bucket with [`bucket_spend`].
#[inline(always)]
pub fn decide<P: Paths>(
    class: ClassPolicy,
    paths: &P,
    pkt_len: u32,
    now_ns: u64,
    sched: &SchedState,
    flow: &FlowletEntry,
) -> Option<Decision> {
    let policy = class.policy();
    let base = match policy {
        Policy::Flowlet => class.base(),
        p => p,
    };
    let mut d = Decision { subflow: NONE, replicas: 0, by: base, wrr_clock: sched.wrr_clock };
    match base {
        // (ClassPolicy::policy never gives auto.)
        Policy::MinRtt | Policy::Flowlet | Policy::Auto => d.subflow = min_rtt(paths, pkt_len)?,
        Policy::ActiveBackup => d.subflow = active_backup(paths)?,
        Policy::EarliestArrival => d.subflow = earliest_arrival(paths, pkt_len)?,
        Policy::Weighted => (d.subflow, d.wrr_clock) = weighted(paths, sched, pkt_len)?,
        Policy::Redundant => (d.subflow, d.replicas) = redundant(paths)?,
    }
    if let Policy::Flowlet = policy {
        let i = flowlet(paths, flow, d.subflow, now_ns, pkt_len);
        if i != d.subflow {
            d.subflow = i;
            d.by = Policy::Flowlet;
        }
    }
    Some(d)
}

/// Apply `d` to the per-connection and per-flow state: advance weighted's
/// tags when it decided, and record the flow's placement when the class is
/// flowlet (`flowlet_class`). Call before charging the buckets.
#[inline(always)]
pub fn commit<P: Paths>(
    d: &Decision,
    paths: &P,
    pkt_len: u32,
    now_ns: u64,
    sched: &mut SchedState,
    flow: &mut FlowletEntry,
    flowlet_class: bool,
) {
    let i = d.subflow & (MAX_SUBFLOWS - 1);
    if let Policy::Weighted = d.by {
        let start = if sched.wrr_finish[i] > d.wrr_clock { sched.wrr_finish[i] } else { d.wrr_clock };
        sched.wrr_finish[i] = start + wrr_cost(paths.state(i), pkt_len);
        sched.wrr_clock = d.wrr_clock;
    }
    if flowlet_class {
        *flow = flowlet_entry(paths, i, now_ns, pkt_len);
    }
}

#[cfg(test)]
mod tests;
