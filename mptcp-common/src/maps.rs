//! Keys and values of the BPF maps: `#[repr(C)]`, no padding, `Pod`.
//!
//! Who writes what:
//! - the controller writes [`Settings`], [`Connection`] (subflow outer headers and
//!   path state), the class policies, the LPM tries and the 4-tuple table;
//! - the kernel programs write [`TxState`], [`SubflowStats`], [`RxSeq`] and the
//!   drop counters.
//!
//! Keeping the two writers in different maps means a controller update of a
//! path's RTT never races with the data path's per-packet counters.

use bytemuck::{Pod, Zeroable};

use crate::policy::SchedState;

/// Subflows per connection. The subflow id is the slot index.
pub const MAX_SUBFLOWS: usize = 8;
/// Classes; class 0 is the default class.
pub const MAX_CLASSES: u32 = 16;
/// Classifier rules, evaluated in order.
pub const MAX_RULES: u32 = 32;
/// Flows tracked by the flowlet policy (least recently used ones are evicted).
pub const MAX_FLOWS: u32 = 65536;
/// Connections (clients) one instance can hold.
pub const MAX_CONNECTIONS: u32 = 1024;
/// Inner destination prefixes over all connections.
pub const MAX_PREFIXES: u32 = 4096;

/// Map names as they appear in the object and under the pin directory.
pub mod names {
    pub const SETTINGS: &str = "SETTINGS";
    pub const CLASS_POLICY: &str = "CLASS_POLICY";
    pub const CLASS_RULES: &str = "CLASS_RULES";
    pub const FLOWLETS: &str = "FLOWLETS";
    pub const CONNECTIONS: &str = "CONNECTIONS";
    pub const CONN_BY_DEST_V4: &str = "CONN_BY_DEST_V4";
    pub const CONN_BY_DEST_V6: &str = "CONN_BY_DEST_V6";
    pub const TX_STATE: &str = "TX_STATE";
    pub const SUBFLOW_BY_TUPLE: &str = "SUBFLOW_BY_TUPLE";
    pub const SUBFLOW_STATS: &str = "SUBFLOW_STATS";
    pub const RX_SEQ: &str = "RX_SEQ";
    pub const DEDUP: &str = "DEDUP";
    pub const DROPS: &str = "DROPS";
    pub const CONTROL_COUNTERS: &str = "CONTROL_COUNTERS";
    pub const DATA_KEYS: &str = "DATA_KEYS";
    pub const ENCAP_PROGS: &str = "ENCAP_PROGS";
    /// Every map, for pinning and cleanup.
    pub const ALL: [&str; 16] = [
        SETTINGS,
        CLASS_POLICY,
        CLASS_RULES,
        FLOWLETS,
        CONNECTIONS,
        CONN_BY_DEST_V4,
        CONN_BY_DEST_V6,
        TX_STATE,
        SUBFLOW_BY_TUPLE,
        SUBFLOW_STATS,
        RX_SEQ,
        DEDUP,
        DROPS,
        CONTROL_COUNTERS,
        DATA_KEYS,
        ENCAP_PROGS,
    ];
    /// The drop events' ring buffer ([`super::DropEvent`]): pinned, but not
    /// in [`ALL`], so a data path pinned by a build without it can still be
    /// adopted (it then has no debug events).
    pub const DROP_EVENTS: &str = "DROP_EVENTS";
    /// Per-CPU scratch space of the programs: never pinned, never read.
    pub const UNPINNED: [&str; 3] = ["SCRATCH", "REPLICA", "SENDING"];
}

/// Program names in the object.
pub mod programs {
    /// tc egress on the bond device: classify, schedule, number the packet.
    pub const BOND_EGRESS: &str = "bond_egress";
    /// tc, tail-called by the egress program (`ENCAP_PROGS[0]`), never
    /// attached: encapsulate, tag, redirect.
    pub const BOND_ENCAP: &str = "bond_encap";
    /// XDP on every Ethernet uplink: validate, account, decapsulate.
    pub const UPLINK_INGRESS: &str = "uplink_ingress";
    /// tc ingress on uplinks without an Ethernet header (raw-IP, PPP, TUN).
    pub const UPLINK_INGRESS_L3: &str = "uplink_ingress_l3";
    /// Empty tc and XDP programs: the benchmark's per-packet cost baseline.
    pub const NOOP_TC: &str = "noop_tc";
    pub const NOOP_XDP: &str = "noop_xdp";
    pub const ALL: [&str; 6] = [BOND_EGRESS, BOND_ENCAP, UPLINK_INGRESS, UPLINK_INGRESS_L3, NOOP_TC, NOOP_XDP];
}

