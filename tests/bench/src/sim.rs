//! `mptcp-bench --sim`: a deterministic discrete-event simulation of the
//! bond's policies over model paths, from the same scenario files.
//!
//! The scheduling decision is `mptcp_common::policy::decide`, unchanged; what
//! is modelled is everything around it:
//! - each link (client → concentrator) is a FIFO at its rate with a tail-drop
//!   queue of `queue_ms`, then its one-way delay plus uniform jitter (order
//!   kept) and random loss; events change or cut links at their time;
//! - the controller's view, by the controller's own per-subflow monitor
//!   (`mptcp_user::monitor::PathMonitor`, unchanged): each subflow comes up
//!   timed by a packet train through its link (`mptcp_user::train`, the
//!   concentrator's meter, unchanged), which seeds its estimate; every probe interval
//!   each path's RTT is sampled (a probe through the link's queue, delay
//!   and jitter, answered over the delay) and
//!   the receiver's report (wire bytes and packets received so far, the
//!   latest one-way delay) goes into its feedback and capacity estimate; the
//!   path state the policies read is the monitor's; `down_after` missed
//!   probes mark a dead path down, the first answered one up again; rate
//!   hints are the scenario's (`[bond] rate_hints = true`, `rate_hint_pct`; by default
//!   none, and the capacity estimate sets the rate), as in the
//!   real benchmark;
//! - the receiver delivers the first copy of each packet.
//!
//! Sources are open-loop: TCP bulk flows and transfers are offered at 90 % of
//! the links' summed rate (no congestion control: the simulator shows what each
//! policy does with the packets it is given, not how a TCP reacts to it),
//! UDP as configured. Request/response traffic is not simulated.

use std::collections::HashSet;

use mptcp_common::maps::{Bucket, PathState, MAX_SUBFLOWS};
use mptcp_common::policy::{
    auto_policy, bucket_credit, bucket_spend, commit, decide, mark_unbridgeable, ConnectionPaths, FlowletEntry,
    SchedState,
};
use mptcp_common::wire::wire_len;
use mptcp_common::{ClassPolicy, Policy};
use mptcp_testbed::rng::Rng;
use mptcp_user::control::{PathHint, RxReport};
use mptcp_user::monitor::PathMonitor;
use mptcp_user::train::{TrainMeter, TRAIN_LEN, TRAIN_PACKET_BYTES};
use serde::Serialize;

use crate::scenario::{Action, Scenario, Traffic};

/// Fraction of the summed link rate the open-loop TCP model offers.
const BULK_LOAD: f64 = 0.9;
/// Packet size of the open-loop TCP model (an MSS-sized IP packet).
const TCP_PACKET: u32 = 1400;
const UDP_PROBE_SIZE: u32 = 64;
const DEFAULT_PROBE_MS: u64 = 200;
const DEFAULT_DOWN_AFTER: u32 = 3;
/// Simulated time starts here, not at 0: like the kernel's clock, long after
/// the buckets' last charge, so they start full (idle paths).
const T0: u64 = 1_000_000_000;

#[derive(Clone, Debug, Serialize)]
pub struct SimResult {
    pub system: String,
    /// Unique bytes delivered within the duration.
    pub goodput_mbit: f64,
    pub capacity_share_pct: f64,
    /// Packets offered that never arrived (no copy made it).
    pub loss_pct: f64,
    /// Delivered packets that arrived after a later packet of their flow.
    pub reordered_pct: f64,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    /// Share of the bytes put on each link (copies included).
    pub link_share_pct: Vec<f64>,
    /// Longest gap between deliveries of a UDP probe flow, if there is one.
    pub probe_gap_ms: Option<f64>,
    /// Each link's rate at the end as the controller's estimator saw it
    /// (Mbit/s on the wire; 0: no estimate), hinted or not.
    pub estimated_mbit: Vec<f64>,
    /// Per link, the rate the path's bucket ran at (hint, else the estimate;
    /// Mbit/s on the wire, 0: unknown) at every probe tick, as (seconds since
    /// the start, Mbit/s): the same series as the real benchmark's
    /// `estimate_series`, to set against the link's true rate.
    pub estimate_series: Vec<Vec<(f64, f64)>>,
}

