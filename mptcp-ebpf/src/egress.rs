//! tc egress on the bond device, top to bottom: find the connection of the
//! inner destination, classify the packet, let the class's policy pick a
//! subflow and number the packet; then `bond_encap` (encap.rs, a tail call)
//! encapsulates it and redirects it to that subflow's uplink.

use aya_ebpf::bindings::TC_ACT_SHOT;
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::classifier;
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::programs::TcContext;
use mptcp_common::classify::{classify, PacketMeta, DEFAULT_CLASS};
use mptcp_common::inner::{connection, packet_meta};
use mptcp_common::maps::{Bucket, Connection, FlowletKey, PathState, TxState, MAX_SUBFLOWS};
use mptcp_common::policy::{bucket_credit, bucket_spend, commit, decide, FlowletEntry, Paths};
use mptcp_common::template::{V4_OUTER, V6_OUTER};
use mptcp_common::wire::{wire_len, ETH_HLEN, FAMILY_V6, FLAG_REPLICATED};
use mptcp_common::{ClassPolicy, DropReason, Policy};

use crate::maps::{
    opaque, opaque64, settings, Replica, Sending, CLASS_POLICY, CLASS_RULES, CONNECTIONS, CONN_BY_DEST_V4,
    CONN_BY_DEST_V6, ENCAP_PROGS, FLOWLETS, REPLICA, SENDING, TX_STATE,
};
use crate::mss;
use crate::parse::TcPacket;

#[classifier]
pub fn bond_egress(ctx: TcContext) -> i32 {
    match try_bond_egress(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => {
            crate::debug::dropped(&ctx, reason, mptcp_common::maps::HOOK_BOND_EGRESS);
            TC_ACT_SHOT
        }
    }
}

/// The connection's subflows as the policy functions see them.
struct ConnPaths<'a> {
    conn: &'a Connection,
    buckets: &'a [Bucket; MAX_SUBFLOWS],
    now_ns: u64,
}

impl Paths for ConnPaths<'_> {
    #[inline(always)]
    fn count(&self) -> usize {
        let n = self.conn.n_subflows as usize;
        if n > MAX_SUBFLOWS {
            MAX_SUBFLOWS
        } else {
            n
        }
    }
    #[inline(always)]
    fn state(&self, i: usize) -> &PathState {
        &self.conn.subflows[i & (MAX_SUBFLOWS - 1)].path
    }
    #[inline(always)]
    fn credit(&self, i: usize) -> i64 {
        let i = i & (MAX_SUBFLOWS - 1);
        // Laundered: the refill's branches then cost a sum, not a product, over the loop.
        opaque64(bucket_credit(&self.buckets[i], self.conn.subflows[i].path.rate_bytes_per_sec, self.now_ns) as u64)
            as i64
    }
    #[inline(always)]
    fn launder(&self, v: usize) -> usize {
        opaque64(v as u64) as usize
    }
}

/// Atomically read and advance a sequence counter shared by all CPUs, so every
/// packet of a connection gets its own numbers. `core` offers no atomic
/// read-modify-write on bpfel-unknown-none, hence the one BPF instruction
/// (BPF_ATOMIC | BPF_FETCH add, kernel >= 5.12).
#[inline(always)]
fn fetch_add(p: &mut u64, v: u64) -> u64 {
    let mut val = v;
    // SAFETY: `p` points into a map value valid for the program's run; the
    // instruction reads and writes only those 8 bytes and returns the old value.
    unsafe {
        core::arch::asm!(
            "{val} = atomic_fetch_add((u64 *)({ptr} + 0), {val})",
            ptr = in(reg) p as *mut u64,
            val = inout(reg) val,
        );
    }
    val
}

