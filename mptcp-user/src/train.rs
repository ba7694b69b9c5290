//! Packet trains: a path's capacity measured before any traffic needs it.
//!
//! When a subflow comes up, the client sends [`TRAIN_LEN`] padded control
//! packets back to back on it, right behind its PROOF (the concentrator
//! right behind its ACCEPT, for the return direction); the bottleneck
//! spaces them out at its rate, and the other end times their arrival (the
//! kernel's receive timestamps) and answers. Only the train's last third counts,
//! and only if it came at a steady rate: a token bucket (an ISP's shaper,
//! the WAN emulator's tbf) lets its burst through at once, and timed from
//! the first packet that burst reads as a faster link; jitter spaces
//! packets unevenly. A train that says nothing leaves the path unknown, as
//! before trains. The answer seeds the path's estimate
//! ([`crate::estimate::Capacity::seed`]).
//!
//! Why before the traffic: the estimator otherwise learns a path only by
//! loading it, and until then the scheduler cannot tell which path is big.
//! With a small near path beside a big far one (a 4 Mbit/s line beside a
//! satellite), the inner flows' slow start then overflows the small path
//! first, and a loss at a small window leaves cubic climbing for seconds at
//! the satellite's round trip; with a small far path beside big near ones,
//! the far path would be tried with the whole flow. A train costs ~30 kB per
//! path and answers within one round trip.

/// Packets in a train (~29 kB)...
pub const TRAIN_LEN: u8 = 24;
/// ...of this many bytes each as outer IP packets: below the smallest
/// IPv6 MTU, so a train crosses any path a subflow does.
pub const TRAIN_PACKET_BYTES: u16 = 1200;
/// A train not answered within this is sent again (the answer takes a
/// round trip; a satellite's is ~600 ms)...
const RETRY_US: u64 = 2_000_000;
/// ...this many times at that pace; after them the wait doubles with each
/// train up to [`MAX_RETRY_US`]. Never given up: a sender or receiver
/// descheduled mid-train (a busy box) spoils a train, and a path without a
/// rate is left out of earliest-arrival until it has one.
const QUICK_TRIES: u8 = 5;
/// The longest wait between trains (~30 kB a minute at most).
const MAX_RETRY_US: u64 = 64_000_000;
/// A train timed faster than this (wire bytes per second, 400 Mbit/s)
/// says nothing: a shaper's burst larger than the whole train passes at the
/// line rate of the hop before it (the testbed's tbf lets 64 KiB through at
/// once), and a path that fast needs no estimate to start with. It stays
/// unknown (unlimited), as without a train.
const MAX_TIMED_RATE: u64 = 50_000_000;

/// The sender's side: which train is out on a subflow, and whether one was
/// answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainProbe {
    train: u32,
    sent_us: u64,
    tries: u8,
    answered: bool,
}

impl TrainProbe {
    /// The id of a train to send now, if one is due: none answered yet and
    /// the last sent at least [`Self::wait_us`] ago.
    pub fn due(&mut self, now_us: u64) -> Option<u32> {
        let waited = self.tries == 0 || now_us.saturating_sub(self.sent_us) >= self.wait_us();
        if self.answered || !waited {
            return None;
        }
        self.tries = self.tries.saturating_add(1);
        self.train = self.train.wrapping_add(1);
        self.sent_us = now_us;
        Some(self.train)
    }

    /// How long the latest train waits for its answer before another.
    fn wait_us(&self) -> u64 {
        let doublings = self.tries.saturating_sub(QUICK_TRIES).min(8);
        (RETRY_US << doublings).min(MAX_RETRY_US)
    }

    /// The concentrator's answer: the path's capacity in wire bytes per
    /// second, if it answers our latest train and timed it.
    pub fn on_ack(&mut self, train: u32, bytes: u32, span_us: u32) -> Option<u64> {
        if self.answered || self.tries == 0 || train != self.train || span_us == 0 {
            return None;
        }
        let rate = bytes as u64 * 1_000_000 / span_us as u64;
        // Too fast to tell from a burst: tried again, like a lost train (a
        // busy hop may have bunched this one).
        self.answered = rate <= MAX_TIMED_RATE;
        self.answered.then_some(rate)
    }
}

