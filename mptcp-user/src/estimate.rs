//! Path estimates from feedback: each end reports, in every probe or probe
//! answer, what it has received on that subflow (cumulative counters); the
//! sending end turns two reports into the path's delivery rate and loss, and
//! keeps a windowed minimum RTT whose half is the one-way propagation delay
//! earliest-arrival and flowlet use (the smoothed RTT also holds the queue,
//! which the token bucket already counts). For a path without a configured
//! rate, [`Capacity`] turns the same reports into the rate its token bucket
//! runs at.

use std::collections::VecDeque;

use mptcp_common::wire::{encap_overhead, ETH_HLEN};
use serde::{Deserialize, Serialize};

use mptcp_common::maps::{Bucket, PathState, SubflowKey, SubflowStats};
use mptcp_common::policy::{backlog, bucket_credit, bucket_depth};

use crate::control::RxReport;

/// How long a minimum RTT sample stays valid (a route change raises the
/// floor). Long, as Linux's `tcp_min_rtt_wlen` (300 s): a bulk flow can keep
/// a queue standing for many seconds, and a shorter window would take that
/// queue for propagation delay. A subflow that (re)joins starts afresh.
const MIN_RTT_WINDOW_US: u64 = 300_000_000;

/// The minimum of the samples of the last `WINDOW_US` microseconds.
#[derive(Clone, Debug)]
pub struct WindowedMin<T, const WINDOW_US: u64> {
    /// (time µs, sample), increasing in both: an older, larger sample can
    /// never be the minimum again.
    samples: VecDeque<(u64, T)>,
}

impl<T, const WINDOW_US: u64> Default for WindowedMin<T, WINDOW_US> {
    fn default() -> Self {
        Self { samples: VecDeque::new() }
    }
}

impl<T: Copy + PartialOrd, const WINDOW_US: u64> WindowedMin<T, WINDOW_US> {
    pub fn sample(&mut self, now_us: u64, v: T) {
        while self.samples.back().is_some_and(|&(_, r)| r >= v) {
            self.samples.pop_back();
        }
        self.samples.push_back((now_us, v));
        while self.samples.front().is_some_and(|&(t, _)| now_us.saturating_sub(t) > WINDOW_US) {
            self.samples.pop_front();
        }
    }

    /// `None` before any sample.
    pub fn get(&self) -> Option<T> {
        self.samples.front().map(|&(_, v)| v)
    }
}

/// The windowed minimum of RTT samples (µs).
#[derive(Clone, Debug, Default)]
pub struct MinRtt(WindowedMin<u32, MIN_RTT_WINDOW_US>);

impl MinRtt {
    pub fn sample(&mut self, now_us: u64, rtt_us: u32) {
        self.0.sample(now_us, rtt_us);
    }

    /// 0 before any sample.
    pub fn get(&self) -> u32 {
        self.0.get().unwrap_or(0)
    }
}

/// Delivery rates are measured over at least this long: over one probe
/// interval the reports' transit jitter would dominate. Each change of the
/// estimate is judged on a span measured wholly under the last one, so this
/// is also how fast the estimate moves: a change of capacity is followed
/// within two spans.
const RATE_SPAN_US: u64 = 500_000;
/// A queue stands when every one-way delay sample of this long is above the
/// floor: longer than the span, so that the chance of a jittery path's
/// samples all landing high stays negligible (10 or more samples), and
/// idle-rate probes still give a few.
const QUEUE_WINDOW_US: u64 = 1_000_000;
/// A standing queue this long (beyond half the span's delay spread, which
/// jitter alone produces) marks a saturated path...
const SATURATED_QUEUE_US: u64 = 5_000;
/// ...when it was offered at least this share (percent) of what it delivered
/// (not draining the queue; an ACK-clocked TCP flow offers about what the
/// path delivers)...
const SATURATED_OFFERED_PCT: u64 = 98;
/// ...and either at least this share (percent) of its estimate (a light flow
/// over a queue it did not build proves nothing)...
const LOADED_PCT: u64 = 50;
/// ...or more than this share (percent) of what it delivered: a path that
/// drops what it is given over a standing queue is full, whatever the load
/// (a link that faded under a high estimate; the senders back off at once).
const OVERFLOWING_PCT: u64 = 105;
/// Below this standing queue a path counts as unqueued.
const UNQUEUED_US: u64 = 1_000;
/// A path that delivered less than this share (percent) of what it was
/// offered, with a queue at the end of the span, cannot carry what it was
/// offered: what it delivered is its capacity. It needs no queue standing a
/// whole window, which an inner TCP that backs off at the first reordering
/// may never let form; the queue tells a full path from random loss (below
/// 5 % random loss does not trigger it at all).
const OVER_DELIVERED_PCT: u64 = 95;
/// A report shows a queue when its one-way delay sample is this far above
/// the floor, plus twice the path's jitter...
const TAIL_QUEUE_US: i64 = 10_000;
/// ...and an overflowing path's capacity is measured over the newest run of
/// such reports once it is this long.
const MIN_TAIL_US: u64 = 200_000;
/// Jitter is measured on samples within this of the floor (µs).
const JITTER_BAND_US: i64 = 25_000;
/// A first estimate is taken only from a delivery of at least this much,
/// bytes per second (0.5 Mbit/s); slower paths stay unknown (unlimited).
const SEED_MIN: u64 = 62_500;
/// A path is judged unqueued on at least this many fresh samples.
const MIN_SAMPLES: usize = 3;
/// Round trips longer than this are not waited for (the history's bound).
const MAX_SHIFT_US: u64 = 2_000_000;
/// While a path delivers what it is given without queueing, its estimate
/// grows, by these factors (percent) on successive spans: gently first (a
/// path just found full is probed by 10 %), faster while it keeps taking
/// more (a link that recovered from 5 to 25 Mbit/s is found in about five
/// spans). At most by half a step: an estimate too high is found only once
/// the path queues, which inner flows held back by something else may not
/// make it do.
const GROWTH_PCT: [u64; 3] = [110, 125, 150];
/// A one-way delay sample (two hosts' clocks, wrapping) relative to the
/// first one, `origin`, which it sets if unset: only differences count.
fn relative_owd(origin: &mut Option<u32>, sample: u32) -> i64 {
    sample.wrapping_sub(*origin.get_or_insert(sample)) as i32 as i64
}

/// Falls of the estimate smaller than this (percent) are not made.
const NOISE_PCT: u64 = 1;
/// After a path was found unable to carry its estimate, it is not probed
/// for this long: each probe that overshoots costs the inner flows a burst
/// of queueing (and earliest-arrival a wrong queue estimate), so a path at
/// its capacity is probed every few seconds, not every other span.
const PROBE_HOLD_US: u64 = 2_000_000;
/// "Given": the path was busy at its estimate in at least this share
/// (percent) of the span's reports.
const PUSHED_PCT: u64 = 20;
/// A measured path counts as held back only while it was offered at least
/// this share of its estimate over the span: a path used below its estimate
/// runs into its bucket only in bursts (a GSO burst empties a bucket of a
/// few milliseconds), and growing it then overstates a path that random loss
/// or the policy keeps lightly loaded.
const HELD_PCT: u64 = 80;
/// The one-way delay floor is the minimum over this long. One-way samples
/// mix two hosts' clocks, so the window is short enough for their drift
/// (50 ppm is 1.5 ms over 30 s) to stay below the queue threshold.
const OWD_FLOOR_WINDOW_US: u64 = 30_000_000;

