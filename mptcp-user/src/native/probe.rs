//! Native mode's path probes. The peer is an unmodified MPTCP host with no
//! probe protocol of ours, so each path pings (ICMP echo) the probe targets
//! from its own address through its own uplink, every active probe
//! interval, and [`Verdict`] judges the answers: a path silent for
//! `down_after` intervals (or its retransmission timeout, if longer) is
//! dead long before the kernel's own stale detection (several
//! retransmission timeouts); it lives again after [`UP_AFTER`] answers.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mptcp_common::clock::mono_us;
use surge_ping::{Client, Config, PingIdentifier, PingSequence, ICMP};

/// Answers in a row that bring a dead path back.
pub const UP_AFTER: u64 = 3;

/// A path's probing: a task that pings every target each interval, and
/// what it has heard.
pub struct Prober {
    ears: Arc<Ears>,
    task: tokio::task::JoinHandle<()>,
    /// Where it probes from.
    pub ifindex: u32,
    pub addr: IpAddr,
}

/// What a prober heard (written by its ping tasks, read by the controller).
struct Ears {
    answers: AtomicU64,
    /// [`mono_us`] of the latest answer (of the start, before the first).
    last_us: AtomicU64,
    /// Smoothed round trip and its variation, µs (0: none yet).
    srtt_us: AtomicU32,
    rttvar_us: AtomicU32,
}

impl Ears {
    fn answer(&self, rtt: Duration) {
        let rtt = rtt.as_micros().min(u32::MAX as u128 / 2) as i64;
        let (srtt, var) = (self.srtt_us.load(Ordering::Relaxed) as i64, self.rttvar_us.load(Ordering::Relaxed) as i64);
        // RFC 6298's estimators, the first sample taken whole.
        let (srtt, var) =
            if srtt == 0 { (rtt, rtt / 2) } else { (srtt + (rtt - srtt) / 8, var + ((rtt - srtt).abs() - var) / 4) };
        self.srtt_us.store(srtt.max(1) as u32, Ordering::Relaxed);
        self.rttvar_us.store(var as u32, Ordering::Relaxed);
        self.last_us.store(mono_us(), Ordering::Relaxed);
        self.answers.fetch_add(1, Ordering::Relaxed);
    }
}

impl Prober {
    /// Ping each of `targets` (those of `addr`'s family) from `addr` through
    /// device `ifindex` every `interval`; a ping not answered within
    /// `patience` is lost. Needs a tokio runtime.
    pub fn start(
        ifindex: u32,
        addr: IpAddr,
        targets: &[IpAddr],
        interval: Duration,
        patience: Duration,
    ) -> Result<Prober> {
        let targets: Vec<IpAddr> = targets.iter().copied().filter(|t| t.is_ipv4() == addr.is_ipv4()).collect();
        let config = Config::builder()
            .kind(if addr.is_ipv4() { ICMP::V4 } else { ICMP::V6 })
            .bind(SocketAddr::new(addr, 0))
            .interface_index(NonZeroU32::new(ifindex).context("no device to probe through")?)
            .build();
        let client = Client::new(&config).with_context(|| format!("cannot open an ICMP socket on {addr}"))?;
        let ears = Arc::new(Ears {
            answers: AtomicU64::new(0),
            last_us: AtomicU64::new(mono_us()),
            srtt_us: AtomicU32::new(0),
            rttvar_us: AtomicU32::new(0),
        });
        let shared = ears.clone();
        let task = tokio::spawn(async move {
            // Our pings among every raw ICMP socket's: an identifier of our own.
            let ident = PingIdentifier(rand::random());
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq: u16 = 0;
            loop {
                tick.tick().await;
                seq = seq.wrapping_add(1);
                for &t in &targets {
                    // A pinger per ping: pings overlap when the round trip
                    // is longer than the interval.
                    let mut pinger = client.pinger(t, ident).await;
                    pinger.timeout(patience);
                    let ears = shared.clone();
                    tokio::spawn(async move {
                        if let Ok((_, rtt)) = pinger.ping(PingSequence(seq), &[0; 16]).await {
                            ears.answer(rtt);
                        }
                    });
                }
            }
        });
        Ok(Prober { ears, task, ifindex, addr })
    }

