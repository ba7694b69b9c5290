//! Unit and property tests of every policy over fixed path states and over a
//! small model of real paths (rate, delay, FIFO queue).

use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::maps::{
    Bucket, PathState, PATH_BACKUP, PATH_ESTABLISHED, PATH_RATE_LOWER_BOUND, PATH_RATE_SIZED, PATH_UNBRIDGEABLE,
    PATH_UNUSED, PATH_UP,
};

struct Fixed {
    states: [PathState; MAX_SUBFLOWS],
    credits: [i64; MAX_SUBFLOWS],
    n: usize,
}

impl Paths for Fixed {
    fn count(&self) -> usize {
        self.n
    }
    fn state(&self, i: usize) -> &PathState {
        &self.states[i]
    }
    fn credit(&self, i: usize) -> i64 {
        self.credits[i]
    }
}

fn path(flags: u32, priority: u32, srtt_us: u32, rate: u64) -> PathState {
    PathState { flags, priority, srtt_us, rate_bytes_per_sec: rate, ..Default::default() }
}

fn fixed(paths: &[PathState]) -> Fixed {
    let mut f =
        Fixed { states: [PathState::default(); MAX_SUBFLOWS], credits: [i64::MAX; MAX_SUBFLOWS], n: paths.len() };
    f.states[..paths.len()].copy_from_slice(paths);
    f
}

const LIVE: u32 = PATH_ESTABLISHED | PATH_UP;

fn pick(policy: Policy, f: &Fixed) -> Option<usize> {
    decide(ClassPolicy::new(policy), f, 1000, 1, &SchedState::default(), &FlowletEntry::default()).map(|d| d.subflow)
}

#[test]
fn min_rtt_prefers_lowest_rtt_then_spills() {
    let mut f = fixed(&[path(LIVE, 0, 30_000, 1000), path(LIVE, 0, 5_000, 1000)]);
    assert_eq!(min_rtt(&f, 100), Some(1));
    f.credits[1] = 50; // fast path's bucket is short
    assert_eq!(min_rtt(&f, 100), Some(0));
    f.credits[0] = 0; // both short: the one refilling first (smaller deficit)
    assert_eq!(min_rtt(&f, 100), Some(1));
}

#[test]
fn down_and_unestablished_paths_are_skipped_by_every_policy() {
    let f = fixed(&[path(PATH_ESTABLISHED, 0, 1, 0), path(LIVE, 0, 50, 0), path(0, 0, 0, 0)]);
    for p in Policy::ALL {
        assert_eq!(pick(p, &f), Some(1), "{}", p.name());
    }
    let d = decide(ClassPolicy::new(Policy::Redundant), &f, 100, 1, &SchedState::default(), &FlowletEntry::default());
    assert_eq!(d.unwrap().replicas, 0);
}

#[test]
fn backup_only_when_no_regular_path_is_up() {
    let mut f = fixed(&[path(LIVE | PATH_BACKUP, 0, 1, 0), path(LIVE, 5, 90, 0)]);
    for p in Policy::ALL {
        assert_eq!(pick(p, &f), Some(1), "{}", p.name());
    }
    f.states[1].flags = PATH_ESTABLISHED; // regular path down
    for p in Policy::ALL {
        assert_eq!(pick(p, &f), Some(0), "{}", p.name());
    }
}

#[test]
fn a_path_left_unused_carries_nothing_even_with_every_other_path_down() {
    // The fastest path, but its data cap is spent and it is to be left unused.
    let mut f = fixed(&[path(LIVE | PATH_UNUSED, 0, 1, 0), path(LIVE, 5, 90, 0)]);
    for p in Policy::ALL {
        assert_eq!(pick(p, &f), Some(1), "{}", p.name());
    }
    let d = decide(ClassPolicy::new(Policy::Redundant), &f, 100, 1, &SchedState::default(), &FlowletEntry::default());
    assert_eq!(d.unwrap().replicas, 0, "no copy on the unused path");
    f.states[1].flags = PATH_ESTABLISHED; // the other path down: still not the unused one
    for p in Policy::ALL {
        assert_eq!(pick(p, &f), Some(1), "{}", p.name());
    }
    f.states[1].flags = 0; // no other subflow at all: nothing, rather than the unused one
    for p in Policy::ALL {
        assert_eq!(pick(p, &f), None, "{}", p.name());
    }
}