/// Bytes of a dropped packet a [`DropEvent`] carries.
pub const DROP_EVENT_HEAD: usize = 64;

/// Where a packet was dropped ([`DropEvent::hook`]).
pub const HOOK_BOND_EGRESS: u8 = 0;
pub const HOOK_BOND_ENCAP: u8 = 1;
/// XDP on an Ethernet uplink: the head starts with the Ethernet header.
pub const HOOK_UPLINK_XDP: u8 = 2;
/// tc on a raw-IP uplink: the head starts with the IP header.
pub const HOOK_UPLINK_L3: u8 = 3;

/// `DROP_EVENTS`: one dropped packet, reported while [`Settings::debug`] is set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct DropEvent {
    /// A [`crate::DropReason`].
    pub reason: u8,
    /// `HOOK_*`.
    pub hook: u8,
    pub _pad: u16,
    /// The device it arrived on or left by.
    pub ifindex: u32,
    /// The packet's whole length.
    pub len: u32,
    /// Bytes of `head` filled (its first bytes, up to [`DROP_EVENT_HEAD`]).
    pub head_len: u32,
    pub head: [u8; DROP_EVENT_HEAD],
}

/// Instance-wide settings, `SETTINGS[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Settings {
    /// The bond's UDP port, host byte order: the concentrator's.
    pub port: u16,
    /// Classifier rules in use: `CLASS_RULES[0..n_rules]`, in order.
    pub n_rules: u16,
    /// Largest uplink MTU, to drop (and count) non-GSO packets that would not fit.
    pub uplink_mtu: u32,
    /// The bond device's MTU: TCP SYNs crossing the bond get their MSS
    /// clamped to it ([`crate::mtu::mss_limit`]). 0 = no clamp.
    pub bond_mtu: u32,
    /// 1 on a client, 0 on a concentrator.
    pub client: u16,
    /// 1: every drop is also reported to `DROP_EVENTS` with the packet's
    /// first bytes (the controller logs the data path at debug level). Read
    /// on the drop path only: forwarded packets never look at it.
    pub debug: u16,
}

impl Settings {
    /// Whether a UDP datagram from `sport` to `dport` may be the bond's (its
    /// subflow and token decide the rest): a client's come *from* `port`
    /// (each of its paths sends from a port of its own), a concentrator's
    /// *to* it.
    #[inline(always)]
    pub fn bond_ports(&self, sport: u16, dport: u16) -> bool {
        let ours = if self.client != 0 { sport } else { dport };
        self.port != 0 && ours == self.port
    }

    /// Whether inner sources must lie in the sending connection's prefixes:
    /// on a concentrator, which routes those prefixes back to that client;
    /// a client's inner packets come from anywhere.
    #[inline(always)]
    pub fn checks_sources(&self) -> bool {
        self.client == 0
    }
}

/// A subflow's outer IP + UDP header, prebuilt by the controller with zero
/// length fields (the IPv4 header checksum is over that zero length). The data
/// path copies it, then patches the lengths.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct OuterTemplate {
    pub bytes: [u8; 48],
    /// Bytes of `bytes` in use: 28 (IPv4 + UDP) or 48 (IPv6 + UDP).
    pub len: u8,
    /// [`crate::wire::FAMILY_V4`] or [`crate::wire::FAMILY_V6`].
    pub family: u8,
    pub _pad: [u8; 2],
    /// The uplink to redirect to.
    pub ifindex: u32,
}