/// A path's capacity estimate in wire bytes per second, from what the peer
/// received (its reports) against what this end sent (the data path's
/// counters) and the peer's one-way delay samples of this end's packets
/// (measured one way, so a queue in the other direction does not count;
/// only samples of reports that saw new packets arrive count).
/// A model of the path's bottleneck, as BBR keeps one, but fed by the bond's
/// own traffic, which the scheduler, not a congestion control, offers:
/// - **Full** (the estimate is set to what the path delivered): a queue has
///   been present for at least `MIN_TAIL_US` (samples `TAIL_QUEUE_US` plus
///   twice the path's jitter above the floor) and over that run the path
///   delivered less than it was offered (it drops or queues the rest), or
///   less than its estimate (the estimate is too high, whatever the load);
///   or a queue stood the whole last second under real load. Measured over
///   the queued run alone: the link sent all the time then.
/// - **First estimate**: a path without one takes its delivery over such a
///   queued run. Until then its estimate is 0, which the policies read as
///   "unlimited": it takes what the scheduler gives it, so it queues within
///   a second or two of real load.
/// - **Held back** (the estimate grows, by `GROWTH_PCT` on successive
///   spans): the scheduler kept running into its token bucket ([`busy`])
///   while no queue formed. Not within `PROBE_HOLD_US` of being found full.
/// - It never stays below what the path delivered; otherwise it stays.
///
/// At most one change per span, so each is judged on a rate measured under
/// the last. What was offered is counted a minimum round trip earlier than
/// what was delivered (what the peer's counters can have seen). Random loss
/// below 5 % without a queue reads as neither. A path whose buffer holds
/// less than the thresholds is found full only by the delivery it shows.
#[derive(Clone, Debug, Default)]
pub struct Capacity {
    /// (time µs, wire bytes sent, wire bytes received, one-way delay sample
    /// relative to `origin`, the path busy at its estimate), oldest first.
    history: VecDeque<(u64, u64, u64, Option<i64>, bool)>,
    /// The first one-way delay sample: samples are kept relative to it, as
    /// they wrap and carry the clocks' offset.
    origin: Option<u32>,
    /// The floor: windowed minimum of the relative samples.
    floor: WindowedMin<i64, OWD_FLOOR_WINDOW_US>,
    rate: u64,
    changed_us: u64,
    /// Growth steps since the path was last found full (`GROWTH_PCT`).
    growth: u8,
    /// When the path was last found unable to carry its estimate.
    full_us: u64,
    /// The path was found full at least once: the estimate is a measured
    /// capacity, not just a lower bound.
    measured: bool,
    /// Mean height above the floor of the one-way delay samples of a
    /// lightly used path (µs): half the range the path's jitter spreads
    /// delays over, which a queue must stand clear of.
    jitter_us: u64,
    /// The least queue this end's round trips showed over the last span: a
    /// queue that stood, not a round trip that jitter drew out.
    rtt_queue: WindowedMin<u64, RATE_SPAN_US>,
    /// The first estimate came from a packet train ([`Capacity::seed`]).
    timed: bool,
    /// The first probe one-way delay sample, and the floor of the probe
    /// samples relative to it ([`Capacity::on_probe_owd`]): kept apart from
    /// the data's, as the peer stamps probes and data on different paths
    /// through its host.
    probe_origin: Option<u32>,
    probe_floor: WindowedMin<i64, OWD_FLOOR_WINDOW_US>,
}

impl Capacity {
    /// The estimate, wire bytes per second; 0 until the path is first
    /// found full.
    pub fn get(&self) -> u64 {
        self.rate
    }

    /// A capacity measured with no load on the path (a packet train,
    /// [`crate::train`]): the first estimate of a path that has none, a
    /// lower bound like any first estimate, from which it grows or is
    /// found full as the traffic comes.
    pub fn seed(&mut self, now_us: u64, rate: u64) {
        if self.rate == 0 && rate != 0 {
            self.rate = rate;
            self.changed_us = now_us;
            self.timed = true;
        }
    }

    /// Whether the estimate started from a packet train: the path's size
    /// was measured whole, not read off a light load.
    pub fn timed(&self) -> bool {
        self.timed
    }

    /// Whether the path was found full at least once: the estimate is a
    /// measured capacity, not only a lower bound.
    pub fn measured(&self) -> bool {
        self.measured
    }

    /// The queue the newest report's sample shows (µs above the floor), if
    /// that report saw new packets arrive (a stale sample shows nothing).
    pub fn queue_now_us(&self) -> Option<u64> {
        let n = self.history.len();
        let (newest, prev) = (self.history.get(n.checked_sub(1)?)?, self.history.get(n.checked_sub(2)?)?);
        let d = newest.3.filter(|_| newest.2 > prev.2)?;
        Some((d - self.floor.get()?).max(0) as u64)
    }

    /// The peer's one-way delay sample of a control message of this end
    /// (a probe; 0: none) at `now_us`, after that time's report. While the
    /// path is light it teaches the path's jitter like a data packet's
    /// sample: probes cross a path before any data does (a new subflow,
    /// an idle one), and a path loaded from its first packet would
    /// otherwise never learn it. An LTE path then read its jitter's
    /// spread as a queue and its estimate fell from 30 to 9 Mbit/s.
    pub fn on_probe_owd(&mut self, now_us: u64, sample: u32) {
        if sample == 0 {
            return;
        }
        let d = relative_owd(&mut self.probe_origin, sample);
        self.probe_floor.sample(now_us, d);
        if self.light() {
            self.learn_jitter(d - self.probe_floor.get().unwrap_or(d));
        }
    }

    /// The newest report saw the path carry less than a first estimate
    /// takes ([`SEED_MIN`]): it holds no queue of its own traffic, and its
    /// delays spread by jitter alone.
    fn light(&self) -> bool {
        let n = self.history.len();
        match (n.checked_sub(2).and_then(|i| self.history.get(i)), self.history.back()) {
            (Some(&(t0, _, r0, _, _)), Some(&(t1, _, r1, _, _))) => {
                t1 > t0 && r1.saturating_sub(r0) * 1_000_000 / (t1 - t0) < SEED_MIN
            }
            _ => true,
        }
    }

    /// A sample `height_us` above its floor on a light path: the mean
    /// height, gain 1/8, of those near the floor is half the range jitter
    /// spreads delays over. Not far above it: that is a queue.
    fn learn_jitter(&mut self, height_us: i64) {
        if (0..JITTER_BAND_US).contains(&height_us) {
            self.jitter_us = self.jitter_us - self.jitter_us / 8 + height_us as u64 / 8;
        }
    }

    /// How far above the floor a sample must stand to show a queue, not jitter.
    pub fn queue_threshold_us(&self) -> u64 {
        TAIL_QUEUE_US as u64 + 2 * self.jitter_us
    }

    /// Wire bytes sent between `from_us` and `to_us`, each moved `shift_us`
    /// earlier: what the peer's counters between those times can have seen.
    fn sent_between(&self, from_us: u64, to_us: u64, shift_us: u64) -> u64 {
        self.sent_at(to_us.saturating_sub(shift_us)).saturating_sub(self.sent_at(from_us.saturating_sub(shift_us)))
    }

    /// Wire bytes sent by `t_us`, interpolated between reports (clamped to
    /// the history's ends).
    fn sent_at(&self, t_us: u64) -> u64 {
        let mut prev = match self.history.front() {
            Some(&(t, s, _, _, _)) if t_us > t => (t, s),
            Some(&(_, s, _, _, _)) => return s,
            None => return 0,
        };
        for &(t, s, _, _, _) in self.history.iter().skip(1) {
            if t >= t_us {
                let (pt, ps) = prev;
                return ps + (s - ps) * (t_us - pt) / (t - pt).max(1);
            }
            prev = (t, s);
        }
        prev.1
    }