#[test]
fn all_down_falls_back_to_established_and_none_means_none() {
    let f = fixed(&[path(PATH_ESTABLISHED, 1, 0, 0), path(PATH_ESTABLISHED, 0, 0, 0)]);
    assert_eq!(active_backup(&f), Some(1));
    assert_eq!(min_rtt(&f, 100), Some(0));
    // An unmeasured path ranks after a measured one.
    let f = fixed(&[path(LIVE, 0, 0, 0), path(LIVE, 0, 80_000, 0)]);
    assert_eq!(min_rtt(&f, 100), Some(1));
    assert_eq!(earliest_arrival(&f, 100), Some(1));
    for p in Policy::ALL {
        assert_eq!(pick(p, &fixed(&[])), None);
        assert_eq!(pick(p, &fixed(&[path(0, 0, 10, 0)])), None);
    }
}

#[test]
fn active_backup_takes_lowest_priority_value() {
    let f = fixed(&[path(LIVE, 2, 1, 0), path(LIVE, 1, 99, 0), path(LIVE, 1, 50, 0)]);
    assert_eq!(active_backup(&f), Some(2));
}

#[test]
fn redundant_sends_on_the_lowest_rtt_subflow_and_copies_to_the_others() {
    let f =
        fixed(&[path(LIVE, 0, 30, 0), path(LIVE, 0, 10, 0), path(LIVE, 0, 20, 0), path(LIVE | PATH_BACKUP, 0, 1, 0)]);
    assert_eq!(redundant(&f), Some((1, 0b101)));
}

#[test]
fn earliest_arrival_counts_the_queue() {
    // 10 Mbit/s 1 ms vs 3 Mbit/s 25 ms (one-way delays 0.5 and 12.5 ms).
    let mut f = fixed(&[path(LIVE, 0, 1_000, 1_250_000), path(LIVE, 0, 25_000, 375_000)]);
    let depth = [bucket_depth(1_250_000), bucket_depth(375_000)];
    f.credits = [depth[0], depth[1], 0, 0, 0, 0, 0, 0];
    assert_eq!(earliest_arrival(&f, 1500), Some(0));
    // 10 ms queued on the fast path still beats the slow one...
    f.credits[0] = depth[0] - 12_500;
    assert_eq!(earliest_arrival(&f, 1500), Some(0));
    // ...15 ms does not.
    f.credits[0] = depth[0] - 18_750;
    assert_eq!(earliest_arrival(&f, 1500), Some(1));
}

#[test]
fn earliest_arrival_sends_what_would_overflow_a_buffer_elsewhere() {
    // 10 Mbit/s, 5 ms one way, holding 5 ms of queue; 3 Mbit/s, 8 ms, 50 ms.
    let a = PathState { owd_us: 5_000, queue_us: 5_000, ..path(LIVE, 0, 10_000, 1_250_000) };
    let b = PathState { owd_us: 8_000, queue_us: 50_000, ..path(LIVE, 0, 16_000, 375_000) };
    let mut f = fixed(&[a, b]);
    let depth = bucket_depth(1_250_000);
    f.credits = [depth - 3_750, bucket_depth(375_000), 0, 0, 0, 0, 0, 0];
    // 3 ms queued: the packet fits (4.2 ms) and arrives first (9.2 < 12 ms).
    assert_eq!(earliest_arrival(&f, 1500), Some(0));
    // 4 ms queued: it would still arrive first (10.2 ms), but A's buffer
    // cannot hold it (5.2 ms).
    f.credits[0] = depth - 5_000;
    assert_eq!(earliest_arrival(&f, 1500), Some(1));
    // A buffer not known yet holds anything.
    f.states[0].queue_us = 0;
    assert_eq!(earliest_arrival(&f, 1500), Some(0));
}