/// Packets timed at the train's end: its last third, past a burst of up
/// to two thirds of the train (~19 kB) that a shaper lets through at once.
const TIMED: usize = TRAIN_LEN as usize / 3;
/// The two halves of the timed part must agree on the rate within this
/// (percent): else the burst reached into it, or jitter spaced the packets,
/// and the train says nothing.
const STEADY_PCT: u64 = 125;
/// The timed part must arrive spread over at least this many times as long
/// as it took to send: else what spaced it was the sender (a busy host
/// sending a train that a shaper's burst passed whole), not the path.
const SPREAD_FACTOR: u64 = 2;

/// A train's end needs at least this many packets to arrive: the timed
/// part, past at least half its length of packets a shaper's burst may
/// have let through at once.
const MIN_ARRIVED: usize = TIMED + TIMED / 2;

/// A timed train: `bytes` on the wire arrived in `span_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainTiming {
    pub train: u32,
    pub bytes: u32,
    pub span_us: u32,
}

/// The receiver's side: the arrivals of one subflow's latest train.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainMeter {
    train: u32,
    /// Arrival (ns) of each of the train's packets; 0: not (yet) arrived.
    at_ns: [u64; TRAIN_LEN as usize],
    /// When each was sent (ns after the train's first packet, the sender's clock).
    sent_ns: [u32; TRAIN_LEN as usize],
    wire_bytes: u64,
    answered: bool,
}

impl TrainMeter {
    /// Packet `index` of `count` of `train`, sent `sent_ns` after its first,
    /// `wire_bytes` long, arrived at `rx_ns`. The train's last packet ends
    /// it ([`TrainMeter::finish`]).
    pub fn on_probe(
        &mut self,
        train: u32,
        index: u8,
        count: u8,
        sent_ns: u32,
        wire_bytes: u64,
        rx_ns: u64,
    ) -> Option<TrainTiming> {
        if train != self.train {
            *self = TrainMeter { train, ..Default::default() };
        }
        if self.answered || count != TRAIN_LEN || index >= count || rx_ns == 0 {
            return None;
        }
        self.at_ns[index as usize] = rx_ns;
        self.sent_ns[index as usize] = sent_ns;
        self.wire_bytes = wire_bytes;
        if index + 1 != count {
            return None;
        }
        self.finish()
    }

    /// Another message from the sender on this subflow arrived. Sent after
    /// the train (the sender sends none in between), it arrives after all
    /// of it over a path that keeps order, so a train whose end has not
    /// come lost it: a buffer smaller than the train (a 3 Mbit/s link's
    /// 50 ms) drops its tail. Its end is what arrived last.
    pub fn on_later_message(&mut self) -> Option<TrainTiming> {
        if self.answered || self.at_ns.iter().all(|&t| t == 0) {
            return None;
        }
        self.finish()
    }

    /// (bytes, µs) over the last [`TIMED`] packets that arrived, once: if
    /// they follow each other, at least [`MIN_ARRIVED`] came, and they came
    /// at a steady rate (the halves agree within [`STEADY_PCT`]: a token
    /// bucket's burst or jitter that reaches into them would read as a
    /// faster or slower link) spread by the path ([`SPREAD_FACTOR`]).
    fn finish(&mut self) -> Option<TrainTiming> {
        self.answered = true;
        match self.timing() {
            Ok(t) => Some(t),
            Err(why) => {
                // Why a path stays without a rate: worth a look when it lasts.
                tracing::debug!(train = self.train, why, "packet train not timed");
                None
            }
        }
    }

    /// [`Self::finish`]'s timing, or why there is none.
    fn timing(&self) -> Result<TrainTiming, &'static str> {
        let last = self.at_ns.iter().rposition(|&t| t != 0).ok_or("nothing arrived")?;
        let first = (last + 1).checked_sub(TIMED).ok_or("too few arrived")?;
        if last + 1 < MIN_ARRIVED {
            return Err("too few arrived");
        }
        let t = &self.at_ns[first..=last];
        let ordered = t.iter().all(|&a| a != 0) && t.windows(2).all(|w| w[1] > w[0]);
        if !ordered {
            return Err("its end arrived with gaps or out of order");
        }
        // Bytes per ns of each half (the same number of intervals each).
        let mid = TIMED / 2;
        let (a, b) = (t[mid] - t[0], t[TIMED - 1] - t[TIMED - 1 - mid]);
        if a.max(b) * 100 > a.min(b) * STEADY_PCT {
            return Err("its end came at an unsteady rate");
        }
        let sent_span = self.sent_ns[last].saturating_sub(self.sent_ns[first]) as u64;
        if t[TIMED - 1] - t[0] < SPREAD_FACTOR * sent_span {
            return Err("the sender spaced it, not the path");
        }
        let span_us = ((t[TIMED - 1] - t[0]) / 1_000).clamp(1, u32::MAX as u64) as u32;
        let bytes = ((TIMED as u64 - 1) * self.wire_bytes).min(u32::MAX as u64) as u32;
        Ok(TrainTiming { train: self.train, bytes, span_us })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line rate of the hop before the shaper (bytes/s): 10 Gbit/s.
    const LINE: f64 = 1.25e9;

