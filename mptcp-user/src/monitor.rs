//! One subflow's path monitor, the same for both roles: what the probes and
//! the peer's feedback say of the path (RTT, propagation delay, delivery
//! rate and loss, capacity), and the path state written to the maps from it
//! and the path's hints. No I/O: the roles hand it what arrived and write
//! what it returns.

use mptcp_common::maps::{Bucket, PathState, PATH_ESTABLISHED, PATH_RATE_LOWER_BOUND, PATH_RATE_SIZED, PATH_UP};
use mptcp_common::policy::MAX_LOSS_PPM;
use mptcp_common::wire::{FAMILY_V4, FAMILY_V6};

use crate::control::{PathHint, RxReport};
use crate::estimate::{
    bucket_backlog_us, busy, effective_rate, BufferDepth, Capacity, Feedback, MinRtt, QueueTrim, RandomLoss,
};
use crate::peer::RttEstimator;

#[derive(Clone, Debug, Default)]
pub struct PathMonitor {
    pub rtt: RttEstimator,
    /// Windowed minimum RTT: twice the propagation delay.
    pub min_rtt: MinRtt,
    /// The peer's reports of what it received on this subflow.
    pub feedback: Feedback,
    /// The rate estimate used when the hints set none.
    pub capacity: Capacity,
    /// How much queue the path holds before it drops.
    pub buffer: BufferDepth,
    /// Keeps the data path's bucket counting the queue the path holds.
    pub trim: QueueTrim,
    /// The loss the path shows with no queue standing.
    pub random_loss: RandomLoss,
    /// The queue the latest round trip showed (its excess over the minimum),
    /// until the next report takes it.
    rtt_queue_us: Option<u64>,
    /// The path's priority, backup flag, weight and rate as configured
    /// (client) or as the client sent them (concentrator).
    pub hint: PathHint,
    /// Bound on the estimate, wire bytes per second (0: none).
    pub max_rate: u64,
    /// What this end's own control messages (probes, answers) take of the
    /// path, wire bytes per second: they go out on the uplink beside the
    /// bond, so the token bucket must leave room for them.
    pub control_bytes_per_sec: u64,
}

impl PathMonitor {
    pub fn new(hint: PathHint, max_rate: u64) -> PathMonitor {
        PathMonitor { hint, max_rate, ..Default::default() }
    }

    /// The subflow (re)joined: it may take another route, so its delays and
    /// capacity are measured afresh.
    pub fn restart(&mut self) {
        self.min_rtt = MinRtt::default();
        self.capacity = Capacity::default();
        self.buffer = BufferDepth::default();
        self.trim = QueueTrim::default();
        self.random_loss = RandomLoss::default();
    }

    /// One round trip measured by this end.
    pub fn on_rtt(&mut self, now_us: u64, rtt_us: u64) {
        self.rtt.sample(rtt_us);
        self.min_rtt.sample(now_us, rtt_us.min(u32::MAX as u64) as u32);
        self.rtt_queue_us = Some(rtt_us.saturating_sub(self.min_rtt.get() as u64));
    }

    /// The peer's own measurements (a client's probe carries its smoothed and
    /// minimum RTT, which the concentrator uses for the return direction).
    pub fn on_peer_rtt(&mut self, now_us: u64, srtt_us: u32, min_rtt_us: u32) {
        if srtt_us != 0 {
            self.rtt.srtt_us = srtt_us;
        }
        if min_rtt_us != 0 {
            self.min_rtt.sample(now_us, min_rtt_us);
        }
        if srtt_us != 0 {
            self.rtt_queue_us = Some(srtt_us.saturating_sub(self.min_rtt.get()) as u64);
        }
    }