#[test]
fn a_lossy_path_takes_what_the_clean_one_cannot_carry_within_its_penalty() {
    // Two 10 Mbit/s paths, 5 and 7.5 ms one way; the nearer loses 2 % at
    // random (10 ms of penalty).
    let clean = PathState { owd_us: 7_500, ..path(LIVE, 0, 15_000, 1_250_000) };
    let lossy = PathState { owd_us: 5_000, loss_ppm: 20_000, ..path(LIVE, 0, 10_000, 1_250_000) };
    let mut f = fixed(&[lossy, clean]);
    assert_eq!(loss_penalty_us(&f.states[0]), 10_000);
    let depth = bucket_depth(1_250_000);
    f.credits = [depth, depth, 0, 0, 0, 0, 0, 0];
    // Both idle: the clean path, though farther, for both policies.
    assert_eq!(earliest_arrival(&f, 1500), Some(1));
    assert_eq!(min_rtt(&f, 1500), Some(1));
    // 6 ms queued on the clean path (13.5 + 1.2 ms) still beats the lossy
    // one (5 + 10 + 1.2); 10 ms does not.
    f.credits[1] = depth - 7_500;
    assert_eq!(earliest_arrival(&f, 1500), Some(1));
    f.credits[1] = depth - 12_500;
    assert_eq!(earliest_arrival(&f, 1500), Some(0));
    // min-rtt spills to the lossy path only once the clean bucket is short.
    f.credits[1] = 1_500;
    assert_eq!(min_rtt(&f, 1500), Some(1));
    f.credits[1] = 1_000;
    assert_eq!(min_rtt(&f, 1500), Some(0));
    // Without the loss the nearer path is first for both.
    f.states[0].loss_ppm = 0;
    f.credits = [depth, depth, 0, 0, 0, 0, 0, 0];
    assert_eq!(earliest_arrival(&f, 1500), Some(0));
    assert_eq!(min_rtt(&f, 1500), Some(0));
    // At most 50 ms: the most loss a path state says.
    f.states[0].loss_ppm = MAX_LOSS_PPM;
    assert_eq!(loss_penalty_us(&f.states[0]), 50_000);
}

#[test]
fn auto_is_earliest_arrival_where_the_delays_differ_or_the_rates_are_sized_and_min_rtt_where_not() {
    let at = |owd_us: u32| PathState { owd_us, ..path(LIVE, 0, 2 * owd_us, 1_250_000) };
    // A demo box's three uplinks, all within a millisecond: min-rtt.
    assert_eq!(auto_policy(&[at(300), at(400), at(600)]), Policy::MinRtt);
    // 1 ms beside 25 ms, or DSL beside a satellite: earliest-arrival.
    assert_eq!(auto_policy(&[at(500), at(12_500)]), Policy::EarliestArrival);
    assert_eq!(auto_policy(&[at(20_000), at(300_000)]), Policy::EarliestArrival);
    // Just under the spread, and a path whose delay is not known yet: min-rtt.
    assert_eq!(auto_policy(&[at(10_000), at(19_999)]), Policy::MinRtt);
    assert_eq!(auto_policy(&[at(10_000), PathState { owd_us: 0, srtt_us: 0, ..at(1) }]), Policy::MinRtt);
    // Only the usable tier counts: a far backup does not make the paths unequal.
    let backup = PathState { flags: LIVE | PATH_BACKUP, ..at(300_000) };
    assert_eq!(auto_policy(&[at(10_000), backup]), Policy::MinRtt);
    assert_eq!(auto_policy(&[]), Policy::MinRtt);
    // Equal delays, every rate sized whole (a train timed it, or a hint):
    // earliest-arrival can place the packets. One path unsized, or a lone
    // path: min-rtt.
    let sized = |owd_us: u32| PathState { flags: LIVE | PATH_RATE_SIZED, ..at(owd_us) };
    assert_eq!(auto_policy(&[sized(300), sized(400), sized(600)]), Policy::EarliestArrival);
    assert_eq!(auto_policy(&[sized(300), sized(400), at(600)]), Policy::MinRtt);
    assert_eq!(auto_policy(&[sized(300)]), Policy::MinRtt);
    assert_eq!(auto_policy(&[sized(300), PathState { flags: LIVE | PATH_BACKUP, ..at(400) }]), Policy::MinRtt);
    // A class set to auto runs what it stands for, and says it was auto.
    let cp = ClassPolicy::auto(Policy::EarliestArrival);
    assert_eq!((cp.policy(), cp.chosen()), (Policy::EarliestArrival, Policy::Auto));
    assert_eq!(ClassPolicy::new(Policy::Weighted).chosen(), Policy::Weighted);
    assert!(!Policy::Auto.is_base(), "flowlet's base must be a policy the data path runs");
}