    /// Arrival times (ns) of a train of `n` packets of `len` bytes sent at
    /// once into a token bucket of `rate` bytes/s and `burst` bytes, full,
    /// behind a hop at [`LINE`] rate.
    fn through_bucket(n: u8, len: u64, rate: u64, burst: u64) -> Vec<u64> {
        let mut tokens = burst as f64;
        let mut t = 0.0f64;
        (0..n)
            .map(|_| {
                t += len as f64 / LINE;
                let wait = (len as f64 - tokens).max(0.0) / rate as f64;
                t += wait;
                tokens = (tokens + wait * rate as f64 - len as f64).max(0.0);
                (1e9 + t * 1e9) as u64
            })
            .collect()
    }

    /// What the client learns from a train with these arrivals (`None`:
    /// a packet lost).
    fn measure(arrivals: &[Option<u64>], len: u64) -> Option<u64> {
        let mut probe = TrainProbe::default();
        let train = probe.due(0).unwrap();
        let mut meter = TrainMeter::default();
        let n = arrivals.len() as u8;
        let answer = arrivals.iter().enumerate().find_map(|(i, t)| meter.on_probe(train, i as u8, n, 0, len, (*t)?));
        let t = answer.or_else(|| meter.on_later_message())?;
        probe.on_ack(t.train, t.bytes, t.span_us)
    }

    fn all(arrivals: Vec<u64>) -> Vec<Option<u64>> {
        arrivals.into_iter().map(Some).collect()
    }

    #[test]
    fn a_shapers_burst_does_not_read_as_a_faster_link() {
        // 4 Mbit/s with the WAN emulator's 4 kB burst, 20 Mbit/s with 5 kB
        // and with 12 kB: the train's end is paced at the rate.
        for (rate, burst) in [(500_000u64, 4_000u64), (2_500_000, 5_000), (2_500_000, 12_000)] {
            let arrivals = through_bucket(TRAIN_LEN, 1_242, rate, burst);
            let got = measure(&all(arrivals.clone()), 1_242).unwrap();
            assert!(got.abs_diff(rate) * 100 <= rate * 2, "{got} for {rate} (burst {burst})");
            // Timed from the first packet, the burst would have read high.
            let whole =
                1_242 * (TRAIN_LEN as u64 - 1) * 1_000_000_000 / (arrivals[TRAIN_LEN as usize - 1] - arrivals[0]);
            assert!(whole * 100 > rate * 110, "{whole} for {rate}");
        }
        // A burst that reaches into the train's end (25 kB), or holds all of
        // it (the testbed's 64 KiB tbf): no answer, not a wrong one.
        assert_eq!(measure(&all(through_bucket(TRAIN_LEN, 1_242, 2_500_000, 25_000)), 1_242), None);
        assert_eq!(measure(&all(through_bucket(TRAIN_LEN, 1_242, 2_500_000, 65_536)), 1_242), None);
    }