    /// The peer's report of what it received, against what this end sent
    /// (`sent_wire_bytes`, cumulative): delivery rate, loss, capacity,
    /// buffer and trim. `bucket`: the path's token bucket in the data path,
    /// read just now (None: not there).
    pub fn on_report(&mut self, now_us: u64, rx: RxReport, sent_wire_bytes: u64, bucket: Option<&Bucket>, ipv6: bool) {
        self.feedback.on_report(now_us, rx, if ipv6 { FAMILY_V6 } else { FAMILY_V4 });
        let rtt = self.min_rtt.get() as u64;
        let rtt_queue = self.rtt_queue_us.take();
        let bytes = (sent_wire_bytes, rx.bytes);
        let rate = self.rate();
        // Held back at the estimate, the trim aside: the estimator judges
        // its own number.
        let busy = bucket.is_some_and(|b| busy(b, self.untrimmed_rate(), now_us));
        let before = effective_rate(self.hint.rate_bytes_per_sec, self.capacity.get());
        let lost = self.feedback.last.is_some_and(|e| e.loss > 0.0);
        self.capacity.on_report(now_us, bytes, rx.owd_us, busy, rtt, rtt_queue, self.max_rate);
        self.capacity.on_probe_owd(now_us, rx.probe_owd_us);
        // The queue by the peer's one-way delay, or by the round trips since
        // the last report: a path loaded from its first packet shows no floor
        // of one-way delays to see its queue by, while the minimum RTT was
        // taken before (it counts the return direction's queue too: a
        // buffer seen larger, the safe way to err).
        let queue = self.capacity.queue_now_us().max(rtt_queue);
        self.buffer.on_report(now_us, queue, rx.lost, self.capacity.queue_threshold_us());
        self.random_loss.on_report(now_us, rx.packets, rx.lost, queue, self.capacity.queue_threshold_us());
        if effective_rate(self.hint.rate_bytes_per_sec, self.capacity.get()) != before {
            self.trim = QueueTrim::default(); // a new measurement of the rate
        } else if let Some(b) = bucket.filter(|_| rate != 0 && !lost && self.hint.rate_bytes_per_sec == 0) {
            // (A path that drops holds less than the bucket counts: the
            // bucket cannot know, and the trim must not chase it.)
            self.trim.on_report(bucket_backlog_us(b, rate, now_us), queue);
        }
    }

    /// A packet train timed the path at `rate` wire bytes per second
    /// before any load: the estimate starts there (a lower bound, within
    /// `max_rate`), unless it has one already.
    pub fn seed_capacity(&mut self, now_us: u64, rate: u64) {
        let rate = if self.max_rate != 0 { rate.min(self.max_rate) } else { rate };
        self.capacity.seed(now_us, rate);
    }

    /// The rate the path's token bucket runs at: the hint, else the
    /// estimate, less what our control messages take (0 stays unknown).
    /// Left out, probes every 50 ms were enough to make earliest-arrival's
    /// queue estimate drift on a saturated path: it never drains.
    /// An estimated rate is trimmed ([`QueueTrim`]) to keep the bucket's
    /// queue on the path's, never above `max_rate`; a hint, the operator's
    /// word for a fixed line, is not.
    pub fn rate(&self) -> u64 {
        let rate = self.untrimmed_rate();
        if self.hint.rate_bytes_per_sec != 0 {
            return rate;
        }
        let trimmed = self.trim.apply(rate);
        match self.max_rate {
            0 => trimmed,
            // (The estimate itself stays within max_rate.)
            max => trimmed.min(rate.max(max.saturating_sub(self.control_bytes_per_sec))),
        }
    }

    fn untrimmed_rate(&self) -> u64 {
        match effective_rate(self.hint.rate_bytes_per_sec, self.capacity.get()) {
            0 => 0,
            r => r.saturating_sub(self.control_bytes_per_sec).max(1),
        }
    }

    /// This end sends `wire_bytes` of control on the path every `interval_ms`.
    pub fn set_control_load(&mut self, wire_bytes: u64, interval_ms: u64) {
        self.control_bytes_per_sec = wire_bytes * 1000 / interval_ms.max(1);
    }

    /// The measurements (RTT, one-way delay, rate), to write into a
    /// subflow's path state; a copy, so the monitor need not be borrowed
    /// across the map write.
    pub fn measurements(&self) -> Measured {
        Measured {
            srtt_us: self.rtt.srtt_us,
            rttvar_us: self.rtt.rttvar_us,
            owd_us: self.min_rtt.get() / 2,
            rate_bytes_per_sec: self.rate(),
            queue_us: self.buffer.get().min(u32::MAX as u64) as u32,
            loss_ppm: self.random_loss.ppm().min(MAX_LOSS_PPM),
            // A train timed the whole path: its size, not a lower bound
            // (for which path is the biggest, `mark_unbridgeable`).
            rate_lower_bound: self.hint.rate_bytes_per_sec == 0 && !self.capacity.measured() && !self.capacity.timed(),
            rate_sized: self.hint.rate_bytes_per_sec != 0 || self.capacity.timed(),
        }
    }