/// earliest-arrival as the data path runs it: on path states the controller
/// marked with [`mark_unbridgeable`].
fn marked_earliest_arrival(f: &mut Fixed) -> Option<usize> {
    mark_unbridgeable(&mut f.states[..f.n]);
    earliest_arrival(f, 1500)
}

#[test]
fn earliest_arrival_leaves_out_a_path_it_cannot_use_in_order() {
    // A 4 Mbit/s link 20 ms away whose buffer holds 50 ms, beside a
    // 20 Mbit/s satellite 300 ms away: the small link's packets would arrive
    // 230 ms before those sent earlier on the satellite.
    let small = PathState { owd_us: 20_000, queue_us: 50_000, ..path(LIVE, 0, 40_000, 500_000) };
    let sat = PathState { owd_us: 300_000, queue_us: 100_000, ..path(LIVE, 0, 600_000, 2_500_000) };
    let mut f = fixed(&[small, sat]);
    assert!(!bridgeable(&small, &sat));
    assert_eq!(marked_earliest_arrival(&mut f), Some(1));
    assert_eq!(f.states[0].flags & PATH_UNBRIDGEABLE, PATH_UNBRIDGEABLE);
    // Ordered by rate: with the small link the bigger, the satellite is left out.
    f.states[0].rate_bytes_per_sec = 5_000_000;
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    assert_eq!((f.states[0].flags & PATH_UNBRIDGEABLE, f.states[1].flags & PATH_UNBRIDGEABLE), (0, PATH_UNBRIDGEABLE));
    f.credits[0] = bucket_depth(5_000_000) - 1_000_000; // even with 200 ms queued
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    // Still the only way when the other is down, or judged by nothing.
    f.states[0].rate_bytes_per_sec = 500_000;
    f.credits[0] = i64::MAX;
    f.states[1].flags = PATH_ESTABLISHED;
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    f.states[1].flags = LIVE;
    // A rate not known yet is unlimited: the satellite might be the bigger.
    f.states[1].rate_bytes_per_sec = 0;
    f.states[0].rate_bytes_per_sec = 5_000_000;
    assert_eq!(marked_earliest_arrival(&mut f), Some(1));
    // But a buffer not learnt yet is not held against a path beside one of
    // unknown rate: nothing says the satellite is worth leaving it for.
    f.states[0].queue_us = 0;
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    assert!(f.states.iter().all(|p| p.flags & PATH_UNBRIDGEABLE == 0));
    f.states[0].queue_us = 50_000;
    // So might one whose rate is only a lower bound, beside a measured one,
    // be the bigger, until it has been filled to its buffer.
    f.states[1].rate_bytes_per_sec = 62_500;
    f.states[1].queue_us = 0;
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    f.states[1].flags |= PATH_RATE_LOWER_BOUND;
    assert_eq!(marked_earliest_arrival(&mut f), Some(1));
    f.states[1].queue_us = 100_000;
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    f.states[1].flags = LIVE;
    f.states[1].rate_bytes_per_sec = 2_500_000;
    f.states[0].rate_bytes_per_sec = 500_000;
    f.states[0].queue_us = 0;
    // A buffer not learnt yet is taken to hold ASSUMED_QUEUE_US: short of
    // the satellite's 280 ms, so the small link is left out from the start
    // (the inner flows' slow start would overflow it at a small window).
    assert!(!bridgeable(&f.states[0], &f.states[1]));
    assert_eq!(marked_earliest_arrival(&mut f), Some(1));
    f.states[1].owd_us = 20_000 + ASSUMED_QUEUE_US;
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    f.states[1].owd_us = 300_000;
    // A buffer deep enough bridges the gap.
    f.states[0].queue_us = 300_000;
    assert!(bridgeable(&f.states[0], &f.states[1]));
    assert_eq!(marked_earliest_arrival(&mut f), Some(0));
    assert!(f.states.iter().all(|p| p.flags & PATH_UNBRIDGEABLE == 0));
}