    /// A report at `now_us`: cumulative wire bytes this end sent on the path
    /// and the peer received, and the peer's latest one-way delay sample of
    /// this end's packets (its clock minus our stamp, wrapping; 0: none).
    /// `busy`: the scheduler had more for the path than its estimate let it
    /// send, just now ([`busy`]). `rtt_us` is the path's minimum round trip
    /// (0: unknown): a report counts what was sent about that long before
    /// it. `rtt_queue_us`: the queue this end's round trips since the last
    /// report showed (their excess over the minimum RTT, taken before the
    /// load); one that stood the whole span holds growth back (it counts
    /// the return direction's queue too, so it does no more). Returns the estimate. `max` (0: none) bounds it, e.g. by
    /// the line's sync rate.
    #[allow(clippy::too_many_arguments)]
    pub fn on_report(
        &mut self,
        now_us: u64,
        bytes: (u64, u64),
        owd_sample: u32,
        busy: bool,
        rtt_us: u64,
        rtt_queue_us: Option<u64>,
        max: u64,
    ) -> u64 {
        let (sent, received) = bytes;
        if let Some(q) = rtt_queue_us {
            self.rtt_queue.sample(now_us, q);
        }
        if self.history.back().is_some_and(|&(t, s, r, _, _)| now_us < t || sent < s || received < r) {
            self.history.clear(); // a counter restarted: measure afresh
        }
        let owd = (owd_sample != 0).then(|| relative_owd(&mut self.origin, owd_sample));
        let fresh = self.history.back().is_some_and(|&(_, _, r, _, _)| received > r);
        if let Some(d) = owd {
            self.floor.sample(now_us, d);
        }
        self.history.push_back((now_us, sent, received, owd, busy));
        // The path's jitter, from samples of a lightly used path only: a
        // link that keeps order holds each packet behind those jitter
        // delayed, so under load its samples sit steadily near the range's
        // top, and neither their height (a queue it is not) nor their
        // steadiness (no jitter) is the path's jitter. Only a new packet's
        // sample: the peer repeats its latest while nothing arrives.
        if let (Some(d), Some(f), true) = (owd, self.floor.get(), fresh && self.light()) {
            self.learn_jitter(d - f);
        }
        let shift = rtt_us.min(MAX_SHIFT_US);
        // Keep the newest entry at least a queue window (and the shift) old, and no older ones.
        while self.history.get(1).is_some_and(|&(t, _, _, _, _)| now_us - t >= QUEUE_WINDOW_US + shift) {
            self.history.pop_front();
        }
        // The rate's base: the newest entry at least a span old.
        let Some(&(t0, _, r0, _, _)) = self.history.iter().rev().find(|&&(t, _, _, _, _)| now_us - t >= RATE_SPAN_US)
        else {
            return self.rate;
        };
        let span = now_us - t0;
        if now_us.saturating_sub(self.changed_us) < RATE_SPAN_US {
            return self.rate;
        }
        // The window's samples relative to the floor: the smallest is a
        // queue that stood the whole window, the newest one the queue now.
        // Only samples of reports that saw new packets arrive count: the
        // peer's sample is its latest packet's, and it stands still while
        // nothing arrives.
        let fresh = |i: usize| i > 0 && self.history[i].2 > self.history[i - 1].2;
        let window: Vec<usize> =
            (0..self.history.len()).filter(|&i| now_us - self.history[i].0 < QUEUE_WINDOW_US).collect();
        let samples: Vec<i64> = window.iter().filter(|&&i| fresh(i)).filter_map(|&i| self.history[i].3).collect();
        // Packets arrived all through the window, each report with a sample.
        let continuous = !window.is_empty() && samples.len() == window.len();
        let newest_fresh = self.history.len().checked_sub(1).is_some_and(fresh);
        let floor = self.floor.get();
        let (queue_us, spread_us, queue_now_us) = match floor {
            Some(f) if !samples.is_empty() => {
                let (lo, hi) = (*samples.iter().min().unwrap(), *samples.iter().max().unwrap());
                ((lo - f).max(0) as u64, (hi - lo) as u64, (samples[samples.len() - 1] - f).max(0) as u64)
            }
            _ => (0, 0, 0),
        };
        let delivered = (received - r0) * 1_000_000 / span;
        // What was sent over the span a round trip earlier: what the
        // peer's counters over this span can have seen.
        let offered = self.sent_between(t0, now_us, shift) * 1_000_000 / span;
        // A queue stands clear of the jitter's range (a jittery path under
        // load sits near its top) and of half the window's spread.
        let standing_us = SATURATED_QUEUE_US + spread_us / 2 + 2 * self.jitter_us;
        let queued_now = newest_fresh && queue_now_us >= standing_us;
        let loaded = self.rate == 0 || offered * 100 >= self.rate * LOADED_PCT;
        let overflowing = offered * 100 > delivered * OVERFLOWING_PCT;
        let saturated = continuous
            && queue_us >= standing_us
            && offered * 100 >= delivered * SATURATED_OFFERED_PCT
            && (loaded || overflowing)
            && delivered > 0;
        // A queue too short for `saturated` that still stood the whole
        // window, and the round trips say so too (one-way samples alone could
        // be the two clocks drifting apart), while the path delivered clearly
        // less than its estimate under real load: the estimate is too high.
        // On paths of equal delay, where earliest-arrival must place each
        // packet within a millisecond or two, an estimate 60 % high holds a
        // queue of only a few milliseconds, yet that queue reorders the
        // inner flows at every packet the path takes.
        let small_standing_us = UNQUEUED_US + spread_us / 2 + 2 * self.jitter_us;
        let too_high = continuous
            && self.rate != 0
            && delivered > 0
            && delivered * 100 < self.rate * OVER_DELIVERED_PCT
            && offered * 100 >= delivered * SATURATED_OFFERED_PCT
            && loaded
            && queue_us >= small_standing_us
            && self.rtt_queue.get().is_some_and(|q| q >= UNQUEUED_US + 2 * self.jitter_us);
        // The newest run of reports whose samples show a queue, as (time,
        // received bytes) at its start and the reports in it: over it the
        // path was sending all the time, so what it delivered then is its
        // capacity, however lightly it was loaded before. A report that saw
        // nothing arrive ends the run, or with `skip_stale` is passed over
        // (neither breaks nor counts).
        let tail_queue_us = TAIL_QUEUE_US + 2 * self.jitter_us as i64;
        let queued_run = |skip_stale: bool| -> Option<(u64, u64, usize)> {
            let f = floor?;
            let (mut start, mut n) = (None, 0);
            for i in (1..self.history.len()).rev() {
                if !fresh(i) {
                    if skip_stale {
                        continue;
                    }
                    break;
                }
                if self.history[i].3.is_none_or(|d| d - f < tail_queue_us) {
                    break;
                }
                (start, n) = (Some(i), n + 1);
            }
            start.map(|i| (self.history[i].0, self.history[i].2, n))
        };
        // Each report of the run must have seen new packets arrive (a path
        // used in bursts would otherwise look queued for good).
        let tail = queued_run(false);
        let tail_rate = tail.and_then(|(tq, rq, _)| {
            let len = now_us - tq;
            let delivered = (received - rq) * 1_000_000 / len.max(1);
            let offered = self.sent_between(tq, now_us, shift) * 1_000_000 / len.max(1);
            (len >= MIN_TAIL_US && delivered > 0).then_some((delivered, offered))
        });
        let over_rate = tail_rate.and_then(|(d, o)| (d * 100 < o * OVER_DELIVERED_PCT).then_some(d));
        let over = queued_now && over_rate.is_some();
        // A queue all through the run while the path delivered less than its
        // estimate: the estimate is too high, even if the senders, ACK-clocked,
        // offered no more than it delivered. (Not only under load: an
        // estimate too high makes earliest-arrival reorder, and the inner
        // flows then back off until the path is lightly loaded.)
        let below =
            tail_rate.and_then(|(d, _)| (self.rate != 0 && d * 100 < self.rate * OVER_DELIVERED_PCT).then_some(d));
        // A path without an estimate that has held a queue for 0.1 s: its
        // delivery then is a first estimate (a lower bound, as jitter could
        // pass for a short queue; it grows from there if the scheduler keeps
        // running into it). Reports that saw nothing arrive neither break
        // that run nor count: a path the scheduler uses in bursts
        // (earliest-arrival's far path) may never queue through 0.2 s of
        // reports in a row, and left unlimited it keeps reordering the
        // inner flows.
        let first = queued_run(true)
            .filter(|_| self.rate == 0)
            .and_then(|(tq, rq, n)| {
                let len = now_us - tq;
                (n >= 2 && len >= MIN_TAIL_US / 2).then(|| (received - rq) * 1_000_000 / len)
            })
            // Or one that loses what it is offered (a path whose every sample
            // was queued has no floor to see its queue by).
            .or((self.rate == 0 && delivered * 100 < offered * OVER_DELIVERED_PCT).then_some(delivered))
            // A few stray packets say nothing, and an estimate taken from them
            // would hold the path to their rate for good.
            .filter(|&d| d >= SEED_MIN);
        let span_reports = self.history.iter().filter(|&&(t, _, _, _, _)| t > t0);
        let (reports, busy_reports) = span_reports.fold((0u64, 0u64), |(n, b), e| (n + 1, b + e.4 as u64));
        // Held to its estimate often enough in the span, with no queue
        // standing in the window nor building now, and not losing what it
        // is given: it might carry more. Until the path is first found full
        // its estimate is only a lower bound, so any sign of it holding the
        // scheduler back counts, and it grows from the fastest step (BBR's
        // start-up).
        let pushed = self.rate != 0
            && samples.len() >= MIN_SAMPLES
            && delivered * 100 >= offered * OVER_DELIVERED_PCT
            // No queue, beyond what the path's jitter draws out (an LTE
            // path's samples seldom all sit on the floor).
            && queue_us < UNQUEUED_US + 2 * self.jitter_us
            // A path loaded from its first packet shows no floor of one-way
            // delays to see its queue by; the round trips, measured against
            // a minimum taken before, still do.
            && self.rtt_queue.get().is_none_or(|q| q < tail_queue_us as u64)
            && queue_now_us < SATURATED_QUEUE_US + 2 * self.jitter_us
            && if self.measured {
                busy_reports * 100 >= reports * PUSHED_PCT && offered * 100 >= self.rate * HELD_PCT
            } else {
                // A lower bound: any sign of it holding the scheduler back.
                // Carrying most of it is one: earliest-arrival gives a path
                // whose estimate is low a packet only when that packet's
                // wait at the estimate beats the other paths', so its
                // bucket seldom holds a packet when a report reads it.
                busy_reports > 0 || offered * 100 >= self.rate * HELD_PCT
            };
        tracing::trace!(
            rate = self.rate,
            delivered,
            offered,
            queue_us,
            queue_now_us,
            spread_us,
            jitter_us = self.jitter_us,
            rtt_queue_us = self.rtt_queue.get(),
            busy_reports,
            reports,
            saturated,
            too_high,
            over,
            below,
            first,
            pushed,
            "capacity span"
        );
        let mut growth = self.growth;
        let held = now_us.saturating_sub(self.full_us) < PROBE_HOLD_US;
        let next = if saturated || over || below.is_some() || too_high {
            let full = if saturated || too_high { delivered } else { over_rate.or(below).unwrap_or(delivered) };
            growth = 0;
            self.measured = true;
            if full * 100 < self.rate * OVER_DELIVERED_PCT {
                // An overshoot corrected (not a measurement moving a little): hold.
                self.full_us = now_us;
            }
            full
        } else if pushed && !held {
            growth = self.growth.saturating_add(1);
            // A lower bound grows from the fastest step (BBR's start-up); a
            // measured or timed size from the gentlest: a train timed the
            // whole path, and growing it by half at once overshot it as the
            // first flow came (10 to 15 Mbit/s on a 10 Mbit/s link).
            let step = if self.measured || self.timed { self.growth as usize } else { GROWTH_PCT.len() - 1 };
            let grown = self.rate.max(delivered) * GROWTH_PCT[step.min(GROWTH_PCT.len() - 1)] / 100;
            if self.measured {
                grown
            } else {
                // A lower bound grows to at most twice what the path carried:
                // random loss may keep the inner flows from ever filling it,
                // and it would climb for good, far above the line.
                grown.min(2 * delivered).max(self.rate)
            }
        } else if let Some(first) = first {
            first
        } else if self.rate != 0 && delivered > self.rate {
            // It carried more than the estimate (offered more when every
            // path was short), so it can: an estimate taken as a queue built
            // up, or a capacity that grew, must not stick below it.
            delivered
        } else {
            self.rate
        };
        let next = if max != 0 { next.min(max) } else { next };
        // A fall within the measurement's noise is not made: a path kept
        // full measures ±0.3 % span to span, and each change of the rate
        // restarts the queue trim ([`QueueTrim`]) that keeps the data path's
        // account of the queue true. Rises are: a path that delivers a
        // little more than its estimate creeps up to its rate (a satellite
        // found full at 19 of its 20 Mbit/s in a dip of the inner flow
        // stayed there for 11 s while rises were held back too).
        let noise = next < self.rate && next != 0 && (self.rate - next) * 100 < self.rate * NOISE_PCT;
        if next != self.rate && !(noise && (max == 0 || self.rate <= max)) {
            self.rate = next;
            self.changed_us = now_us;
        }
        self.growth = growth;
        self.rate
    }
}

