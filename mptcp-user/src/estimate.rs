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

use mptcp_common::maps::{SubflowKey, SubflowStats};

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
/// interval the reports' transit jitter would dominate.
const RATE_SPAN_US: u64 = 1_000_000;
/// A standing queue this long (beyond half the span's delay spread, which
/// jitter alone produces) marks a saturated path...
const SATURATED_QUEUE_US: u64 = 5_000;
/// ...when it was offered at least this share (percent) of what it delivered
/// (not draining the queue; an ACK-clocked TCP flow offers about what the
/// path delivers)...
const SATURATED_OFFERED_PCT: u64 = 98;
/// ...and at least this share (percent) of its estimate: a light flow over a
/// queue it did not build proves nothing.
const LOADED_PCT: u64 = 50;
/// Below this standing queue a path counts as unqueued.
const UNQUEUED_US: u64 = 1_000;
/// While a path delivers what it is given without queueing, its estimate
/// grows by this factor (percent) per span, so it can find more capacity.
const PROBE_GAIN_PCT: u64 = 110;
/// "Given": delivered at least this share (percent) of the estimate.
const PUSHED_PCT: u64 = 90;
/// The one-way delay floor is the minimum over this long. One-way samples
/// mix two hosts' clocks, so the window is short enough for their drift
/// (50 ppm is 1.5 ms over 30 s) to stay below the queue threshold.
const OWD_FLOOR_WINDOW_US: u64 = 30_000_000;

/// A path's capacity estimate in wire bytes per second, from what the peer
/// received (its reports) against what this end sent (the data path's
/// counters). The path is saturated when it holds a standing queue — every
/// one-way delay sample of the last second above the floor, by more than
/// jitter explains — that it is not draining, under real load. The queue is
/// measured one way, from the peer's delay samples of this end's packets, so
/// a queue in the other direction does not count (counters alone cannot say
/// that: a growing reverse queue delays the reports and reads as excess).
/// Saturated, the path's delivery rate is its capacity; delivering a
/// near-full bucket unqueued, it may carry more, so the estimate grows; and
/// it never stays below what the path delivered. Otherwise (the traffic is
/// below the estimate) it stays. At most one change
/// per span, so each is judged on a rate measured under the last. A path
/// whose buffer holds less than the threshold is never seen saturated.
#[derive(Clone, Debug, Default)]
pub struct Capacity {
    /// (time µs, wire bytes sent, wire bytes received, one-way delay sample
    /// relative to `origin`), oldest first.
    history: VecDeque<(u64, u64, u64, Option<i64>)>,
    /// The first one-way delay sample: samples are kept relative to it, as
    /// they wrap and carry the clocks' offset.
    origin: Option<u32>,
    /// The floor: windowed minimum of the relative samples.
    floor: WindowedMin<i64, OWD_FLOOR_WINDOW_US>,
    rate: u64,
    changed_us: u64,
}

impl Capacity {
    /// The estimate, wire bytes per second; 0 until the path first saturates.
    pub fn get(&self) -> u64 {
        self.rate
    }