/// The class's policy for a packet of `wire_bytes` ([`wire_len`]): (subflow,
/// mask of subflows for copies).
#[inline(always)]
fn schedule(
    ctx: &TcContext,
    h_proto: u16,
    token: u32,
    conn: &Connection,
    tx: &mut TxState,
    wire_bytes: u32,
    now_ns: u64,
) -> Result<(usize, u32), DropReason> {
    // Which class: the first matching rule (parsing only when rules exist).
    let n_rules = settings().n_rules as u32;
    let mut meta = PacketMeta::default();
    let mut parsed = false;
    let mut class = DEFAULT_CLASS;
    if n_rules > 0 {
        meta = packet_meta(&TcPacket(ctx), h_proto)?;
        parsed = true;
        class = classify(|i| CLASS_RULES.get(i), n_rules, &meta);
    }
    let cp = match CLASS_POLICY.get(class as u32) {
        Some(p) => *p,
        None => ClassPolicy::new(Policy::MinRtt),
    };
    let flowlet = cp.policy() == Policy::Flowlet;
    let mut flow_key = FlowletKey { token, flow_hash: 0 };
    let mut flow = FlowletEntry::default();
    if flowlet {
        if !parsed {
            meta = packet_meta(&TcPacket(ctx), h_proto)?;
        }
        flow_key.flow_hash = meta.flow_hash();
        // SAFETY: the value is copied out at once.
        if let Some(e) = unsafe { FLOWLETS.get(flow_key) } {
            flow = *e;
        }
    }
    // Which subflow: one pure function of mptcp-common. The policies read
    // weighted's tags from a stack copy: read in place from the map value,
    // the verifier's work exceeds its budget.
    let mut sched = tx.sched;
    let paths = ConnPaths { conn, buckets: &tx.buckets, now_ns };
    let d = decide(cp, &paths, wire_bytes, now_ns, &sched, &flow).ok_or(DropReason::NoSubflow)?;
    commit(&d, &paths, wire_bytes, now_ns, &mut sched, &mut flow, flowlet);
    if d.by == Policy::Weighted {
        tx.sched = sched; // only weighted changed it; don't overwrite another CPU's update
    }
    if flowlet {
        let _ = FLOWLETS.insert(flow_key, flow, 0);
    }
    Ok((d.subflow, d.replicas))
}

/// The pending copy for this run, if the run is a clone's (and clear it, so
/// nothing further down the stack takes it again).
#[inline(always)]
fn take_replica() -> Replica {
    match REPLICA.get_ptr_mut(0) {
        // SAFETY: per-CPU slot valid for the run; this CPU only.
        Some(p) => unsafe {
            let r = *p;
            (*p).active = 0;
            r
        },
        None => Replica { active: 0, subflow: 0, dsn: 0 },
    }
}

/// Clone the packet into the bond's egress once per subflow in `mask`. tc
/// egress runs inside the clone's transmit, on this CPU, before the helper
/// returns, so the nested run finds its subflow and DSN in REPLICA.
#[inline(always)]
fn send_replicas(ctx: &TcContext, mask: u32, dsn: u32) {
    let Some(p) = REPLICA.get_ptr_mut(0) else { return };
    // SAFETY: reading a field of the skb context the program was given.
    let bond = unsafe { (*ctx.skb.skb).ifindex };
    for j in 0..MAX_SUBFLOWS as u32 {
        if mask & (1 << j) == 0 {
            continue;
        }
        // SAFETY: per-CPU slot valid for the run; this CPU only.
        unsafe { *p = Replica { active: 1, subflow: j, dsn: dsn as u64 } };
        // A failed copy is not fatal: the packet itself still goes out.
        let _ = ctx.clone_redirect(bond, 0);
        // SAFETY: as above.
        unsafe { (*p).active = 0 };
    }
}

/// How many segments GSO will cut the packet into (0 or 1: not a GSO packet).
#[inline(always)]
pub fn gso_segs_of(ctx: &TcContext) -> u32 {
    // SAFETY: reading a field of the skb context the program was given.
    unsafe { (*ctx.skb.skb).gso_segs }
}