struct Link {
    rate_bps: f64,
    delay_ns: u64,
    jitter_ns: u64,
    loss: f64,
    queue_ns: u64,
    /// Carrying packets (false after a `down` event).
    alive: bool,
    free_at: u64,
    last_arrival: u64,
    sent_bytes: u64,
    /// Wire bytes sent, as the data path's counters count them.
    sent_wire: u64,
    /// Packets on their way, (arrival time, wire bytes, one-way delay µs,
    /// packets lost just before it), in arrival order; the receiver counts
    /// them as they arrive, and the losses as the gap each one shows.
    in_flight: std::collections::VecDeque<(u64, u32, u32, u64)>,
    /// Packets lost since the last one sent that will arrive.
    lost_since: u64,
    /// The receiver's counters of this path, as its report carries them.
    rx: RxReport,
    /// The controller's view.
    up: bool,
    missed: u32,
    monitor: PathMonitor,
}

struct Flow {
    size: u32,
    gap_ns: u64,
    next: u64,
    /// Packets left (transfers), `u64::MAX` for the whole duration.
    left: u64,
    seq: u64,
    probe: bool,
    flowlet: FlowletEntry,
}

struct Arrival {
    flow: usize,
    seq: u64,
    sent: u64,
    at: u64,
    size: u32,
}

fn flows(scn: &Scenario, capacity_bps: f64) -> Vec<Flow> {
    let bulk: usize = scn
        .traffic
        .iter()
        .map(|t| match t {
            Traffic::TcpBulk { flows } => *flows,
            Traffic::Transfer { .. } => 1,
            _ => 0,
        })
        .sum();
    let udp_bps: f64 = scn
        .traffic
        .iter()
        .map(|t| match t {
            Traffic::UdpCbr { rate_mbit, .. } => rate_mbit * 1e6,
            Traffic::UdpProbe { pps } => *pps as f64 * UDP_PROBE_SIZE as f64 * 8.0,
            _ => 0.0,
        })
        .sum();
    // The bulk flows share what the UDP traffic leaves of 90 % of the summed
    // capacity (about what a congestion-controlled flow would keep in flight).
    let per_bulk = ((BULK_LOAD * capacity_bps - udp_bps).max(capacity_bps * 0.1)) / bulk.max(1) as f64;
    let gap = |size: u32, bps: f64| ((size as f64 * 8.0 / bps) * 1e9).max(1.0) as u64;
    let mut out = Vec::new();
    let mut add = |size: u32, gap_ns: u64, left: u64, probe: bool| {
        out.push(Flow { size, gap_ns, next: 0, left, seq: 0, probe, flowlet: FlowletEntry::default() })
    };
    for t in &scn.traffic {
        match t {
            Traffic::TcpBulk { flows } => {
                for _ in 0..*flows {
                    add(TCP_PACKET, gap(TCP_PACKET, per_bulk), u64::MAX, false);
                }
            }
            Traffic::Transfer { size_mb } => {
                let packets = (size_mb * 1e6 / TCP_PACKET as f64).ceil() as u64;
                add(TCP_PACKET, gap(TCP_PACKET, per_bulk), packets, false);
            }
            Traffic::UdpCbr { rate_mbit, size } => {
                add(*size as u32, gap(*size as u32, rate_mbit * 1e6), u64::MAX, false)
            }
            Traffic::UdpProbe { pps } => add(UDP_PROBE_SIZE, 1_000_000_000 / (*pps).max(1) as u64, u64::MAX, true),
            Traffic::RequestResponse { .. } => {}
        }
    }
    // Stagger the starts so that flows do not all send at t = 0.
    for (i, f) in out.iter_mut().enumerate() {
        f.next = T0 + i as u64 * 1_000;
    }
    out
}

/// What of the scenario the simulator does not model: NATs, path MTUs and
/// the concentrator's restarts live in the kernel and the controllers, which
/// only the namespace benchmark runs.
pub fn unmodelled(scn: &Scenario) -> Option<&'static str> {
    let mtu = scn.links.iter().any(|l| l.mtu.is_some() || l.downlink.as_ref().is_some_and(|d| d.mtu.is_some()))
        || scn.events.iter().any(|e| e.mtu.is_some());
    if scn.any_nat() || scn.events.iter().any(|e| e.action == Action::Rebind) {
        Some("NAT and rebinding")
    } else if mtu {
        Some("path MTUs")
    } else if scn.events.iter().any(|e| e.action == Action::RestartConcentrator) {
        Some("concentrator restarts")
    } else {
        None
    }
}