    /// A report at `now_us`: cumulative wire bytes this end sent on the path
    /// and the peer received, and the peer's latest one-way delay sample of
    /// this end's packets (its clock minus our stamp, wrapping; 0: none).
    /// Returns the estimate. `max` (0: none) bounds it, e.g. by the line's
    /// sync rate.
    pub fn on_report(&mut self, now_us: u64, bytes: (u64, u64), owd_sample: u32, max: u64) -> u64 {
        let (sent, received) = bytes;
        if self.history.back().is_some_and(|&(t, s, r, _)| now_us < t || sent < s || received < r) {
            self.history.clear(); // a counter restarted: measure afresh
        }
        let owd = (owd_sample != 0).then(|| {
            let origin = *self.origin.get_or_insert(owd_sample);
            owd_sample.wrapping_sub(origin) as i32 as i64
        });
        if let Some(d) = owd {
            self.floor.sample(now_us, d);
        }
        self.history.push_back((now_us, sent, received, owd));
        // Keep the newest entry at least a span old as the base, and no older ones.
        while self.history.get(1).is_some_and(|&(t, _, _, _)| now_us - t >= RATE_SPAN_US) {
            self.history.pop_front();
        }
        let &(t0, s0, r0, _) = self.history.front().expect("just pushed");
        let span = now_us - t0;
        if span < RATE_SPAN_US || now_us.saturating_sub(self.changed_us) < RATE_SPAN_US {
            return self.rate;
        }
        // The smallest sample of the span above the floor: a queue that stood the whole span.
        let samples = self.history.iter().skip(1).map(|&(_, _, _, d)| d).collect::<Option<Vec<i64>>>();
        let floor = self.floor.get();
        let (queue_us, spread_us) = match (samples, floor) {
            (Some(v), Some(f)) if !v.is_empty() => {
                let (lo, hi) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
                ((lo - f).max(0) as u64, (hi - lo) as u64)
            }
            _ => (0, 0),
        };
        let delivered = (received - r0) * 1_000_000 / span;
        let offered = (sent - s0) * 1_000_000 / span;
        let loaded = self.rate == 0 || offered * 100 >= self.rate * LOADED_PCT;
        let saturated = queue_us >= SATURATED_QUEUE_US + spread_us / 2
            && offered * 100 >= delivered * SATURATED_OFFERED_PCT
            && loaded
            && delivered > 0;
        let next = if saturated {
            delivered
        } else if self.rate != 0 && queue_us < UNQUEUED_US && delivered * 100 >= self.rate * PUSHED_PCT {
            self.rate.max(delivered) * PROBE_GAIN_PCT / 100
        } else if self.rate != 0 && delivered > self.rate {
            // It carried more than the estimate (offered more when every
            // path was short), so it can: an estimate taken as a queue built
            // up, or a capacity that grew, must not stick below it.
            delivered
        } else {
            self.rate
        };
        let next = if max != 0 { next.min(max) } else { next };
        if next != self.rate {
            self.rate = next;
            self.changed_us = now_us;
        }
        self.rate
    }
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
                self.c.on_report(self.t, (self.sent, self.got), owd, max);
            }
        }
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
        // Traffic at 0.8 MB/s, all delivered, over a path whose one-way delay
        // jitters uniformly over 20 ms: no second's samples all stand above
        // the floor by more than the jitter, so no saturation, and the
        // estimate stays where it was.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        m.drive(3, 800_000, 1_250_000, 0);
        let r = m.c.get();
        assert!(r >= 1_000_000, "{r}");
        let mut x = 7u64;
        for _ in 0..300 {
            m.t += 100_000;
            m.sent += 80_000;
            m.got += 80_000;
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let jitter = ((x >> 33) % 20_000) as u32;
            let owd = CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + jitter);
            m.c.on_report(m.t, (m.sent, m.got), owd, 0);
        }
        assert!(m.c.get() >= r, "{} fell below {r}", m.c.get());
    }

    #[test]
    fn random_loss_is_not_saturation() {
        // Driven at its estimate, 8 % lost at random, no queue: it does not fall.
        let mut m = Model::new();
        m.drive(5, 2_000_000, 1_250_000, 0);
        let r = m.c.get();
        for _ in 0..50 {
            m.t += 100_000;
            m.sent += r / 10;
            m.got += r / 10 * 92 / 100;
            m.c.on_report(m.t, (m.sent, m.got), CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US), 0);
        }
        assert!(m.c.get() >= r, "{} fell below {r}", m.c.get());
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
            c.on_report(t, (bytes, bytes), owd, 0);
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
        let mut x = 11u64;
        for _ in 0..30 {
            m.t += 100_000;
            m.sent += 120_000;
            m.got += 120_000;
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let queue = 2_000 + ((x >> 33) % 40_000) as u32;
            m.c.on_report(m.t, (m.sent, m.got), CLOCK_OFFSET_US.wrapping_add(BASE_OWD_US + queue), 0);
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
        assert_eq!(f.on_report(1_000_000, RxReport { bytes: 0, packets: 0, lost: 0, owd_us: 5 }, FAMILY_V4), None);
        // 100 full packets in 100 ms, 1 lost: 1.4 MB/s, 1 % loss.
        let e = f.on_report(1_100_000, RxReport { bytes: 100 * frame, packets: 100, lost: 1, owd_us: 7 }, FAMILY_V4);
        let e = e.unwrap();
        assert_eq!(e.delivery_bytes_per_sec, 1_400_000);
        assert!((e.loss - 1.0 / 101.0).abs() < 1e-9);
        assert_eq!(e.peer_owd_us, 7);
        // A restarted peer (counters back to 0) yields no sample, then resumes.
        assert_eq!(f.on_report(1_200_000, RxReport::default(), FAMILY_V4), None);
        assert!(f.on_report(1_300_000, RxReport { bytes: frame, packets: 1, lost: 0, owd_us: 1 }, FAMILY_V4).is_some());
    }
}

/// A subflow's data-path counters, summed over the CPUs.
pub fn counters(maps: &crate::bpfmaps::DataPathMaps, token: u32, subflow: u8) -> SubflowStats {
    maps.subflow_stats(SubflowKey { token, subflow_id: subflow as u32 })
}

/// This end's receive counters of a subflow, as reported to the peer.
pub fn rx_report(s: &SubflowStats) -> RxReport {
    RxReport { bytes: s.rx_bytes, packets: s.rx_packets, lost: s.rx_lost(), owd_us: s.rx_owd_us as u32 }
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