#[test]
fn earliest_arrival_returns_acknowledgements_over_a_near_path_left_out() {
    // The small near link is left out of the satellite's flows' data, but a
    // bare acknowledgement arrives 280 ms sooner on it: the far flows'
    // round trip becomes the satellite's one way plus the near link's.
    let small = PathState { owd_us: 20_000, queue_us: 50_000, ..path(LIVE, 0, 40_000, 500_000) };
    let sat = PathState { owd_us: 300_000, queue_us: 100_000, ..path(LIVE, 0, 600_000, 2_500_000) };
    let mut f = fixed(&[small, sat]);
    mark_unbridgeable(&mut f.states[..2]);
    assert_eq!(f.states[0].flags & PATH_UNBRIDGEABLE, PATH_UNBRIDGEABLE);
    let bare_ack_v6 = crate::wire::wire_len(40 + 20 + 12 + 28, 1); // timestamps, 3 SACK blocks
    assert_eq!(bare_ack_v6, ACK_SIZED);
    assert_eq!(earliest_arrival(&f, bare_ack_v6), Some(0));
    assert_eq!(earliest_arrival(&f, crate::wire::wire_len(52, 1)), Some(0));
    // One byte more is data, kept in order on the satellite.
    assert_eq!(earliest_arrival(&f, ACK_SIZED + 1), Some(1));
    assert_eq!(earliest_arrival(&f, 1500), Some(1));
    // Acknowledgements still go where they arrive first: once the near link
    // holds 300 ms of queue, the satellite.
    f.credits[0] = bucket_depth(500_000) - 150_000;
    assert_eq!(earliest_arrival(&f, bare_ack_v6), Some(1));
}

#[test]
fn weighted_gives_a_path_of_unknown_rate_the_bytes_until_it_is_measured() {
    // Beside a measured 1.25 MB/s path, one not measured yet counts as
    // unlimited: it carries nearly every packet (and so gets measured).
    let f = fixed(&[path(LIVE, 0, 1_000, 1_250_000), path(LIVE, 0, 1_000, 0)]);
    let mut sched = SchedState::default();
    let mut on = [0u32; 2];
    for _ in 0..10_000 {
        let d = decide(ClassPolicy::new(Policy::Weighted), &f, 1_500, 1, &sched, &FlowletEntry::default()).unwrap();
        commit(&d, &f, 1_500, 1, &mut sched, &mut FlowletEntry::default(), false);
        on[d.subflow] += 1;
    }
    assert!(on[1] > 9_900, "{on:?}");
}

#[test]
fn bucket_refills_at_rate_and_caps_at_depth() {
    let rate = 1_000_000; // 1 MB/s -> depth 10 kB
    let b = Bucket { credit: 0, last_ns: 1_000_000_000 };
    assert_eq!(bucket_credit(&b, rate, 1_001_000_000), 1_000); // 1 ms
    assert_eq!(bucket_credit(&b, rate, 5_000_000_000), 10_000); // capped
    assert_eq!(bucket_credit(&b, 0, 0), i64::MAX);
    let mut b2 = b;
    bucket_spend(&mut b2, rate, 1_000, 1_500, 1_001_000_000);
    assert_eq!(b2.credit, -500);
    assert_eq!(bucket_credit(&b2, rate, 1_002_000_000), 500);
    let p = path(LIVE, 0, 1, rate);
    assert_eq!(backlog(&p, 10_000), 0);
    assert_eq!(backlog(&p, -500), 10_500);
}

#[test]
fn policy_names_and_class_policies_round_trip() {
    for p in Policy::ALL {
        assert_eq!(Policy::from_name(p.name()), Some(p));
        assert_eq!(Policy::from_u8(p as u8), Some(p));
        // (A bare auto is never written; stored, it runs min-rtt.)
        let runs = if p == Policy::Auto { Policy::MinRtt } else { p };
        assert_eq!(ClassPolicy::new(p).policy(), runs);
    }
    assert_eq!(Policy::from_name("nope"), None);
    assert_eq!(ClassPolicy { policy: 99, ..Default::default() }.policy(), Policy::MinRtt);
    // Flowlet cannot be its own base, nor redundant.
    assert_eq!(ClassPolicy::new(Policy::Flowlet).with_base(Policy::Flowlet).base(), Policy::MinRtt);
    assert_eq!(ClassPolicy::new(Policy::Flowlet).with_base(Policy::Weighted).base(), Policy::Weighted);
}