impl Default for OuterTemplate {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

/// `PathState::flags`: the handshake completed; the subflow may carry data.
pub const PATH_ESTABLISHED: u32 = 1;
/// `PathState::flags`: probes are answered (or the link just came up).
pub const PATH_UP: u32 = 2;
/// `PathState::flags`: use only when no non-backup subflow is up.
pub const PATH_BACKUP: u32 = 4;
/// `PathState::flags`: earliest-arrival leaves the path out, as it cannot be
/// used in order beside the biggest path (set by the controller with
/// [`crate::policy::mark_unbridgeable`] whenever path states change).
pub const PATH_UNBRIDGEABLE: u32 = 8;
/// `PathState::flags`: the rate is a lower bound (estimated from what the
/// path carried, never yet found full nor timed by a packet train); the
/// path may be bigger.
pub const PATH_RATE_LOWER_BOUND: u32 = 16;
/// `PathState::flags`: the rate was sized whole, not only read off a load:
/// given by the operator (a hint) or timed by a packet train. Auto runs
/// earliest-arrival on paths of equal delay only when all are sized.
pub const PATH_RATE_SIZED: u32 = 32;
/// `PathState::flags`: never used, not even with every other path down: its
/// data cap is spent and the operator chose to leave it unused then
/// (`when_spent = "unused"`). The subflow stays, probed, for the next period.
pub const PATH_UNUSED: u32 = 64;

/// What the controller knows about a subflow's path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PathState {
    pub flags: u32,
    /// Lower is preferred (0 = primary), like a route metric.
    pub priority: u32,
    /// Smoothed RTT in microseconds; 0 = not measured yet.
    pub srtt_us: u32,
    pub rttvar_us: u32,
    /// Capacity in bytes per second; 0 = unknown (not rate limited).
    pub rate_bytes_per_sec: u64,
    /// Share under the weighted policy; 0 = by rate (see [`crate::policy::weight_of`]).
    pub weight: u32,
    /// One-way delay reported by the receiver, microseconds; 0 = use srtt / 2.
    pub owd_us: u32,
    /// How long a queue the path holds before it drops, microseconds (its
    /// buffer, learnt from where queues ended in loss); 0 = unknown, unlimited.
    pub queue_us: u32,
    /// Random loss the path shows with no queue standing, parts per million
    /// (measured by the controller; 0 = none seen; at most
    /// [`crate::policy::MAX_LOSS_PPM`]). The policies that choose by delay
    /// count it against the path ([`crate::policy::loss_penalty_us`]).
    pub loss_ppm: u32,
}

impl PathState {
    pub const fn established(&self) -> bool {
        self.flags & PATH_ESTABLISHED != 0
    }
    pub const fn up(&self) -> bool {
        self.flags & PATH_UP != 0
    }
    pub const fn backup(&self) -> bool {
        self.flags & PATH_BACKUP != 0
    }
    pub const fn unused(&self) -> bool {
        self.flags & PATH_UNUSED != 0
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Subflow {
    pub outer: OuterTemplate,
    pub path: PathState,
}

/// `CONNECTIONS[token]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Connection {
    pub token: u32,
    /// Slots `0..n_subflows` may be in use (check `PATH_ESTABLISHED`).
    pub n_subflows: u32,
    pub _pad: [u32; 2],
    pub subflows: [Subflow; MAX_SUBFLOWS],
}

/// A token bucket at the path's rate (see [`crate::policy::bucket_credit`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Bucket {
    /// Bytes that may be sent at `last_ns`; negative after an overdraft.
    pub credit: i64,
    pub last_ns: u64,
}

/// `TX_STATE[token]`: the sender's per-connection sequence state, kernel-owned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TxState {
    /// Next data sequence number of the connection (the header carries its
    /// low 32 bits). 64-bit: the data path advances it with a 64-bit atomic fetch-add.
    pub dsn: u64,
    /// Next sequence number of each subflow (low 32 bits on the wire).
    pub subflow_seq: [u64; MAX_SUBFLOWS],
    pub buckets: [Bucket; MAX_SUBFLOWS],
    pub sched: SchedState,
}

/// Native mode's `PACING_CAPS` key: a path's local address in one network
/// namespace (the same address may be a path in another).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct PacingKey {
    /// The namespace's cookie (`SO_NETNS_COOKIE`; `bpf_get_netns_cookie`).
    pub netns: u64,
    /// IPv4 in the first 4 bytes (network order, the rest 0), or IPv6.
    pub addr: [u8; 16],
}

impl PacingKey {
    pub fn v4(netns: u64, addr: [u8; 4]) -> Self {
        let mut a = [0; 16];
        a[..4].copy_from_slice(&addr);
        Self { netns, addr: a }
    }