/// Run the scenario under `policy`.
/// A packet train sent at [`T0`] into the idle link (its FIFO, tail-drop
/// at its queue, then delay, jitter with order kept, and loss), timed as
/// the concentrator times one, the probe behind it ending a train whose
/// tail was dropped: the capacity it answers, wire bytes per second.
fn time_train(l: &Link, rng: &mut Rng) -> Option<u64> {
    let wire = TRAIN_PACKET_BYTES as u64 + 14;
    let mut meter = TrainMeter::default();
    let mut last = 0u64;
    let mut answer = None;
    let mut queued = 0u64;
    for i in 0..TRAIN_LEN {
        let departs = T0 + (((queued + 1) * wire * 8) as f64 / l.rate_bps * 1e9) as u64;
        if departs - T0 > l.queue_ns {
            continue; // all sent at once: the queue is full
        }
        queued += 1;
        let jitter = (rng.next_f64() * l.jitter_ns as f64) as u64;
        let arrives = (departs + l.delay_ns + jitter).max(last);
        last = arrives;
        if rng.next_f64() >= l.loss {
            answer = answer.or(meter.on_probe(1, i, TRAIN_LEN, 0, wire, arrives));
        }
    }
    let t = answer.or_else(|| meter.on_later_message())?;
    (t.span_us > 0).then(|| t.bytes as u64 * 1_000_000 / t.span_us as u64)
}