#[inline(always)]
fn try_bond_egress(ctx: &TcContext) -> Result<i32, DropReason> {
    // 1. Which connection: longest prefix match on the inner destination.
    let (h_proto, token) = connection(
        &TcPacket(ctx),
        |a| CONN_BY_DEST_V4.get(Key::new(32, a)).copied(),
        |a| CONN_BY_DEST_V6.get(Key::new(128, a)).copied(),
    )?;
    let conn_ptr = CONNECTIONS.get_ptr(token).ok_or(DropReason::NoConnection)?;
    let tx_ptr = TX_STATE.get_ptr_mut(token).ok_or(DropReason::NoConnection)?;
    // SAFETY: map values stay valid for the whole program run.
    let (conn, tx) = unsafe { (&*conn_ptr, &mut *tx_ptr) };

    // SAFETY: plain helper call.
    let now_ns = unsafe { bpf_ktime_get_ns() };
    let inner_len = ctx.len().saturating_sub(ETH_HLEN as u32);
    // The buckets count every GSO segment's bytes on the wire. Laundered:
    // the verifier need not carry how it was computed through the policies.
    let wire = opaque(wire_len(inner_len, gso_segs_of(ctx)));

    // A TCP SYN leaves announcing no more than a segment the bond carries.
    // (A copy of a redundant packet was clamped by the run that cloned it.)
    let replica = take_replica();
    if replica.active == 0 && gso_segs_of(ctx) <= 1 {
        mss::clamp(&TcPacket(ctx), ETH_HLEN, h_proto);
    }

    // 2. Which subflow: a copy of a redundant packet re-entering the bond was
    // placed by the run that cloned it; any other packet by its class's policy.
    let (i, replicas) = if replica.active != 0 {
        (replica.subflow as usize, 0)
    } else {
        schedule(ctx, h_proto, token, conn, tx, wire, now_ns)?
    };
    // From here on only laundered numbers: the verifier then sees the same
    // state whichever policy decided, and checks the rest of the program once
    // instead of once per policy.
    let i = opaque(i as u32) as usize & (MAX_SUBFLOWS - 1);
    let replicas = opaque(replicas);
    let credit = ConnPaths { conn, buckets: &tx.buckets, now_ns }.credit(i);
    bucket_spend(&mut tx.buckets[i], conn.subflows[i].path.rate_bytes_per_sec, credit, wire, now_ns);
    let sub = &conn.subflows[i];

    // 3. Sequence numbers advance by the GSO segment count: the kernel copies
    // our header onto every segment. All copies of a packet share its DSN.
    let gso_segs = gso_segs_of(ctx);
    let segs = if gso_segs > 1 { gso_segs } else { 1 };
    let v6 = sub.outer.family == FAMILY_V6;
    let outer = if v6 { V6_OUTER } else { V4_OUTER };
    if gso_segs <= 1 && inner_len as usize + outer > settings().uplink_mtu as usize {
        return Err(DropReason::TooBig);
    }
    let dsn = if replica.active != 0 { replica.dsn as u32 } else { fetch_add(&mut tx.dsn, segs as u64) as u32 };
    let seq = fetch_add(&mut tx.subflow_seq[i], segs as u64);
    let replicated = replica.active != 0 || replicas != 0;

    // 4. Copies (redundant): the still-unencapsulated packet goes back into
    // the bond once per further subflow, each copy placed there by REPLICA.
    if replicas != 0 {
        send_replicas(ctx, replicas, dsn);
    }

    // 5. Encapsulation and sending go on in `bond_encap` (encap.rs), a
    // program of its own: the verifier checks it once, where inline it was
    // checked again for each of the hundreds of states the policies leave
    // (this program was at 96 % of the verifier's budget before the tag).
    let sending = Sending {
        token,
        subflow: i as u32,
        dsn,
        seq: seq as u32,
        seq_hi: (seq >> 32) as u32,
        flags: if replicated { FLAG_REPLICATED as u32 } else { 0 },
        tstamp_us: (now_ns / 1000) as u32,
    };
    let slot = SENDING.get_ptr_mut(0).ok_or(DropReason::EncapFailed)?;
    // SAFETY: per-CPU slot valid for the run; the tail call runs on this CPU
    // before anything else can write it.
    unsafe { *slot = sending };
    // SAFETY: a tail call with our own context; it returns only on failure.
    unsafe { ENCAP_PROGS.tail_call(ctx, 0) };
    Err(DropReason::EncapFailed)
}