    pub fn v6(netns: u64, addr: [u8; 16]) -> Self {
        Self { netns, addr }
    }
}

/// How many paths' caps `PACING_CAPS` holds (over every instance's namespaces).
pub const MAX_PACED_PATHS: u32 = 1024;
/// How many subflows the pacing program remembers it capped (LRU).
pub const MAX_PACED_SUBFLOWS: u32 = 65536;

/// `SO_MAX_PACING_RATE`'s value for a cap in bytes/s: bpf_setsockopt takes
/// an int, and `~0U` is "unlimited" (so the largest cap is 4 GB/s less a
/// byte).
#[inline(always)]
pub fn so_max_pacing_rate(cap: u64) -> u32 {
    if cap >= u32::MAX as u64 {
        u32::MAX
    } else {
        cap as u32
    }
}

/// Names one subflow of one connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SubflowKey {
    pub token: u32,
    pub subflow_id: u32,
}

/// `SUBFLOW_STATS[SubflowKey]`, per CPU; the controller sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SubflowStats {
    pub tx_packets: u64,
    /// Bytes on the wire including the outer headers.
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Subflow sequence numbers skipped (lost or reordered).
    pub rx_gaps: u64,
    /// Packets that arrived after a later one (they were counted as a gap).
    pub rx_late: u64,
    /// Last one-way delay sample, microseconds: this end's clock minus the
    /// sender's stamp (low 32 bits, wrapping), an offset plus the delay across
    /// hosts, the delay itself on one host.
    pub rx_owd_us: u64,
    /// When that sample was taken, this end's clock in µs (low 32 bits).
    pub rx_owd_at_us: u64,
}

impl SubflowStats {
    pub fn add(&mut self, o: &SubflowStats) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_gaps += o.rx_gaps;
        self.rx_late += o.rx_late;
        // The newest sample of any CPU (a CPU that stopped receiving keeps an old one).
        let newer = (o.rx_owd_at_us as u32).wrapping_sub(self.rx_owd_at_us as u32) as i32 > 0;
        if o.rx_owd_at_us != 0 && (self.rx_owd_at_us == 0 || newer) {
            self.rx_owd_us = o.rx_owd_us;
            self.rx_owd_at_us = o.rx_owd_at_us;
        }
    }

    /// Packets presumed lost on the path: gaps that no late packet filled.
    pub fn rx_lost(&self) -> u64 {
        self.rx_gaps.saturating_sub(self.rx_late)
    }
}

/// `DEDUP[token]`: the receiver's duplicate-suppression window (see
/// [`crate::dedup`]), kernel-owned; the controller creates it per connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct DedupWindow {
    pub slots: [u64; crate::dedup::DEDUP_SLOTS],
}

impl Default for DedupWindow {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

/// `FLOWLETS` key: one inner flow of one connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowletKey {
    pub token: u32,
    /// [`crate::classify::PacketMeta::flow_hash`].
    pub flow_hash: u32,
}

/// Receiver-side sequence tracking of one subflow (see [`crate::seq`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RxSeq {
    /// The 48-bit sequence numbers ([`crate::wire::MpHeader::subflow_seq48`]).
    pub last: u64,
    /// The newest header sequence number taken.
    pub top: u64,
    /// Bit i: a header with sequence number `top - i` was taken.
    pub seen: u64,
    /// Packets seen carrying `last` (GSO segments share it); 0 = none yet.
    pub repeats: u32,
    /// Packets `last`'s header said share it: no more are taken.
    pub last_segs: u32,
}