/// How long [`RandomLoss`] remembers: loss this long ago weighs 1/e.
const RANDOM_LOSS_WINDOW_US: f64 = 3_000_000.0;
/// [`RandomLoss`] says nothing from fewer packets than this in its window
/// (about 1 % loss is then a few losses, not one).
const RANDOM_LOSS_MIN_PACKETS: f64 = 300.0;

/// The loss a path shows while no queue stands on it: random loss (a radio
/// link's, a dirty line's), which the inner flows pay for in halved windows
/// whatever the path's rate says. Loss while a queue stands is the path's
/// buffer overflowing, which the rate estimate answers, and does not count.
/// An exponentially weighted ratio over about 3 s of reports; a path that
/// carries too little to tell keeps its last figure (no evidence is not no
/// loss: a lossy path left idle would otherwise be forgotten, taken back
/// and measured again, every few seconds).
#[derive(Clone, Debug, Default)]
pub struct RandomLoss {
    /// The peer's cumulative (packets, lost) at the last report, and when.
    prev: Option<(u64, u64, u64)>,
    packets: f64,
    lost: f64,
    ppm: u32,
}

impl RandomLoss {
    /// A report at `now_us` of the peer's cumulative `packets` received and
    /// `lost`; `queue_us` the queue the path showed (None: not known), and
    /// `threshold_us` how high a queue must stand to count as one.
    pub fn on_report(&mut self, now_us: u64, packets: u64, lost: u64, queue_us: Option<u64>, threshold_us: u64) {
        let Some((t, p, l)) = self.prev.replace((now_us, packets, lost)) else { return };
        if now_us <= t || packets < p || lost < l {
            *self = RandomLoss { prev: self.prev, ppm: self.ppm, ..Default::default() }; // the peer restarted its counters
            return;
        }
        let keep = (-((now_us - t) as f64) / RANDOM_LOSS_WINDOW_US).exp();
        self.packets *= keep;
        self.lost *= keep;
        if queue_us.is_some_and(|q| q >= threshold_us) {
            return; // the buffer's loss, not random
        }
        self.packets += (packets - p + lost - l) as f64;
        self.lost += (lost - l) as f64;
        if self.packets >= RANDOM_LOSS_MIN_PACKETS {
            self.ppm = (self.lost / self.packets * 1e6).round() as u32;
        }
    }

    /// The share of packets lost at random, parts per million (0: none
    /// seen, or never enough packets to tell).
    pub fn ppm(&self) -> u32 {
        self.ppm
    }
}

/// Samples this recent count towards the queue a loss ended.
const PEAK_WINDOW_US: u64 = 500_000;

/// How long a queue a path holds before it drops: its buffer, in time at
/// its rate, which earliest-arrival must not overfill and which bounds the
/// delay difference it can bridge ([`mptcp_common::policy::bridgeable`]).
/// Unknown (0) until a loss ends a queue: then it is the highest queue
/// sampled in the half second before. It rises to any higher queue sampled
/// later (the path held it), and falls to the peak before a later loss.
/// The samples are a report's latest packet each, so the peak is a lower
/// bound: a margin the scheduler keeps below the real buffer.
#[derive(Clone, Debug, Default)]
pub struct BufferDepth {
    /// (time µs, queue µs) of the recent fresh samples, oldest first.
    recent: VecDeque<(u64, u64)>,
    /// The peer's cumulative loss count at the last report.
    lost: Option<u64>,
    limit_us: u64,
}

impl BufferDepth {
    /// The buffer, µs of queue; 0 while unknown.
    pub fn get(&self) -> u64 {
        self.limit_us
    }

    /// A report at `now_us`: the queue its sample shows
    /// ([`Capacity::queue_now_us`]), the peer's cumulative count of lost
    /// packets, and the least queue that is not jitter
    /// ([`Capacity::queue_threshold_us`]). Returns the buffer.
    pub fn on_report(&mut self, now_us: u64, queue_us: Option<u64>, lost: u64, threshold_us: u64) -> u64 {
        // A count that went back: the peer restarted its counters.
        let new_loss = self.lost.map_or(0, |l| lost.saturating_sub(l));
        self.lost = Some(lost);
        if let Some(q) = queue_us {
            self.recent.push_back((now_us, q));
        }
        while self.recent.front().is_some_and(|&(t, _)| now_us.saturating_sub(t) > PEAK_WINDOW_US) {
            self.recent.pop_front();
        }
        let peak = self.recent.iter().map(|&(_, q)| q).max().unwrap_or(0);
        if new_loss > 0 && peak >= threshold_us {
            // A loss while a queue stood: the buffer ended about there.
            self.limit_us = peak;
        } else if let Some(q) = queue_us.filter(|&q| self.limit_us != 0 && q > self.limit_us) {
            self.limit_us = q;
        }
        self.limit_us
    }
}

/// Bytes the bucket counts as still queued on the path (earliest-arrival's
/// [`backlog`]), in µs at `rate`; 0 when the rate is unknown.
pub fn bucket_backlog_us(bucket: &Bucket, rate: u64, now_us: u64) -> u64 {
    let path = PathState { rate_bytes_per_sec: rate, ..Default::default() };
    backlog(&path, bucket_credit(bucket, rate, now_us * 1_000)).saturating_mul(1_000_000) / rate.max(1)
}