/// flowlet does move flows: bursty flows over two similar paths end up on
/// both, in order, where min-rtt alone reorders them.
#[test]
fn flowlet_moves_bursty_flows_in_order_where_min_rtt_reorders() {
    let run = |class: ClassPolicy| {
        let mut m = Model::new(&[(1_250_000, 500), (1_250_000, 1_000)]);
        let mut flows = [FlowletEntry::default(); 4];
        let (mut last, mut reordered, mut used) = ([0u64; 4], 0, [[false; 2]; 4]);
        let mut now = 1_000_000_000u64;
        for burst in 0..200 {
            let f = burst % 4;
            now += 7_000_000;
            for _ in 0..20 {
                now += 300_000;
                let (i, a) = m.send(class, &mut flows[f], 1400, now);
                reordered += (a < last[f]) as u32;
                last[f] = last[f].max(a);
                used[f][i] = true;
            }
        }
        (reordered, used.iter().filter(|u| u[0] && u[1]).count())
    };
    let (reordered, moved) = run(ClassPolicy::new(Policy::Flowlet).with_base(Policy::MinRtt));
    assert_eq!(reordered, 0);
    assert_eq!(moved, 4, "every flow should have used both paths");
    let (reordered, _) = run(ClassPolicy::new(Policy::MinRtt));
    assert!(reordered > 0, "min-rtt alone was expected to reorder here");
}

/// flowlet does not strand a flow that never pauses on a slower path: one
/// bulk flow offered more than the fast path carries stays on it (min-rtt
/// alone would spill onto the slow one, which never reorders the flow but
/// would keep it there), while a second flow, new when the fast bucket is
/// short, is placed on the slow path.
#[test]
fn flowlet_keeps_a_steady_flow_off_a_slower_path() {
    let mut m = Model::new(&[(1_250_000, 500), (375_000, 12_500)]);
    let class = ClassPolicy::new(Policy::Flowlet).with_base(Policy::MinRtt);
    let (mut bulk, mut other) = (FlowletEntry::default(), FlowletEntry::default());
    let mut now = 1_000_000_000u64;
    let mut on_slow = 0;
    for _ in 0..2_000 {
        now += 1_000_000; // 1.4 MB/s against the fast path's 1.25
        on_slow += m.send(class, &mut bulk, 1400, now).0;
    }
    assert_eq!(on_slow, 0, "the bulk flow moved onto the slower path");
    assert_eq!(m.send(class, &mut other, 1400, now + 1_000).0, 1, "a new flow goes where the base policy says");
}

// ---------------------------------------------------------------------------
// A model of real paths: each a FIFO at `rate` followed by a fixed one-way
// delay, next to the token buckets the data path keeps for them.

struct Model {
    paths: Fixed,
    buckets: [Bucket; MAX_SUBFLOWS],
    /// When each path's queue drains (ns).
    free_at: [u64; MAX_SUBFLOWS],
    sched: SchedState,
}

impl Model {
    /// `(rate bytes/s, one-way delay µs)` per path.
    fn new(spec: &[(u64, u32)]) -> Model {
        let states: Vec<PathState> =
            spec.iter().map(|&(rate, owd)| PathState { owd_us: owd, ..path(LIVE, 0, owd * 2, rate) }).collect();
        Model {
            paths: fixed(&states),
            buckets: [Bucket::default(); MAX_SUBFLOWS],
            free_at: [0; MAX_SUBFLOWS],
            sched: SchedState::default(),
        }
    }