/// `SUBFLOW_BY_TUPLE` key: an outer 4-tuple as the receiver sees it.
/// IPv4 addresses occupy the first 4 bytes, the rest is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    pub remote: [u8; 16],
    pub local: [u8; 16],
    /// Host byte order.
    pub remote_port: u16,
    pub local_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Index into `CONTROL_COUNTERS`, written by the controller.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlCounter {
    /// Handshakes (first subflow or JOIN) refused: bad HMAC, i.e. a wrong key.
    AuthFailed = 0,
    /// JOINs naming a token no connection has.
    UnknownToken = 1,
    /// Control messages that could not be parsed.
    Malformed = 2,
    /// Connections established.
    Connections = 3,
    /// Subflows established (first subflow and JOINs).
    SubflowsJoined = 4,
    ProbesSent = 5,
    ProbesAnswered = 6,
    /// Inputs the controller could not handle (logged; it carried on).
    EventErrors = 7,
    /// Concentrator: probes for a connection or subflow it does not know
    /// (it restarted without its state, or the client's NAT mapping
    /// changed), answered so that the client joins again.
    ProbesRefused = 8,
    /// Client: connections and subflows set up again because the
    /// concentrator no longer knew them.
    Rejoins = 9,
    /// Concentrator: connections collected after a silence on every subflow.
    Collected = 10,
    /// Handshakes refused for lack of room (connections, subflows, prefixes
    /// or pending handshakes at their cap).
    RefusedFull = 11,
    /// Authenticated control messages refused as replays (a stamp not above
    /// the subflow's latest).
    Replayed = 12,
    /// Concentrator: control messages from senders that are no known
    /// subflow, dropped unchecked past the budget of HMAC checks a second.
    Shed = 13,
    /// Handshakes refused because the client announced a prefix outside its
    /// `[[client]]` entry's.
    ForeignPrefix = 14,
}

impl ControlCounter {
    pub const COUNT: u32 = 15;
    pub const ALL: [ControlCounter; Self::COUNT as usize] = [
        Self::AuthFailed,
        Self::UnknownToken,
        Self::Malformed,
        Self::Connections,
        Self::SubflowsJoined,
        Self::ProbesSent,
        Self::ProbesAnswered,
        Self::EventErrors,
        Self::ProbesRefused,
        Self::Rejoins,
        Self::Collected,
        Self::RefusedFull,
        Self::Replayed,
        Self::Shed,
        Self::ForeignPrefix,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            Self::AuthFailed => "auth-failed",
            Self::UnknownToken => "unknown-token",
            Self::Malformed => "malformed",
            Self::Connections => "connections",
            Self::SubflowsJoined => "subflows-joined",
            Self::ProbesSent => "probes-sent",
            Self::ProbesAnswered => "probes-answered",
            Self::EventErrors => "event-errors",
            Self::ProbesRefused => "probes-refused",
            Self::Rejoins => "rejoins",
            Self::Collected => "collected",
            Self::RefusedFull => "refused-full",
            Self::Replayed => "replayed",
            Self::Shed => "shed",
            Self::ForeignPrefix => "foreign-prefix",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)], Copy, has no padding (bytemuck's Pod derive
    // checks that) and every bit pattern is valid, which is what aya::Pod requires.
    unsafe impl aya::Pod for Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Connection {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TxState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SubflowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PacingKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SubflowStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RxSeq {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowletKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DedupWindow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::policy::ClassPolicy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::policy::FlowletEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::classify::ClassRule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::auth::ConnKeys {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn sizes_are_stable() {
        assert_eq!(size_of::<OuterTemplate>(), 56);
        assert_eq!(size_of::<PathState>(), 40);
        assert_eq!(size_of::<Subflow>(), 96);
        assert_eq!(size_of::<Connection>(), 16 + 96 * MAX_SUBFLOWS);
        assert_eq!(size_of::<TxState>(), 8 + 8 * MAX_SUBFLOWS + 16 * MAX_SUBFLOWS + 8 + 8 * MAX_SUBFLOWS);
        assert_eq!(size_of::<crate::classify::ClassRule>(), 32);
        assert_eq!(size_of::<crate::policy::ClassPolicy>(), 4);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<SubflowStats>(), 64);
    }

    #[test]
    fn per_cpu_stats_keep_the_newest_delay_sample() {
        let cpu = |owd, at| SubflowStats { rx_packets: 1, rx_owd_us: owd, rx_owd_at_us: at, ..Default::default() };
        let mut total = SubflowStats::default();
        // An old, large sample on one CPU; a newer, smaller one on another;
        // a CPU that never sampled. The clock wraps between them.
        for s in [cpu(90_000, u32::MAX as u64 - 5), cpu(1_000, 10), SubflowStats::default()] {
            total.add(&s);
        }
        assert_eq!((total.rx_owd_us, total.rx_packets), (1_000, 2));
    }
}