/// Queues this close are taken as equal (µs): samples and the bucket are
/// read at different moments.
const TRIM_DEADBAND_US: i64 = 2_000;
/// Rate trim per µs of queue difference: added up each report (integral),
/// and for the difference now (proportional, which damps the loop).
const TRIM_INTEGRAL_PPM_PER_US: i64 = 1;
const TRIM_PROPORTIONAL_PPM_PER_US: i64 = 3;
/// The trim stays within ± this (parts per million).
const TRIM_MAX_PPM: i64 = 50_000;

/// Keeps the data path's account of a path's queue (its token bucket, at
/// the rate the controller writes) in step with the queue the path really
/// holds. A path that never drains (earliest-arrival keeps a fast path
/// queued under a steady load) accumulates in the bucket any difference
/// between the rate written and the link's: 1 % is 10 ms of queue a second,
/// and earliest-arrival then sends packets where they arrive out of order.
/// The trim moves the rate written while the bucket's queue and the
/// measured one differ (proportional-integral control, bounded to ±5 %):
/// up while the bucket counts more queue than the path holds.
#[derive(Clone, Debug, Default)]
pub struct QueueTrim {
    integral_ppm: i64,
    ppm: i64,
}

impl QueueTrim {
    /// A report: the queue the bucket counts and the queue the path showed
    /// (None: no sample; the trim stays).
    pub fn on_report(&mut self, bucket_us: u64, path_us: Option<u64>) {
        let Some(path_us) = path_us else { return };
        let diff = bucket_us as i64 - path_us as i64;
        let diff = if diff.abs() > TRIM_DEADBAND_US { diff } else { 0 };
        self.integral_ppm = (self.integral_ppm + diff * TRIM_INTEGRAL_PPM_PER_US).clamp(-TRIM_MAX_PPM, TRIM_MAX_PPM);
        self.ppm = (self.integral_ppm + diff * TRIM_PROPORTIONAL_PPM_PER_US).clamp(-TRIM_MAX_PPM, TRIM_MAX_PPM);
    }

    /// `rate` trimmed (0 stays 0: unknown).
    pub fn apply(&self, rate: u64) -> u64 {
        if rate == 0 {
            return 0;
        }
        (rate as i128 * (1_000_000 + self.ppm) as i128 / 1_000_000).max(1) as u64
    }

    pub fn ppm(&self) -> i64 {
        self.ppm
    }
}

/// Whether a path's token bucket (the data path's, read at `now_us`) holds
/// more than half its depth of backlog: the scheduler has been sending on
/// the path faster than its estimate `rate` (min-rtt spilling past it,
/// earliest-arrival queueing on it), so a path that then shows no queue of
/// its own is held back by its estimate, not by its capacity.
pub fn busy(bucket: &Bucket, rate: u64, now_us: u64) -> bool {
    rate != 0 && bucket_credit(bucket, rate, now_us * 1_000) < bucket_depth(rate) / 2
}

/// What the feedback says of a path over the last report interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PathEstimate {
    /// Inner (bond) bytes per second the peer received.
    pub delivery_bytes_per_sec: u64,
    /// Fraction of the interval's packets lost.
    pub loss: f64,
    /// The peer's latest one-way delay sample (a trend across hosts, a
    /// delay on one host).
    pub peer_owd_us: u32,
}

/// Turns a peer's successive [`RxReport`]s of one subflow into estimates.
#[derive(Clone, Debug, Default)]
pub struct Feedback {
    prev: Option<(u64, RxReport)>,
    pub last: Option<PathEstimate>,
}

impl Feedback {
    /// A report arrived at `now_us` for a subflow with outer family `family`.
    pub fn on_report(&mut self, now_us: u64, r: RxReport, family: u8) -> Option<PathEstimate> {
        let est = match self.prev {
            // Counters that went backwards: the peer restarted its counters.
            Some((t, p)) if now_us > t && r.bytes >= p.bytes && r.packets >= p.packets && r.lost >= p.lost => {
                let packets = r.packets - p.packets;
                let per_packet = (ETH_HLEN + encap_overhead(family)) as u64;
                let inner = (r.bytes - p.bytes).saturating_sub(packets * per_packet);
                let lost = r.lost - p.lost;
                Some(PathEstimate {
                    delivery_bytes_per_sec: inner * 1_000_000 / (now_us - t),
                    loss: if packets + lost == 0 { 0.0 } else { lost as f64 / (packets + lost) as f64 },
                    peer_owd_us: r.owd_us,
                })
            }
            _ => None,
        };
        self.prev = Some((now_us, r));
        if est.is_some() {
            self.last = est;
        }
        est
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mptcp_common::wire::FAMILY_V4;

    const BASE_OWD_US: u32 = 10_000;
    const CLOCK_OFFSET_US: u32 = u32::MAX - 3_000_000;

    /// A model path under a [`Capacity`], reporting every 100 ms.
    #[derive(Default)]
    struct Model {
        c: Capacity,
        t: u64,
        sent: u64,
        got: u64,
        queue: u64,
        /// Packets the queue dropped, and the buffer learnt from it.
        lost: u64,
        buffer: BufferDepth,
    }

    impl Model {
        /// A path that starts idle: its first reports show the bare delay.
        fn new() -> Model {
            let mut m = Model::default();
            m.drive(1, 0, 1_250_000, 0);
            m
        }

        /// `secs` seconds of offering `offer` B/s to a path that carries at
        /// most `cap` B/s; the excess queues (50 ms tail-drop queue), and the
        /// queue shows as queueing delay.
        fn drive(&mut self, secs: u64, offer: u64, cap: u64, max: u64) {
            let mut queue = 0u64;
            for _ in 0..secs * 10 {
                self.t += 100_000;
                self.sent += offer / 10;
                queue += offer / 10;
                let out = queue.min(cap / 10);
                queue -= out;
                self.got += out;
                queue = queue.min(cap / 20);
                // The peer's clock runs 3 s ahead of ours: only differences count.
                let owd = CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + (queue * 1_000_000 / cap) as u32);
                let busy = self.c.get() != 0 && offer >= self.c.get();
                self.c.on_report(self.t, (self.sent, self.got), owd, busy, 0, None, max);
            }
        }
    }

    impl Model {
        /// `secs` seconds of a scheduler that offers the path what its
        /// estimate allows (all of `demand` while it has none), as the token
        /// bucket does; returns the estimate after each 100 ms.
        fn drive_at_estimate(&mut self, secs: u64, demand: u64, cap: u64) -> Vec<u64> {
            (0..secs * 10)
                .map(|_| {
                    let offer = match self.c.get() {
                        0 => demand,
                        r => r.min(demand),
                    };
                    self.drive_tenth(offer, cap);
                    self.c.get()
                })
                .collect()
        }

        /// A path first estimated from a short queue while given 0.4 MB/s:
        /// its estimate (returned) is a lower bound.
        fn with_lower_bound() -> (Model, u64) {
            let mut m = Model::new();
            for q in [0, 15_000, 15_000, 15_000] {
                m.report(40_000, 40_000, q, false);
            }
            let first = m.c.get();
            assert!(first != 0 && !m.c.measured(), "{first}");
            (m, first)
        }

        /// `secs` seconds of probes alone (1 kB a report) over a path whose
        /// one-way delay jitters over `range_us`.
        fn probes_only(&mut self, secs: u64, jitter: &mut Jitter, range_us: u64) {
            for _ in 0..secs * 10 {
                self.report(1_000, 1_000, jitter.next_us(range_us), false);
            }
        }

        /// 100 ms in which `sent` bytes went out and `got` arrived, the
        /// peer's latest sample showing `queue_us` of queueing.
        fn report(&mut self, sent: u64, got: u64, queue_us: u32, busy: bool) {
            self.t += 100_000;
            self.sent += sent;
            self.got += got;
            let owd = CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + queue_us);
            self.c.on_report(self.t, (self.sent, self.got), owd, busy, 0, None, 0);
        }