    /// The hints and the rate they imply, likewise.
    pub fn hints(&self) -> Hinted {
        Hinted { hint: self.hint, rate_bytes_per_sec: self.rate() }
    }

    /// Write the measurements into a path state; its flags and hints stay.
    pub fn measured(&self, ps: &mut PathState) {
        self.measurements().write(ps);
    }

    /// Write the hints (priority, backup, weight) and the rate they imply.
    pub fn hinted(&self, ps: &mut PathState) {
        self.hints().write(ps);
    }

    /// The whole path state of an established subflow.
    pub fn path_state(&self, up: bool) -> PathState {
        let mut ps = PathState { flags: PATH_ESTABLISHED, ..Default::default() };
        if up {
            ps.flags |= PATH_UP;
        }
        self.hinted(&mut ps);
        self.measured(&mut ps);
        ps
    }
}

/// See [`PathMonitor::measurements`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    pub srtt_us: u32,
    pub rttvar_us: u32,
    pub owd_us: u32,
    pub rate_bytes_per_sec: u64,
    pub queue_us: u32,
    pub loss_ppm: u32,
    /// The rate is an estimate not yet measured at a full path, nor timed
    /// by a packet train.
    pub rate_lower_bound: bool,
    /// The rate was given by a hint or timed by a packet train
    /// ([`PATH_RATE_SIZED`]).
    pub rate_sized: bool,
}

impl Measured {
    pub fn write(&self, ps: &mut PathState) {
        ps.srtt_us = self.srtt_us;
        ps.rttvar_us = self.rttvar_us;
        ps.owd_us = self.owd_us;
        ps.rate_bytes_per_sec = self.rate_bytes_per_sec;
        ps.queue_us = self.queue_us;
        ps.loss_ppm = self.loss_ppm;
        for (flag, set) in [(PATH_RATE_LOWER_BOUND, self.rate_lower_bound), (PATH_RATE_SIZED, self.rate_sized)] {
            if set {
                ps.flags |= flag;
            } else {
                ps.flags &= !flag;
            }
        }
    }
}

/// See [`PathMonitor::hints`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hinted {
    pub hint: PathHint,
    pub rate_bytes_per_sec: u64,
}

impl Hinted {
    pub fn write(&self, ps: &mut PathState) {
        self.hint.apply(ps);
        ps.rate_bytes_per_sec = self.rate_bytes_per_sec;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mptcp_common::maps::PATH_BACKUP;

    #[test]
    fn the_path_state_carries_hints_and_measurements() {
        let hint = PathHint { priority: 2, backup: true, rate_bytes_per_sec: 0, weight: 3, ..Default::default() };
        let mut m = PathMonitor::new(hint, 0);
        m.on_rtt(1_000, 20_000);
        let ps = m.path_state(true);
        assert!(ps.established() && ps.up() && ps.backup());
        assert_eq!((ps.priority, ps.weight, ps.srtt_us, ps.owd_us, ps.rate_bytes_per_sec), (2, 3, 20_000, 10_000, 0));
        // A rate hint wins over the estimate; a restart forgets the delay floor.
        m.hint.rate_bytes_per_sec = 1_250_000;
        m.restart();
        let ps = m.path_state(false);
        assert!(!ps.up());
        assert_eq!((ps.rate_bytes_per_sec, ps.owd_us, ps.flags & PATH_BACKUP), (1_250_000, 0, PATH_BACKUP));
    }

    #[test]
    fn a_hint_is_not_trimmed() {
        let hint = PathHint { rate_bytes_per_sec: 1_250_000, ..Default::default() };
        let mut m = PathMonitor::new(hint, 0);
        for _ in 0..100 {
            m.trim.on_report(500_000, Some(0)); // the bucket far behind the path
        }
        assert_eq!(m.trim.apply(1_000_000), 1_050_000);
        assert_eq!(m.rate(), 1_250_000, "the operator's word for a fixed line");
    }

    #[test]
    fn the_peers_rtt_is_taken_as_it_is() {
        let mut m = PathMonitor::default();
        m.on_peer_rtt(0, 30_000, 24_000);
        m.on_peer_rtt(1, 0, 0); // a probe without them changes nothing
        let mut ps = PathState::default();
        m.measured(&mut ps);
        assert_eq!((ps.srtt_us, ps.owd_us), (30_000, 12_000));
    }
}