    /// Schedule a packet at `now` under `class`; returns (subflow, arrival ns).
    fn send(&mut self, class: ClassPolicy, flow: &mut FlowletEntry, len: u32, now: u64) -> (usize, u64) {
        for i in 0..self.paths.n {
            self.paths.credits[i] = bucket_credit(&self.buckets[i], self.paths.states[i].rate_bytes_per_sec, now);
        }
        let d = decide(class, &self.paths, len, now, &self.sched, flow).unwrap();
        commit(&d, &self.paths, len, now, &mut self.sched, flow, class.policy() == Policy::Flowlet);
        let i = d.subflow;
        bucket_spend(&mut self.buckets[i], self.paths.states[i].rate_bytes_per_sec, self.paths.credits[i], len, now);
        let p = &self.paths.states[i];
        let start = self.free_at[i].max(now);
        self.free_at[i] = start + len as u64 * 1_000_000_000 / p.rate_bytes_per_sec;
        (i, self.free_at[i] + p.owd_us as u64 * 1_000)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// weighted: over 10 000 packets of random sizes, each subflow's share of
    /// the bytes is within 1 % of its share of the weights.
    #[test]
    fn weighted_shares_converge_to_the_weights(
        weights in prop::collection::vec(1u32..100, 2..5),
        sizes in prop::collection::vec(64u32..1500, 10_000),
    ) {
        let states: Vec<PathState> =
            weights.iter().map(|&w| PathState { weight: w, ..path(LIVE, 0, 1_000, 0) }).collect();
        let f = fixed(&states);
        let mut sched = SchedState::default();
        let mut bytes = [0u64; MAX_SUBFLOWS];
        for &len in &sizes {
            let d = decide(ClassPolicy::new(Policy::Weighted), &f, len, 1, &sched, &FlowletEntry::default()).unwrap();
            commit(&d, &f, len, 1, &mut sched, &mut FlowletEntry::default(), false);
            bytes[d.subflow] += len as u64;
        }
        let total_w: u32 = weights.iter().sum();
        let total_b: u64 = bytes.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let want = w as f64 / total_w as f64;
            let got = bytes[i] as f64 / total_b as f64;
            prop_assert!((got - want).abs() < 0.01, "subflow {i}: {got:.4} of the bytes, weight share {want:.4}");
        }
    }

    /// weighted: a subflow coming back up does not get a burst to catch up.
    #[test]
    fn weighted_returning_subflow_gets_no_catch_up_burst(down_for in 100usize..5_000) {
        let mut f = fixed(&[path(LIVE, 0, 1_000, 0), path(LIVE, 0, 1_000, 0)]);
        let mut sched = SchedState::default();
        let send = |f: &Fixed, sched: &mut SchedState| {
            let d = decide(ClassPolicy::new(Policy::Weighted), f, 1000, 1, sched, &FlowletEntry::default()).unwrap();
            commit(&d, f, 1000, 1, sched, &mut FlowletEntry::default(), false);
            d.subflow
        };
        f.states[1].flags = PATH_ESTABLISHED;
        for _ in 0..down_for {
            prop_assert_eq!(send(&f, &mut sched), 0);
        }
        f.states[1].flags = LIVE;
        let mut run = 0;
        let mut longest = 0;
        for _ in 0..100 {
            if send(&f, &mut sched) == 1 { run += 1; longest = longest.max(run) } else { run = 0 }
        }
        prop_assert!(longest <= 2, "{longest} packets in a row on the returning subflow");
    }

    /// redundant: every live subflow of the best tier carries every packet.
    #[test]
    fn redundant_uses_every_live_subflow(
        flags in prop::collection::vec(prop::sample::select(vec![0, PATH_ESTABLISHED, LIVE, LIVE | PATH_BACKUP]), 1..=8),
        rtts in prop::collection::vec(1u32..100_000, 8),
    ) {
        let states: Vec<PathState> = flags.iter().zip(&rtts).map(|(&fl, &r)| path(fl, 0, r, 0)).collect();
        let f = fixed(&states);
        let want = states.iter().map(paths::tier).min().unwrap();
        let d = decide(ClassPolicy::new(Policy::Redundant), &f, 1000, 1, &SchedState::default(), &FlowletEntry::default());
        if want == paths::NO_TIER {
            prop_assert!(d.is_none());
        } else {
            let d = d.unwrap();
            let used = d.replicas | 1 << d.subflow;
            for (i, s) in states.iter().enumerate() {
                prop_assert_eq!(used & (1 << i) != 0, paths::tier(s) == want, "subflow {}", i);
            }
            prop_assert_eq!(d.replicas & (1 << d.subflow), 0);
        }
    }