        /// 100 ms of [`Model::drive`], the queue carried across calls.
        fn drive_tenth(&mut self, offer: u64, cap: u64) {
            self.t += 100_000;
            self.sent += offer / 10;
            self.queue += offer / 10;
            let out = self.queue.min(cap / 10);
            self.queue -= out;
            self.got += out;
            self.lost += self.queue.saturating_sub(cap / 20).div_ceil(1_500);
            self.queue = self.queue.min(cap / 20);
            let owd = CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + (self.queue * 1_000_000 / cap) as u32);
            let busy = self.c.get() != 0 && offer >= self.c.get();
            self.c.on_report(self.t, (self.sent, self.got), owd, busy, 0, None, 0);
            self.buffer.on_report(self.t, self.c.queue_now_us(), self.lost, self.c.queue_threshold_us());
        }
    }

    /// Uniform pseudo-random delays (a fixed LCG: the tests repeat exactly).
    struct Jitter(u64);

    impl Jitter {
        /// The next delay in `0..range_us`.
        fn next_us(&mut self, range_us: u64) -> u32 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % range_us) as u32
        }
    }

    /// When the estimate first stays within 10 % of `cap`, in tenths of a second.
    fn settles(series: &[u64], cap: u64) -> Option<usize> {
        let near = |r: u64| r * 10 >= cap * 9 && r * 10 <= cap * 11;
        (0..series.len()).find(|&i| series[i..].iter().all(|&r| near(r)))
    }

    #[test]
    fn a_paths_buffer_is_the_queue_it_held_when_it_dropped() {
        let mut m = Model::new();
        // Below capacity nothing queues or drops: the buffer stays unknown.
        m.drive_at_estimate(3, 1_000_000, 1_250_000);
        assert_eq!(m.buffer.get(), 0);
        // Overloaded, the 50 ms queue fills and drops.
        for _ in 0..20 {
            m.drive_tenth(2_000_000, 1_250_000);
        }
        assert!((45_000..=50_000).contains(&m.buffer.get()), "{}", m.buffer.get());
    }

    #[test]
    fn the_buffer_follows_the_queues_the_path_holds_and_drops_at() {
        let mut b = BufferDepth::default();
        let threshold = 10_000;
        let mut t = 0;
        let mut report = |b: &mut BufferDepth, queue_ms: Option<u64>, lost: u64| {
            t += 50_000;
            b.on_report(t, queue_ms.map(|q| q * 1_000), lost, threshold)
        };
        // A queue that builds without loss is no sign of where the buffer ends.
        for q in [0, 10, 20, 30, 40, 48] {
            assert_eq!(report(&mut b, Some(q), 0), 0);
        }
        // A loss while it stood is; a stale sample (none) neither counts nor hides it.
        assert_eq!(report(&mut b, None, 3), 48_000);
        // A higher queue held later raises it...
        assert_eq!(report(&mut b, Some(60), 3), 60_000);
        // ...the peak before a later loss lowers it.
        for _ in 0..12 {
            report(&mut b, Some(30), 3);
        }
        assert_eq!(report(&mut b, Some(30), 4), 30_000);
        // Loss with no queue standing (random loss) says nothing of the buffer.
        let mut fresh = BufferDepth::default();
        for i in 0..20 {
            assert_eq!(report(&mut fresh, Some(i % 5), i), 0);
        }
    }

    /// A path loaded from its first packet: every one-way sample stands on
    /// the same queue, so they show none. Its first estimate comes from its
    /// loss; then, with the scheduler held to it, only the round trips (over
    /// a minimum taken before the load) can tell that it is full.
    #[test]
    fn round_trips_that_show_a_queue_hold_growth_back() {
        let run = |rtt_queue_us: &dyn Fn(u64) -> Option<u64>| {
            let mut c = Capacity::default();
            let (mut t, mut sent, mut got) = (0u64, 0u64, 0u64);
            let owd = CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + 40_000);
            for tenth in 0..40 {
                t += 100_000;
                // 1.25 MB/s offered; the first second a fifth of it is lost.
                let offer = if tenth < 10 { 125_000 } else { 100_000 };
                sent += offer;
                got += 100_000;
                c.on_report(t, (sent, got), owd, c.get() != 0, 0, rtt_queue_us(tenth), 0);
            }
            c.get()
        };
        assert!(run(&|_| None) > 1_400_000, "no sign of a queue: it grows");
        assert!(run(&|_| Some(40_000)) <= 1_100_000, "the round trips show one standing");
        // Round trips that jitter draws out, now and then, are no queue.
        assert!(run(&|tenth| Some(if tenth % 3 == 0 { 40_000 } else { 1_000 })) > 1_400_000, "jitter");
    }

    /// A link 2 % slower than the rate written, under a steady load that
    /// keeps its queue 20 ms long: the bucket's queue drifts from the real one
    /// by 20 ms a second, until the trim takes the 2 % off.
    #[test]
    fn the_trim_keeps_the_buckets_queue_on_the_paths() {
        let (link, written) = (1_225_000u64, 1_250_000u64);
        let mut trim = QueueTrim::default();
        let (mut real_q, mut model_q) = (25_000.0f64, 20_000.0f64); // bytes
        for _ in 0..300 {
            // 100 ms of a load that keeps the real queue where it is.
            let offered = link as f64 / 10.0;
            real_q += offered - link as f64 / 10.0;
            model_q = (model_q + offered - trim.apply(written) as f64 / 10.0).max(0.0);
            let us = |q: f64, r: f64| (q * 1e6 / r) as u64;
            trim.on_report(us(model_q, trim.apply(written) as f64), Some(us(real_q, link as f64)));
        }
        let rate = trim.apply(written) as f64;
        assert!((rate / link as f64 - 1.0).abs() < 0.005, "trimmed to {rate} for a {link} link");
        assert!((model_q - real_q).abs() < 0.005 * real_q + 2_500.0, "{model_q} against {real_q}");
        // Bounded: a sample that never agrees moves it 5 % at most.
        let mut stuck = QueueTrim::default();
        for _ in 0..1000 {
            stuck.on_report(0, Some(500_000));
        }
        assert_eq!(stuck.apply(1_000_000), 950_000);
        assert_eq!(stuck.apply(0), 0);
    }

    #[test]
    fn a_path_is_found_within_about_two_seconds_of_load() {
        // A share it carries easily says nothing of its capacity: it stays
        // unknown (the policies treat it as unlimited)...
        let mut m = Model::new();
        m.drive(2, 300_000, 1_250_000, 0);
        assert_eq!(m.c.get(), 0);
        // ...until it is given more than it carries.
        let series = m.drive_at_estimate(6, 2_000_000, 1_250_000);
        let at = settles(&series, 1_250_000).unwrap_or_else(|| panic!("never settled: {series:?}"));
        assert!(at <= 20, "settled after {at} tenths: {series:?}");
    }

    #[test]
    fn a_fading_link_is_followed_within_two_seconds() {
        // 30 Mbit/s fading to 8 under load.
        let mut m = Model::new();
        m.drive_at_estimate(4, 5_000_000, 3_750_000);
        assert!(settles(&[m.c.get()], 3_750_000).is_some(), "{}", m.c.get());
        let series = m.drive_at_estimate(4, 5_000_000, 1_000_000);
        let at = settles(&series, 1_000_000).unwrap_or_else(|| panic!("never settled: {series:?}"));
        assert!(at <= 20, "settled after {at} tenths: {series:?}");
    }

    #[test]
    fn a_recovering_link_is_followed_within_about_two_seconds() {
        // 8 Mbit/s recovering to 30 under load.
        let mut m = Model::new();
        m.drive_at_estimate(4, 5_000_000, 1_000_000);
        assert!(settles(&[m.c.get()], 1_000_000).is_some(), "{}", m.c.get());
        let series = m.drive_at_estimate(6, 5_000_000, 3_750_000);
        let at = settles(&series, 3_750_000).unwrap_or_else(|| panic!("never settled: {series:?}"));
        assert!(at <= 30, "settled after {at} tenths: {series:?}");
    }

    #[test]
    fn an_ack_clocked_flow_over_a_moving_queue_lowers_an_estimate_too_high() {
        // Found at 1.25 MB/s; then it carries 0.8, offered exactly what it
        // delivers (no loss), over a queue that swings between 15 and 45 ms:
        // never standing a whole second, never dropping.
        let mut m = Model::new();
        m.drive(3, 2_000_000, 1_250_000, 0);
        assert!(m.c.get() >= 1_150_000, "{}", m.c.get());
        for i in 0..15u64 {
            m.report(80_000, 80_000, 15_000 + (i % 4) as u32 * 10_000, false);
        }
        assert!((760_000..=840_000).contains(&m.c.get()), "{}", m.c.get());
    }

    /// Found at 2.1 MB/s, then a link of 1.25 MB/s carrying an ACK-clocked
    /// flow (offered what it delivers) over a queue of 2-3 ms that never
    /// drains: too short to count as saturated, but it stands, so the path
    /// is full and the estimate 70 % high. The round trips must agree: the
    /// same one-way samples with round trips that show no queue may be two
    /// clocks drifting apart, and change nothing.
    #[test]
    fn a_short_queue_that_stands_lowers_an_estimate_too_high() {
        let run = |rtt_queue_us: Option<u64>| {
            let mut m = Model::new();
            m.drive(3, 3_000_000, 2_100_000, 0);
            let found = m.c.get();
            assert!(found >= 2_000_000, "{found}");
            for i in 0..20u64 {
                m.t += 100_000;
                m.sent += 125_000;
                m.got += 125_000;
                let owd = CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + 2_200 + (i % 3) as u32 * 500);
                m.c.on_report(m.t, (m.sent, m.got), owd, false, 0, rtt_queue_us, 0);
            }
            m.c.get()
        };
        let lowered = run(Some(1_400));
        assert!((1_180_000..=1_320_000).contains(&lowered), "{lowered}");
        assert!(run(Some(0)) >= 2_000_000, "round trips with no queue");
        assert!(run(None) >= 2_000_000, "no round trips");
    }

    #[test]
    fn a_stale_delay_sample_is_not_a_queue() {
        // Found at 1.25 MB/s; its last packet queued 30 ms, then nothing
        // more arrives: the peer keeps reporting that sample, which must not
        // read as a queue the path delivers nothing through.
        let mut m = Model::new();
        m.drive(3, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        assert!(r >= 1_150_000, "{r}");
        for _ in 0..30 {
            m.report(0, 0, 30_000, false);
        }
        assert_eq!(m.c.get(), r);
    }

    #[test]
    fn a_path_flooded_from_its_first_packet_is_found_by_its_loss() {
        // No unqueued sample ever: its floor is the full queue, so no queue
        // shows; it delivers 1.25 of the 2 MB/s it is offered.
        let mut m = Model::default();
        m.drive(3, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        assert!((1_150_000..=1_300_000).contains(&r), "{r}");
    }

    #[test]
    fn a_path_only_probes_cross_stays_unknown() {
        let mut m = Model::new();
        m.drive(3, 20_000, 1_250_000, 0);
        assert_eq!(m.c.get(), 0);
    }

    #[test]
    fn a_saturated_path_is_estimated_at_its_capacity() {
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        assert!((1_150_000..=1_300_000).contains(&r), "{r}");
    }

    #[test]
    fn the_estimate_grows_while_the_path_takes_all_it_is_given() {
        // Estimated low at first: a sender that keeps the path at its
        // estimate (a bucket-limited scheduler) sees it rise to the capacity.
        let mut m = Model::new();
        m.drive(3, 2_000_000, 500_000, 0);
        assert!(m.c.get() < 600_000, "{}", m.c.get());
        for _ in 0..30 {
            let offer = m.c.get();
            m.drive(1, offer, 1_250_000, 0);
        }
        let r = m.c.get();
        assert!((1_000_000..=1_500_000).contains(&r), "{r}");
    }

    #[test]
    fn light_traffic_or_a_quiet_path_leaves_the_estimate_alone() {
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        m.drive(10, 50_000, 1_250_000, 0);
        // (The span across the change of load may read a little low or
        // high.) The light traffic does not drag it down to its own rate.
        let r = m.c.get();
        assert!((1_000_000..=1_400_000).contains(&r), "{r}");
        m.drive(10, 50_000, 1_250_000, 0);
        assert_eq!(m.c.get(), r);
    }

    #[test]
    fn jitter_is_not_a_standing_queue() {
        // A path whose one-way delay jitters uniformly over 20 ms when
        // lightly used; under 0.8 MB/s, all delivered, it keeps order, so its
        // samples sit near the range's top (16–20 ms above the floor): no
        // queue, no saturation, and the estimate stays where it was.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        m.drive(3, 800_000, 1_250_000, 0);
        let r = m.c.get();
        assert!(r >= 1_000_000, "{r}");
        let mut jitter = Jitter(7);
        m.probes_only(3, &mut jitter, 20_000);
        for _ in 0..300 {
            m.report(80_000, 80_000, 16_000 + jitter.next_us(4_000), false);
        }
        assert!(m.c.get() >= r, "{} fell below {r}", m.c.get());
    }

    #[test]
    fn a_jittery_path_held_back_by_its_estimate_grows() {
        // Found full at 10 Mbit/s; now it could carry twice that, but the
        // scheduler holds it to its estimate, and its one-way delay jitters
        // over 20 ms (an LTE path), under load near the range's top.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        let mut jitter = Jitter(7);
        m.probes_only(3, &mut jitter, 20_000);
        for _ in 0..60 {
            let at = m.c.get() / 10;
            m.report(at, at, 12_000 + jitter.next_us(8_000), true);
        }
        assert!(m.c.get() >= r * 3 / 2, "{} from {r}", m.c.get());
    }

    #[test]
    fn jitter_is_learnt_while_the_path_is_light() {
        // Under load the samples of a path that keeps order stand still near
        // the range's top; taken for the path's jitter they would make it
        // look jitter-free and queued.
        let mut m = Model::new();
        let mut jitter = Jitter(3);
        m.probes_only(3, &mut jitter, 20_000);
        let learnt = m.c.queue_threshold_us();
        assert!((25_000..=35_000).contains(&learnt), "{learnt}");
        for _ in 0..50 {
            m.report(100_000, 100_000, 19_000 + jitter.next_us(500), false);
        }
        assert_eq!(m.c.queue_threshold_us(), learnt);
    }

    #[test]
    fn probes_teach_the_jitter_of_a_path_loaded_from_its_first_packet() {
        // A path timed at 30 Mbit/s by its train, its one-way delay jittering
        // over 20 ms (hybrid-access's LTE). Only probes crossed it before the
        // inner flow loaded it from its first packet, so no data packet saw
        // it light; under that load the link keeps order and the samples
        // sit 12–20 ms above the floor, while the flow, held back by the
        // other paths, takes 2.5 of its 3.75 MB/s. That smear is no queue:
        // the estimate stays.
        let mut m = Model::new();
        m.c.seed(m.t, 3_750_000);
        let mut jitter = Jitter(11);
        for _ in 0..30 {
            m.t += 100_000;
            m.c.on_report(m.t, (m.sent, m.got), 0, false, 0, None, 0);
            m.c.on_probe_owd(m.t, CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + jitter.next_us(20_000)));
        }
        let learnt = m.c.queue_threshold_us();
        assert!((25_000..=35_000).contains(&learnt), "{learnt}");
        for _ in 0..40 {
            m.report(250_000, 250_000, 12_000 + jitter.next_us(8_000), false);
        }
        assert_eq!(m.c.get(), 3_750_000);
        // A sample the peer reports while the path carries data is no
        // measure of its jitter.
        m.c.on_probe_owd(m.t, CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + 19_000));
        assert_eq!(m.c.queue_threshold_us(), learnt);
    }

    #[test]
    fn a_timed_estimate_grows_from_the_gentlest_step() {
        // A train timed the path at 1.25 MB/s; a flow that wants more keeps
        // the scheduler at the estimate. It grows by 10 % first, not by half
        // (which overshot a path timed right), and still finds a path that
        // is really twice as big within a few seconds.
        let mut m = Model::new();
        m.c.seed(m.t, 1_250_000);
        let series = m.drive_at_estimate(8, 4_000_000, 2_500_000);
        let first = series.iter().copied().find(|&r| r != 1_250_000).unwrap();
        assert!(first <= 1_375_000, "{first}");
        assert!(settles(&series, 2_500_000).is_some(), "{series:?}");
    }

    #[test]
    fn an_estimate_does_not_fall_within_the_noise() {
        // A path kept full measures a little differently span to span; the
        // estimate does not fall for that (each change restarts the queue
        // trim), and still follows a fall of a few percent.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        assert!(r.abs_diff(1_250_000) * 100 < 1_250_000 * 3, "{r}");
        let cap = r - r / 200;
        m.drive(5, 2_000_000, cap, 0);
        assert_eq!(m.c.get(), r, "fell for a 0.5 % difference");
        m.drive(5, 2_000_000, r * 96 / 100, 0);
        assert!(m.c.get() < r * 98 / 100, "{} stayed near {r}", m.c.get());
    }

    #[test]
    fn an_estimate_a_little_low_creeps_up_to_what_the_path_carries() {
        // Found full at 1.19 MB/s in a dip, the path then carries 1.2 MB/s
        // over a queue of a few milliseconds (a flow the scheduler does not
        // hold to the estimate, as on a lone usable path), so it is never
        // "held back": the estimate follows what it carries up.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_190_000, 0);
        let r = m.c.get();
        assert!(r < 1_200_000, "{r}");
        for _ in 0..50 {
            m.report(120_000, 120_000, 3_000, true);
        }
        assert!(m.c.get() > r, "{} stuck at {r}", m.c.get());
    }

    #[test]
    fn random_loss_is_not_saturation() {
        // Driven at its estimate, 8 % lost at random, no queue: it does not fall.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        for _ in 0..50 {
            m.report(r / 10, r / 10 * 92 / 100, 0, true);
        }
        assert!(m.c.get() >= r, "{} fell below {r}", m.c.get());
    }

    #[test]
    fn random_loss_is_the_loss_with_no_queue_standing() {
        // 1 000 packets a second, 2 % lost with no queue: 20 000 ppm.
        let mut r = RandomLoss::default();
        let (mut t, mut packets, mut lost) = (0, 0, 0);
        for i in 0..50u64 {
            t += 100_000;
            packets += 98;
            lost += 2;
            r.on_report(t, packets, lost, Some(1_000), 10_000);
            if i == 1 {
                assert_eq!(r.ppm(), 0, "too few packets yet");
            }
        }
        assert!((19_000..=21_000).contains(&r.ppm()), "{}", r.ppm());
        // The buffer overflowing (a queue standing) is not random loss: 30 %
        // lost for 2 s leaves the figure where it was.
        for _ in 0..20 {
            t += 100_000;
            packets += 70;
            lost += 30;
            r.on_report(t, packets, lost, Some(40_000), 10_000);
        }
        assert!((19_000..=21_000).contains(&r.ppm()), "{}", r.ppm());
        // Left idle (no data: the probes are not counted), it keeps its figure.
        for _ in 0..300 {
            t += 100_000;
            r.on_report(t, packets, lost, None, 10_000);
        }
        assert!((19_000..=21_000).contains(&r.ppm()), "{}", r.ppm());
        // The loss stops on a path in use: within 10 s it is forgotten.
        for _ in 0..100 {
            t += 100_000;
            packets += 100;
            r.on_report(t, packets, lost, None, 10_000);
        }
        assert!(r.ppm() < 1_000, "{}", r.ppm());
    }

    #[test]
    fn bursts_below_a_measured_estimate_do_not_grow_it() {
        // Found full at 1.25 MB/s, then used at 60 % of it in bursts that
        // run into the bucket in every report: not held back, no growth.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        assert!(m.c.measured() && r > 1_100_000, "{r}");
        for _ in 0..50 {
            m.report(r * 6 / 100, r * 6 / 100, 0, true);
        }
        assert_eq!(m.c.get(), r);
        // Carried at its estimate and held there, it grows.
        for _ in 0..50 {
            m.report(r / 10, r / 10, 0, true);
        }
        assert!(m.c.get() > r, "{} did not grow past {r}", m.c.get());
    }

    #[test]
    fn a_lower_bound_stops_near_twice_what_the_path_is_given() {
        // First estimated from a short queue (a lower bound), then given
        // 0.4 MB/s, in bursts that run into the bucket, and never filled
        // (random loss holds the inner flows back): it stops within one
        // growth step of twice that.
        let (mut m, first) = Model::with_lower_bound();
        for _ in 0..100 {
            m.report(40_000, 40_000, 0, true);
        }
        let r = m.c.get();
        assert!(r > first && r <= 1_000_000, "{first} → {r}");
    }

    #[test]
    fn a_lower_bound_carried_in_full_grows_though_never_caught_busy() {
        // First estimated from a short queue at 0.4 MB/s, a path of 3 MB/s
        // then carries 90 % of its estimate, a packet at a time (earliest-
        // arrival gives a path estimated low no more): its bucket is empty
        // whenever a report reads it, yet it grows, to its capacity within
        // about 3 s.
        let (mut m, first) = Model::with_lower_bound();
        assert!(first < 600_000, "{first}");
        let mut series = vec![];
        for _ in 0..30 {
            let given = (m.c.get() / 10 * 9 / 10).min(300_000);
            m.report(given, given, 0, false);
            series.push(m.c.get());
        }
        assert!(m.c.get() >= 2_000_000, "{first} → {series:?}");
    }

    #[test]
    fn an_ack_clocked_flow_over_a_standing_queue_is_saturation() {
        // Offered what it delivers (no excess), 1.25 MB/s, over a queue that
        // stands 30 ms after the first second: the estimate is the delivery rate.
        let mut c = Capacity::default();
        let (mut t, mut bytes) = (0u64, 0u64);
        for i in 0..40u64 {
            t += 100_000;
            bytes += 125_000;
            let queue = if i < 10 { 0 } else { 30_000 };
            let owd = CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + queue);
            c.on_report(t, (bytes, bytes), owd, false, 0, None, 0);
        }
        assert_eq!(c.get(), 1_250_000);
    }

    #[test]
    fn an_estimate_below_what_the_path_carries_rises_to_it() {
        // Estimated at 0.5 MB/s while the path filled, then it carries
        // 1.2 MB/s over a queue that varies too much to read as standing.
        let mut m = Model::new();
        m.drive(3, 2_000_000, 500_000, 0);
        assert!(m.c.get() < 600_000, "{}", m.c.get());
        let mut jitter = Jitter(11);
        for _ in 0..30 {
            m.report(120_000, 120_000, 2_000 + jitter.next_us(40_000), false);
        }
        let r = m.c.get();
        assert!((1_150_000..=1_250_000).contains(&r), "{r}");
    }

    #[test]
    fn a_bound_caps_the_estimate() {
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 1_000_000);
        assert_eq!(m.c.get(), 1_000_000);
    }

    #[test]
    fn min_rtt_is_the_windowed_minimum() {
        let mut m = MinRtt::default();
        assert_eq!(m.get(), 0);
        m.sample(0, 30_000);
        m.sample(1_000_000, 20_000);
        m.sample(2_000_000, 50_000);
        assert_eq!(m.get(), 20_000);
        // 20 ms ages out of the window; the later 50 ms remains.
        m.sample(MIN_RTT_WINDOW_US + 2_000_000, 60_000);
        assert_eq!(m.get(), 50_000);
    }

    #[test]
    fn delivery_rate_counts_inner_bytes_and_loss_counts_gaps() {
        let mut f = Feedback::default();
        let frame = (1400 + ETH_HLEN + encap_overhead(FAMILY_V4)) as u64;
        assert_eq!(
            f.on_report(
                1_000_000,
                RxReport { bytes: 0, packets: 0, lost: 0, owd_us: 5, ..Default::default() },
                FAMILY_V4
            ),
            None
        );
        // 100 full packets in 100 ms, 1 lost: 1.4 MB/s, 1 % loss.
        let e = f.on_report(
            1_100_000,
            RxReport { bytes: 100 * frame, packets: 100, lost: 1, owd_us: 7, ..Default::default() },
            FAMILY_V4,
        );
        let e = e.unwrap();
        assert_eq!(e.delivery_bytes_per_sec, 1_400_000);
        assert!((e.loss - 1.0 / 101.0).abs() < 1e-9);
        assert_eq!(e.peer_owd_us, 7);
        // A restarted peer (counters back to 0) yields no sample, then resumes.
        assert_eq!(f.on_report(1_200_000, RxReport::default(), FAMILY_V4), None);
        assert!(f
            .on_report(
                1_300_000,
                RxReport { bytes: frame, packets: 1, lost: 0, owd_us: 1, ..Default::default() },
                FAMILY_V4
            )
            .is_some());
    }
}