pub fn simulate(scn: &Scenario, policy: Policy) -> SimResult {
    let end = T0 + (scn.duration_s * 1e9) as u64;
    let probe_ns = scn.bond.probe_interval_ms.unwrap_or(DEFAULT_PROBE_MS) * 1_000_000;
    let down_after = scn.bond.down_after.unwrap_or(DEFAULT_DOWN_AFTER);
    let hint = |k: usize, rate_bps: f64| PathHint {
        priority: k as u32,
        rate_bytes_per_sec: scn.bond.hint_mbit(rate_bps / 1e6).map_or(0, |r| (r * 1e6 / 8.0) as u64),
        ..PathHint::default()
    };
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut links: Vec<Link> = scn
        .links
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let s = l.uplink();
            let mut monitor = PathMonitor::new(hint(k, s.rate_mbit * 1e6), 0);
            // The handshake's round trip.
            monitor.on_rtt(T0 / 1_000, (2.0 * s.delay_ms * 1e3) as u64);
            Link {
                rate_bps: s.rate_mbit * 1e6,
                delay_ns: (s.delay_ms * 1e6) as u64,
                jitter_ns: (s.jitter_ms * 1e6) as u64,
                loss: s.loss_pct / 100.0,
                queue_ns: (s.queue_ms * 1e6) as u64,
                alive: true,
                free_at: 0,
                last_arrival: 0,
                sent_bytes: 0,
                sent_wire: 0,
                in_flight: Default::default(),
                lost_since: 0,
                rx: RxReport::default(),
                up: true,
                missed: 0,
                monitor,
            }
        })
        .collect();
    // Each subflow comes up with a packet train behind its PROOF, as the
    // controller sends one: timed through the link, it seeds the estimate.
    for l in links.iter_mut().filter(|l| l.monitor.hint.rate_bytes_per_sec == 0) {
        if let Some(rate) = time_train(l, &mut rng) {
            l.monitor.seed_capacity(T0 / 1_000, rate);
        }
    }
    let capacity_bps: f64 = links.iter().map(|l| l.rate_bps).sum();
    let mut flows = flows(scn, capacity_bps);
    let mut events: Vec<_> = scn.events.iter().collect();
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let mut next_event = 0;
    let mut next_probe = T0 + probe_ns;
    let class = if policy == Policy::Auto { ClassPolicy::auto(Policy::MinRtt) } else { ClassPolicy::new(policy) };
    let mut buckets = [Bucket::default(); MAX_SUBFLOWS];
    let mut sched = SchedState::default();
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut offered: Vec<u64> = vec![0; flows.len()];
    let mut estimate_series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); links.len()];

    // The next packet of any flow, in time order.
    while let Some(fi) = (0..flows.len()).filter(|&i| flows[i].left > 0).min_by_key(|&i| flows[i].next) {
        let now = flows[fi].next;
        if now >= end {
            break;
        }
        // Link events and probe ticks up to now.
        while next_event < events.len() && T0 + (events[next_event].at_s * 1e9) as u64 <= now {
            let e = events[next_event];
            if let Some(k) = scn.links.iter().position(|l| Some(&l.name) == e.link.as_ref()) {
                match e.action {
                    // Refused by `models` before the run.
                    Action::Rebind | Action::RestartConcentrator => {}
                    Action::Down => links[k].alive = false,
                    Action::Up => links[k].alive = true,
                    Action::Set => {
                        let l = &mut links[k];
                        l.rate_bps = e.rate_mbit.map_or(l.rate_bps, |r| r * 1e6);
                        l.delay_ns = e.delay_ms.map_or(l.delay_ns, |d| (d * 1e6) as u64);
                        l.jitter_ns = e.jitter_ms.map_or(l.jitter_ns, |d| (d * 1e6) as u64);
                        l.loss = e.loss_pct.map_or(l.loss, |p| p / 100.0);
                    }
                }
            }
            next_event += 1;
        }
        while next_probe <= now {
            for (k, (l, bucket)) in links.iter_mut().zip(&buckets).enumerate() {
                // What the receiver has counted by now.
                while l.in_flight.front().is_some_and(|&(at, _, _, _)| at <= next_probe) {
                    let (_, wire, owd, lost) = l.in_flight.pop_front().unwrap();
                    l.rx.lost += lost;
                    l.rx.bytes += wire as u64;
                    l.rx.packets += 1;
                    l.rx.owd_us = owd;
                }
                // A `set` event may have changed the link's rate, and the hint follows it.
                l.monitor.hint = hint(k, l.rate_bps);
                if l.alive && rng.next_f64() >= l.loss {
                    // The probe goes out behind the link's queue and, as the
                    // link keeps order, behind any packet jitter held back;
                    // its answer comes back over the delay alone.
                    let jitter = (rng.next_f64() * l.jitter_ns as f64) as u64;
                    let at = (l.free_at.max(next_probe) + l.delay_ns + jitter).max(l.last_arrival);
                    let now_us = next_probe / 1_000;
                    l.monitor.on_rtt(now_us, (at - next_probe + l.delay_ns) / 1_000);
                    // The answer reports the probe's own one-way delay (one clock here).
                    l.rx.probe_owd_us = ((at - next_probe) / 1_000).max(1) as u32;
                    l.monitor.on_report(now_us, l.rx, l.sent_wire, Some(bucket), false);
                    l.missed = 0;
                    l.up = true;
                } else {
                    l.missed += 1;
                    if l.missed >= down_after {
                        l.up = false;
                    }
                }
                let t_s = (next_probe - T0) as f64 / 1e9;
                estimate_series[k].push((t_s, l.monitor.rate() as f64 * 8.0 / 1e6));
            }
            next_probe += probe_ns;
        }

        // The controller's path state, and the decision.
        let mut states = [PathState::default(); MAX_SUBFLOWS];
        for (k, l) in links.iter().enumerate().take(MAX_SUBFLOWS) {
            states[k] = l.monitor.path_state(l.up);
        }
        let n = links.len().min(MAX_SUBFLOWS);
        mark_unbridgeable(&mut states[..n]); // as the controller writes them
                                             // Auto stands for what the paths make it, as the controller keeps it.
        let class = if class.is_auto() { ClassPolicy::auto(auto_policy(&states[..n])) } else { class };
        let paths = ConnectionPaths { states: &states[..n], buckets: &buckets, now_ns: now };
        let f = &mut flows[fi];
        let size = f.size;
        // What the bond's buckets count, and what the link carries.
        let wire = wire_len(size, 1);
        if let Some(d) = decide(class, &paths, wire, now, &sched, &f.flowlet) {
            commit(&d, &paths, wire, now, &mut sched, &mut f.flowlet, policy == Policy::Flowlet);
            let used = d.replicas | (1 << d.subflow);
            for k in 0..n {
                if used & (1 << k) == 0 {
                    continue;
                }
                let rate = states[k].rate_bytes_per_sec;
                let credit = bucket_credit(&buckets[k], rate, now);
                bucket_spend(&mut buckets[k], rate, credit, wire, now);
                let l = &mut links[k];
                l.sent_bytes += size as u64;
                l.sent_wire += wire as u64;
                if !l.alive {
                    continue;
                }
                let start = l.free_at.max(now);
                if start - now > l.queue_ns {
                    l.lost_since += 1;
                    continue; // tail drop
                }
                l.free_at = start + (wire as f64 * 8.0 / l.rate_bps * 1e9) as u64;
                let jitter = (rng.next_f64() * l.jitter_ns as f64) as u64;
                let at = (l.free_at + l.delay_ns + jitter).max(l.last_arrival);
                l.last_arrival = at;
                if rng.next_f64() < l.loss {
                    l.lost_since += 1;
                    continue;
                }
                l.in_flight.push_back((at, wire, ((at - now) / 1_000) as u32, l.lost_since));
                l.lost_since = 0;
                arrivals.push(Arrival { flow: fi, seq: f.seq, sent: now, at, size });
            }
        }
        offered[fi] += 1;
        f.seq += 1;
        f.left = f.left.saturating_sub(1);
        f.next = now + f.gap_ns;
    }

    // The receiver: the first copy of each packet, in arrival order.
    arrivals.sort_by_key(|a| a.at);
    let mut seen: HashSet<(usize, u64)> = HashSet::new();
    let mut highest: Vec<Option<u64>> = vec![None; flows.len()];
    let mut last_probe: Vec<Option<u64>> = vec![None; flows.len()];
    let mut probe_gap: Option<u64> = None;
    let (mut bytes, mut delivered, mut reordered) = (0u64, 0u64, 0u64);
    let mut delays = Vec::new();
    for a in &arrivals {
        if !seen.insert((a.flow, a.seq)) {
            continue;
        }
        delivered += 1;
        delays.push(a.at - a.sent);
        if a.at <= end {
            bytes += a.size as u64;
        }
        match highest[a.flow] {
            Some(h) if a.seq < h => reordered += 1,
            _ => highest[a.flow] = Some(a.seq),
        }
        if flows[a.flow].probe {
            if let Some(prev) = last_probe[a.flow] {
                probe_gap = Some(probe_gap.unwrap_or(0).max(a.at - prev));
            }
            last_probe[a.flow] = Some(a.at);
        }
    }
    delays.sort_unstable();
    let pct = |p: f64| delays.get(((delays.len() as f64 - 1.0) * p) as usize).map_or(0.0, |&d| d as f64 / 1e6);
    let total_offered: u64 = offered.iter().sum();
    let sent: u64 = links.iter().map(|l| l.sent_bytes).sum();
    let goodput = bytes as f64 * 8.0 / scn.duration_s / 1e6;
    SimResult {
        system: format!("bond:{}", policy.name()),
        goodput_mbit: goodput,
        capacity_share_pct: goodput / (capacity_bps / 1e6) * 100.0,
        loss_pct: if total_offered == 0 {
            0.0
        } else {
            (total_offered - delivered) as f64 / total_offered as f64 * 100.0
        },
        reordered_pct: if delivered == 0 { 0.0 } else { reordered as f64 / delivered as f64 * 100.0 },
        delay_p50_ms: pct(0.5),
        delay_p99_ms: pct(0.99),
        link_share_pct: links.iter().map(|l| l.sent_bytes as f64 / sent.max(1) as f64 * 100.0).collect(),
        probe_gap_ms: probe_gap.map(|g| g as f64 / 1e6),
        estimated_mbit: links.iter().map(|l| l.monitor.capacity.get() as f64 * 8.0 / 1e6).collect(),
        estimate_series,
    }
}