    /// What it heard: answers so far, µs since the latest, the round trip.
    pub fn heard(&self) -> Heard {
        let h = &self.ears;
        Heard {
            answers: h.answers.load(Ordering::Relaxed),
            silence_us: mono_us().saturating_sub(h.last_us.load(Ordering::Relaxed)),
            srtt_us: h.srtt_us.load(Ordering::Relaxed),
            rttvar_us: h.rttvar_us.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a path's probes say it works, judged from what they heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub alive: bool,
    /// Answers counted when it was last judged dead.
    answers_at_death: u64,
}

impl Default for Verdict {
    /// A path is taken to work until its probes say otherwise.
    fn default() -> Self {
        Verdict { alive: true, answers_at_death: 0 }
    }
}

impl Verdict {
    /// Judge again: dead after `limit_us` of silence, alive again after
    /// [`UP_AFTER`] answers since, the latest within `limit_us`. Returns
    /// whether the verdict changed.
    pub fn judge(&mut self, answers: u64, silence_us: u64, limit_us: u64) -> bool {
        let was = self.alive;
        if self.alive && silence_us > limit_us {
            self.alive = false;
            self.answers_at_death = answers;
        } else if !self.alive && answers >= self.answers_at_death + UP_AFTER && silence_us <= limit_us {
            self.alive = true;
        }
        self.alive != was
    }
}

/// A prober's answers as last read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heard {
    pub answers: u64,
    /// Since the latest answer (since the start, before the first).
    pub silence_us: u64,
    /// Round trip, smoothed, and its variation (0: no answer yet).
    pub srtt_us: u32,
    pub rttvar_us: u32,
}

impl Heard {
    /// How long the path may be silent before it is dead: `down_after`
    /// probe intervals, or its retransmission timeout if longer (answers
    /// keep coming every interval on a long path too, but late ones vary
    /// with its queue), as the bond gives up a subflow.
    pub fn silence_limit_us(&self, interval: Duration, down_after: u32) -> u64 {
        let rto = self.srtt_us as u64 + 4 * self.rttvar_us as u64;
        (interval.as_micros() as u64 * down_after as u64).max(rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(srtt_us: u32, rttvar_us: u32) -> Heard {
        Heard { srtt_us, rttvar_us, ..Default::default() }
    }

    #[test]
    fn a_silent_path_dies_and_comes_back_after_answers_in_a_row() {
        let limit = heard(10_000, 5_000).silence_limit_us(Duration::from_millis(50), 4);
        assert_eq!(limit, 200_000);
        let mut v = Verdict::default();
        assert!(!v.judge(10, 60_000, limit) && v.alive, "answers keep coming");
        assert!(v.judge(10, 211_000, limit) && !v.alive, "silent past the limit: dead");
        assert!(!v.judge(12, 20_000, limit) && !v.alive, "two answers are not enough");
        assert!(v.judge(13, 20_000, limit) && v.alive, "the third brings it back");
        assert!(v.judge(13, 300_000, limit) && !v.alive);
        assert!(!v.judge(16, 300_000, limit), "answers that stopped again do not");
    }

    #[test]
    fn a_long_or_jittery_round_trip_widens_the_limit_to_its_timeout() {
        let i = Duration::from_millis(50);
        assert_eq!(heard(600_000, 20_000).silence_limit_us(i, 4), 680_000);
        assert_eq!(heard(40_000, 60_000).silence_limit_us(i, 4), 280_000);
        assert_eq!(heard(0, 0).silence_limit_us(i, 2), 100_000, "no answer yet: the intervals");
    }
}