/// A subflow's data-path counters, summed over the CPUs.
pub fn counters(maps: &crate::bpfmaps::DataPathMaps, token: u32, subflow: u8) -> SubflowStats {
    maps.subflow_stats(SubflowKey { token, subflow_id: subflow as u32 })
}

/// This end's receive counters of a subflow, as reported to the peer.
pub fn rx_report(s: &SubflowStats) -> RxReport {
    RxReport {
        bytes: s.rx_bytes,
        packets: s.rx_packets,
        lost: s.rx_lost(),
        owd_us: s.rx_owd_us as u32,
        probe_owd_us: 0,
    }
}

/// Wire bytes (Ethernet frames) this end has sent on a subflow.
pub fn tx_wire_bytes(s: &SubflowStats) -> u64 {
    s.tx_bytes + s.tx_packets * ETH_HLEN as u64
}

/// The rate a path runs at: its configured hint when there is one (not 0),
/// else the feedback's estimate.
pub fn effective_rate(hint: u64, estimate: u64) -> u64 {
    if hint != 0 {
        hint
    } else {
        estimate
    }
}

/// One subflow's latest estimate, as `status` shows it.
#[derive(Clone, Debug)]
pub struct SubflowEstimate {
    pub token: u32,
    pub subflow: u8,
    pub estimate: PathEstimate,
}
