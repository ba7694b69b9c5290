//! Every map of the data path. Names match `mptcp_common::maps::names`; all
//! are pinned by name so the controller finds them under its pin directory.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf};
use mptcp_common::auth::ConnKeys;
use mptcp_common::classify::ClassRule;
use mptcp_common::maps::{
    Connection, ControlCounter, DedupWindow, FlowKey, FlowletKey, RxSeq, Settings, SubflowKey, SubflowStats, TxState,
    MAX_CLASSES, MAX_CONNECTIONS, MAX_FLOWS, MAX_PREFIXES, MAX_RULES, MAX_SUBFLOWS,
};
use mptcp_common::policy::FlowletEntry;
use mptcp_common::{ClassPolicy, DropReason};

#[map(name = "SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::pinned(1, 0);

#[map(name = "CLASS_POLICY")]
pub static CLASS_POLICY: Array<ClassPolicy> = Array::pinned(MAX_CLASSES, 0);

#[map(name = "CLASS_RULES")]
pub static CLASS_RULES: Array<ClassRule> = Array::pinned(MAX_RULES, 0);

#[map(name = "FLOWLETS")]
pub static FLOWLETS: LruHashMap<FlowletKey, FlowletEntry> = LruHashMap::pinned(MAX_FLOWS, 0);

#[map(name = "CONNECTIONS")]
pub static CONNECTIONS: HashMap<u32, Connection> = HashMap::pinned(MAX_CONNECTIONS, 0);

#[map(name = "CONN_BY_DEST_V4")]
pub static CONN_BY_DEST_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_PREFIXES, 0);

#[map(name = "CONN_BY_DEST_V6")]
pub static CONN_BY_DEST_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_PREFIXES, 0);

#[map(name = "TX_STATE")]
pub static TX_STATE: HashMap<u32, TxState> = HashMap::pinned(MAX_CONNECTIONS, 0);

#[map(name = "SUBFLOW_BY_TUPLE")]
pub static SUBFLOW_BY_TUPLE: HashMap<FlowKey, SubflowKey> = HashMap::pinned(MAX_CONNECTIONS * MAX_SUBFLOWS as u32, 0);

#[map(name = "SUBFLOW_STATS")]
pub static SUBFLOW_STATS: PerCpuHashMap<SubflowKey, SubflowStats> =
    PerCpuHashMap::pinned(MAX_CONNECTIONS * MAX_SUBFLOWS as u32, 0);

#[map(name = "RX_SEQ")]
pub static RX_SEQ: HashMap<SubflowKey, RxSeq> = HashMap::pinned(MAX_CONNECTIONS * MAX_SUBFLOWS as u32, 0);

/// Each connection's data keys (see `mptcp_common::auth`), written by the
/// controller once its handshake is done; the kernel only reads them.
#[map(name = "DATA_KEYS")]
pub static DATA_KEYS: HashMap<u32, ConnKeys> = HashMap::pinned(MAX_CONNECTIONS, 0);

/// Allocated per connection by the controller (32 KiB each), not up front.
#[map(name = "DEDUP")]
pub static DEDUP: HashMap<u32, DedupWindow> = HashMap::pinned(MAX_CONNECTIONS, BPF_F_NO_PREALLOC);

/// `BPF_F_NO_PREALLOC`.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Drop events for the controller's debug log, written only while
/// `Settings::debug` is set ([`crate::debug`]). 256 KiB: some 2,700 events
/// before a reader that falls behind loses any.
#[map(name = "DROP_EVENTS")]
pub static DROP_EVENTS: RingBuf = RingBuf::pinned(256 * 1024, 0);

#[map(name = "DROPS")]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::pinned(DropReason::COUNT, 0);

/// Written by the controller only; defined here so it is created and pinned with the rest.
#[map(name = "CONTROL_COUNTERS")]
pub static CONTROL_COUNTERS: Array<u64> = Array::pinned(ControlCounter::COUNT, 0);

/// One scratch word per CPU (not pinned). The egress program passes the
/// policy's choices and estimates through it: a value loaded from a map is an
/// unknown scalar to the verifier, which stops it from tracking every path
/// through the policy loops separately (without this it exceeds the
/// 1M-instruction limit).
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// A copy of a redundant packet in flight: the egress run that clones the
/// packet back into the bond writes it, the nested run for the clone (on the
/// same CPU, inside the clone's transmit) takes it. Not pinned.
#[derive(Clone, Copy)]
pub struct Replica {
    /// 1 while a clone is being transmitted.
    pub active: u32,
    pub subflow: u32,
    pub dsn: u64,
}

#[map(name = "REPLICA")]
pub static REPLICA: PerCpuArray<Replica> = PerCpuArray::with_max_entries(1, 0);

/// The egress decision, as `bond_encap` needs it.
#[derive(Clone, Copy)]
pub struct Sending {
    pub token: u32,
    pub subflow: u32,
    pub dsn: u32,
    /// The subflow sequence number's bits 0..32 and 32..48.
    pub seq: u32,
    pub seq_hi: u32,
    pub flags: u32,
    pub tstamp_us: u32,
}

/// One [`Sending`] per CPU (not pinned): `bond_egress` writes it and
/// tail-calls `bond_encap`, which reads it on the same CPU in the same run.
#[map(name = "SENDING")]
pub static SENDING: PerCpuArray<Sending> = PerCpuArray::with_max_entries(1, 0);

/// `bond_encap`, at index 0, for `bond_egress`'s tail call. Pinned: the
/// kernel empties a program array no file or pin refers to, and the data
/// path must go on when no controller runs.
#[map(name = "ENCAP_PROGS")]
pub static ENCAP_PROGS: ProgramArray = ProgramArray::pinned(1, 0);

/// `v` as the verifier's unknown scalar (see [`SCRATCH`]).
#[inline(always)]
pub fn opaque64(v: u64) -> u64 {
    match SCRATCH.get_ptr_mut(0) {
        Some(p) => {
            // SAFETY: per-CPU slot valid for the program's run; the volatile
            // accesses keep the compiler from forwarding the value.
            unsafe {
                core::ptr::write_volatile(p, v);
                core::ptr::read_volatile(p)
            }
        }
        None => v,
    }
}

/// [`opaque64`] for a `u32`.
#[inline(always)]
pub fn opaque(v: u32) -> u32 {
    opaque64(v as u64) as u32
}

/// Count a drop under its reason.
#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(p) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU array slot, valid for the program's run and only
        // touched by this CPU.
        unsafe { *p += 1 };
    }
}

/// The bond's UDP port, or 0 before the controller configured it.
#[inline(always)]
pub fn settings() -> Settings {
    match SETTINGS.get(0) {
        Some(s) => *s,
        None => Settings::default(),
    }
}