    /// active-backup: while any non-backup subflow is up, no backup (and no
    /// down subflow) carries a packet, and the choice is the lowest priority value.
    #[test]
    fn active_backup_never_touches_the_backup_while_the_primary_lives(
        flags in prop::collection::vec(prop::sample::select(vec![PATH_ESTABLISHED, LIVE, LIVE | PATH_BACKUP]), 1..=8),
        prios in prop::collection::vec(0u32..4, 8),
    ) {
        let states: Vec<PathState> = flags.iter().zip(&prios).map(|(&fl, &p)| path(fl, p, 1_000, 0)).collect();
        let f = fixed(&states);
        let i = pick(Policy::ActiveBackup, &f).unwrap();
        if states.iter().any(|s| s.up() && !s.backup()) {
            prop_assert!(states[i].up() && !states[i].backup());
            let best = states.iter().filter(|s| s.up() && !s.backup()).map(|s| s.priority).min().unwrap();
            prop_assert_eq!(states[i].priority, best);
        }
    }

    /// earliest-arrival: on model paths whose estimates are right, packets of
    /// a bulk flow (one size) arrive in the order they were sent. (A small
    /// packet may overtake a large one on an idle path: its own transmission
    /// is shorter.)
    #[test]
    fn earliest_arrival_delivers_in_order(
        spec in prop::collection::vec((125_000u64..5_000_000, 100u32..50_000), 2..4),
        load_pct in 50u64..95,
        size in 200u32..1500,
    ) {
        let sizes = vec![size; 5_000];
        let mut used = [false; MAX_SUBFLOWS];
        let mut m = Model::new(&spec);
        let capacity: u64 = spec.iter().map(|s| s.0).sum();
        let mut now = 1_000_000_000u64;
        let mut last_arrival = 0u64;
        let class = ClassPolicy::new(Policy::EarliestArrival);
        for &len in &sizes {
            // Offer load_pct % of the summed capacity.
            now += len as u64 * 1_000_000_000 * 100 / (capacity * load_pct);
            let (i, arrival) = m.send(class, &mut FlowletEntry::default(), len, now);
            // Integer rounding of the buckets may misjudge by a few µs.
            prop_assert!(arrival + 20_000 >= last_arrival, "reordered by {} ns", last_arrival - arrival);
            last_arrival = last_arrival.max(arrival);
            used[i] = true;
        }
        // Offered well above the lowest-delay path's rate, the others must
        // carry some once its queue reaches the delay difference.
        let offered = (capacity * load_pct / 100) as f64;
        let idle_arrival = |&(rate, owd): &(u64, u32)| owd as f64 / 1e6 + size as f64 / rate as f64;
        let mut by_arrival = spec.clone();
        by_arrival.sort_by(|a, b| idle_arrival(a).total_cmp(&idle_arrival(b)));
        let fast_rate = by_arrival[0].0;
        let lead_s = idle_arrival(&by_arrival[1]) - idle_arrival(&by_arrival[0]);
        let fill_s = fast_rate as f64 * lead_s / (offered - fast_rate as f64);
        let run_s = (now - 1_000_000_000) as f64 / 1e9;
        if offered > 1.2 * fast_rate as f64 && fill_s < run_s / 2.0 {
            prop_assert!(used.iter().filter(|&&u| u).count() > 1, "one path carried everything");
        }
    }

    /// flowlet (over min-rtt, which alone would reorder): no flow is ever reordered.
    #[test]
    fn flowlet_never_reorders_within_a_flow(
        spec in prop::collection::vec((125_000u64..5_000_000, 100u32..50_000), 2..4),
        bursts in prop::collection::vec((0usize..8, 1usize..40, 0u64..60_000_000), 400),
    ) {
        let mut m = Model::new(&spec);
        let class = ClassPolicy::new(Policy::Flowlet).with_base(Policy::MinRtt);
        let mut flows = [FlowletEntry::default(); 8];
        let mut last_arrival = [0u64; 8];
        let mut now = 1_000_000_000u64;
        for &(flow, packets, pause) in &bursts {
            now += pause;
            for _ in 0..packets {
                now += 100_000; // 1400 B every 100 µs: 112 Mbit/s, more than any path
                let (_, arrival) = m.send(class, &mut flows[flow], 1400, now);
                prop_assert!(arrival + 20_000 >= last_arrival[flow], "flow {flow} reordered");
                last_arrival[flow] = arrival;
            }
        }
    }
}