/// The simulation's markdown table.
pub fn markdown(scn: &Scenario, results: &[SimResult], command: &str) -> String {
    let mut s = format!(
        "## {} (simulated)\n\n{}\n\n`{command}` — open-loop sources (bulk at 90 % of the summed rate); no TCP reaction.\n\n",
        scn.name(),
        scn.description
    );
    s += "| System | Goodput Mbit/s | % capacity | Loss % | Reordered % | Delay p50 ms | Delay p99 ms | Probe gap ms | Link share % |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for r in results {
        s += &format!(
            "| {} | {:.2} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {} | {} |\n",
            r.system,
            r.goodput_mbit,
            r.capacity_share_pct,
            r.loss_pct,
            r.reordered_pct,
            r.delay_p50_ms,
            r.delay_p99_ms,
            r.probe_gap_ms.map_or("–".into(), |g| format!("{g:.0}")),
            r.link_share_pct.iter().map(|p| format!("{p:.0}")).collect::<Vec<_>>().join(" / ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        toml::from_str(text).unwrap()
    }

    const TWO_UNEQUAL: &str = r#"
        duration_s = 5
        [[link]]
        name = "fast"
        rate_mbit = 10
        delay_ms = 1
        [[link]]
        name = "slow"
        rate_mbit = 3
        delay_ms = 25
        [[traffic]]
        kind = "udp-cbr"
        rate_mbit = 11
        size = 1400
    "#;

    /// Exact rate hints (scenarios run without them by default).
    const HINTS: &str = "[bond]\nrate_hints = true\n";

    #[test]
    fn the_simulation_is_deterministic() {
        let s = scenario(TWO_UNEQUAL);
        let a = simulate(&s, Policy::MinRtt);
        let b = simulate(&s, Policy::MinRtt);
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    }

    /// With hints the buckets run at the hint from the first tick, sampled
    /// every probe interval; a `set` moves the hint, as in the benchmark.
    /// (The queue trim leaves hints alone.)
    #[test]
    fn the_estimate_series_follows_the_hints_at_every_probe_tick() {
        let set = "[[event]]\nat_s = 3\nlink = \"fast\"\naction = \"set\"\nrate_mbit = 6\n";
        let r = simulate(&scenario(&format!("{TWO_UNEQUAL}\n{HINTS}\n{set}")), Policy::MinRtt);
        let fast = &r.estimate_series[0];
        assert!(fast.len() >= 24, "a tick every 200 ms over 5 s: {fast:?}");
        for (i, &(t, m)) in fast.iter().enumerate() {
            assert!((t - 0.2 * (i + 1) as f64).abs() < 1e-9, "{fast:?}");
            assert!((m - if t < 3.0 { 10.0 } else { 6.0 }).abs() < 1e-9, "{fast:?}");
        }
        assert!(r.estimate_series[1].iter().all(|&(_, m)| (m - 3.0).abs() < 1e-9), "{r:?}");
    }

    /// Over 11 Mbit/s offered to 10 + 3 with exact rate hints (the
    /// buckets count wire bytes, as the links do): earliest-arrival delivers in order
    /// where min-rtt's spill-over reorders, and both use the slow link. The
    /// fast queue never drains here, so any rate error accumulates in the
    /// queue estimate: 0.005 % off reorders after a few thousand packets.
    #[test]
    fn earliest_arrival_keeps_order_where_min_rtt_reorders() {
        let s = scenario(&format!("{TWO_UNEQUAL}\n{HINTS}"));
        let ea = simulate(&s, Policy::EarliestArrival);
        let mr = simulate(&s, Policy::MinRtt);
        assert!(ea.reordered_pct < 0.5, "{ea:?}");
        assert!(mr.reordered_pct > 2.0, "{mr:?}");
        assert!(ea.link_share_pct[1] > 5.0 && mr.link_share_pct[1] > 5.0, "{ea:?} {mr:?}");
        assert!(ea.loss_pct < 1.0, "{ea:?}");
    }

    /// The same with hints 5 % under the true rate: earliest-arrival thinks
    /// the fast queue is longer than it is and spills too early, so it
    /// reorders about as much as the error. (Why rate estimates matter.)
    #[test]
    fn earliest_arrival_reorders_when_the_rate_hint_is_low() {
        let s = scenario(&format!("{TWO_UNEQUAL}\n{HINTS}rate_hint_pct = 95\n"));
        let ea = simulate(&s, Policy::EarliestArrival);
        assert!(ea.reordered_pct > 2.0, "{ea:?}");
    }

    /// A link dies: redundant loses nothing, active-backup loses until the
    /// path is declared down, weighted keeps losing its share until then too.
    /// The controller's estimator runs in the simulation: without hints
    /// each link is first timed by the packet train behind its PROOF, then
    /// its capacity follows the modelled feedback once the link is full:
    /// the slow link, which min-rtt's spill-over never fills at 11 Mbit/s,
    /// keeps its train's estimate; a load that fills both links' queues
    /// from the first packet (no unqueued floor to see a queue by) finds
    /// both.
    #[test]
    fn without_hints_the_estimator_finds_the_rate_of_a_link_that_queues() {
        let no_hints = "\n[bond]\nrate_hints = false\n";
        let r = simulate(&scenario(&(TWO_UNEQUAL.to_string() + no_hints)), Policy::MinRtt);
        // Found, then probed up to 10 % above when no queue stands (the
        // queue trim drains the one the first second's flood left).
        assert!((9.5..=11.01).contains(&r.estimated_mbit[0]), "the fast link, queued: {r:?}");
        assert!((r.estimated_mbit[1] - 3.0).abs() < 0.05, "the slow link, timed by its train: {r:?}");
        // Without hints the buckets run at the estimate (trimmed by 5 % at
        // most): the series, sampled to the end, ends where the estimate does.
        for (series, &end) in r.estimate_series.iter().zip(&r.estimated_mbit) {
            assert!(series.last().is_some_and(|&(t, m)| t > 4.5 && (m - end).abs() <= end * 0.051), "{r:?}");
        }
        let full_blast = TWO_UNEQUAL.replace("rate_mbit = 11", "rate_mbit = 14") + no_hints;
        let r = simulate(&scenario(&full_blast), Policy::MinRtt);
        let near = |m: f64, want: f64| (m - want).abs() <= want * 0.05;
        assert!(near(r.estimated_mbit[0], 10.0) && near(r.estimated_mbit[1], 3.0), "queued from the start: {r:?}");
    }

    /// A small near link beside a big far one (a satellite), no hints: once
    /// the small link's buffer is known from where it dropped, it cannot
    /// hold the queue that would keep its packets behind the satellite's,
    /// so earliest-arrival leaves it out and the flow arrives in order.
    #[test]
    fn earliest_arrival_leaves_out_a_near_link_whose_buffer_cannot_bridge_the_delay() {
        let s = scenario(
            r#"
            duration_s = 10
            [[link]]
            name = "terrestrial"
            rate_mbit = 4
            delay_ms = 20
            [[link]]
            name = "satellite"
            rate_mbit = 20
            delay_ms = 300
            queue_ms = 100
            [[traffic]]
            kind = "udp-cbr"
            rate_mbit = 12
            size = 1400
            "#,
        );
        let ea = simulate(&s, Policy::EarliestArrival);
        assert!(ea.reordered_pct < 1.0, "{ea:?}");
        // The small link is flooded first (nothing is known yet) and found
        // by what it drops; from then on the satellite carries the flow.
        assert!(ea.link_share_pct[1] > 85.0 && ea.loss_pct < 10.0, "{ea:?}");
    }

    #[test]
    fn redundant_loses_nothing_across_a_failure() {
        let s = scenario(
            r#"
            duration_s = 4
            [[link]]
            name = "a"
            rate_mbit = 10
            delay_ms = 5
            [[link]]
            name = "b"
            rate_mbit = 10
            delay_ms = 15
            [[traffic]]
            kind = "udp-probe"
            [[event]]
            at_s = 2
            link = "a"
            action = "down"
            [bond]
            probe_interval_ms = 50
            "#,
        );
        let r = simulate(&s, Policy::Redundant);
        assert_eq!(r.loss_pct, 0.0, "{r:?}");
        let ab = simulate(&s, Policy::ActiveBackup);
        assert!(ab.loss_pct > 1.0, "{ab:?}");
        assert!(ab.probe_gap_ms.unwrap() >= 100.0 && ab.probe_gap_ms.unwrap() < 250.0, "{ab:?}");
    }
}