    #[test]
    fn only_a_whole_steady_end_of_the_train_is_timed() {
        let len = 1_242;
        let arrivals = all(through_bucket(TRAIN_LEN, len, 1_250_000, 4_000));
        // Losses before the timed third change nothing.
        let mut early_loss = arrivals.clone();
        early_loss[3] = None;
        early_loss[10] = None;
        assert_eq!(measure(&early_loss, len), measure(&arrivals, len));
        assert!(measure(&arrivals, len).is_some());
        // A loss in it leaves the train unanswered.
        let mut a = arrivals.clone();
        a[TRAIN_LEN as usize - TIMED] = None;
        assert_eq!(measure(&a, len), None);
        // Jitter that spaces the end unevenly: no answer.
        let mut jittered = arrivals.clone();
        for t in jittered.iter_mut().skip(TRAIN_LEN as usize - 3).flatten() {
            *t += 5_000_000;
        }
        assert_eq!(measure(&jittered, len), None);
        // Answered once; a packet of an older train starts nothing.
        let mut meter = TrainMeter::default();
        let timed: Vec<_> =
            (0..TRAIN_LEN).filter_map(|i| meter.on_probe(2, i, TRAIN_LEN, 0, len, arrivals[i as usize]?)).collect();
        assert_eq!(timed.len(), 1);
        assert_eq!(meter.on_probe(2, TRAIN_LEN - 1, TRAIN_LEN, 0, len, u64::MAX), None);
        assert_eq!(meter.on_later_message(), None);
        // Arrivals spaced as the sender sent them (a busy host, a shaper's
        // burst passing the whole train): the path spread nothing.
        let mut meter = TrainMeter::default();
        let sent = |i: u8| i as u32 * 60_000; // 1242 B every 60 µs: 165 Mbit/s
        let mirrored = (0..TRAIN_LEN)
            .find_map(|i| meter.on_probe(3, i, TRAIN_LEN, sent(i), len, 1_000_000 + sent(i) as u64 + 5_000));
        assert_eq!(mirrored, None);
    }

    #[test]
    fn a_train_whose_tail_a_small_buffer_dropped_is_timed_by_what_arrived() {
        // 3 Mbit/s with the WAN emulator's 50 ms queue and 4 kB burst: about
        // 22.75 kB fit, so the train's last 6 packets are dropped; the next
        // message from the sender ends it.
        let (len, rate) = (1_242, 375_000);
        let arrivals = through_bucket(TRAIN_LEN, len, rate, 4_000);
        let kept = (22_750 / len) as usize;
        let cut: Vec<_> = arrivals.iter().enumerate().map(|(i, &t)| (i < kept).then_some(t)).collect();
        let got = measure(&cut, len).unwrap();
        assert!(got.abs_diff(rate) * 100 <= rate * 2, "{got} for {rate}");
        // Too little arrived to be past a burst: no answer.
        let short: Vec<_> = arrivals.iter().enumerate().map(|(i, &t)| (i < MIN_ARRIVED - 1).then_some(t)).collect();
        assert_eq!(measure(&short, len), None);
        // A message before any of the train says nothing, and ends nothing.
        let mut meter = TrainMeter::default();
        assert_eq!(meter.on_later_message(), None);
        let timed = (0..TRAIN_LEN).find_map(|i| meter.on_probe(1, i, TRAIN_LEN, 0, len, arrivals[i as usize]));
        assert!(timed.is_some());
    }

    #[test]
    fn trains_are_retried_until_answered_ever_less_often() {
        let mut p = TrainProbe::default();
        let first = p.due(0).unwrap();
        assert_eq!(p.due(RETRY_US - 1), None, "waits for the answer");
        let second = p.due(RETRY_US).unwrap();
        assert_ne!(first, second);
        assert_eq!(p.on_ack(first, 10_000, 1_000), None, "an older train's answer");
        // Every RETRY_US up to the fifth train, then ever longer waits, capped.
        let r = RETRY_US;
        let (mut now, mut latest) = (RETRY_US, second);
        for wait in [r, r, r, r, 2 * r, 4 * r, 8 * r, 16 * r, MAX_RETRY_US, MAX_RETRY_US] {
            assert_eq!(p.due(now + wait - 1), None, "waits {wait} µs after train {}", p.tries);
            latest = p.due(now + wait).unwrap();
            now += wait;
        }
        assert_eq!(p.on_ack(latest, 10_000, 1_000), Some(10_000_000));
        assert_eq!(p.due(now + 10 * MAX_RETRY_US), None, "answered: no more trains");
        // Faster than a train can tell from a burst: no estimate, and tried
        // again.
        let mut fast = TrainProbe::default();
        let t = fast.due(0).unwrap();
        assert_eq!(fast.on_ack(t, 15_000, 10), None);
        let again = fast.due(RETRY_US).unwrap();
        assert_eq!(fast.on_ack(again, 15_000, 1_000), Some(15_000_000));
    }
}
