//! Path estimates from feedback: each end reports, in every probe or probe
//! answer, what it has received on that subflow (cumulative counters); the
//! sending end turns two reports into the path's delivery rate and loss, and
//! keeps a windowed minimum RTT whose half is the one-way propagation delay
//! earliest-arrival and flowlet use (the smoothed RTT also holds the queue,
//! which the token bucket already counts).

use std::collections::VecDeque;

use mptcp_common::wire::{encap_overhead, ETH_HLEN};
use serde::{Deserialize, Serialize};

use crate::control::RxReport;

/// How long a minimum RTT sample stays valid (a route change raises the floor).
const MIN_RTT_WINDOW_US: u64 = 10_000_000;

/// The windowed minimum of RTT samples.
#[derive(Clone, Debug, Default)]
pub struct MinRtt {
    samples: VecDeque<(u64, u32)>,
}

impl MinRtt {
    pub fn sample(&mut self, now_us: u64, rtt_us: u32) {
        // Keep the deque increasing: an older, larger sample can never be the minimum again.
        while self.samples.back().is_some_and(|&(_, r)| r >= rtt_us) {
            self.samples.pop_back();
        }
        self.samples.push_back((now_us, rtt_us));
        while self.samples.front().is_some_and(|&(t, _)| now_us.saturating_sub(t) > MIN_RTT_WINDOW_US) {
            self.samples.pop_front();
        }
    }

    /// 0 before any sample.
    pub fn get(&self) -> u32 {
        self.samples.front().map_or(0, |&(_, r)| r)
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

    #[test]
    fn min_rtt_is_the_windowed_minimum() {
        let mut m = MinRtt::default();
        assert_eq!(m.get(), 0);
        m.sample(0, 30_000);
        m.sample(1_000_000, 20_000);
        m.sample(2_000_000, 50_000);
        assert_eq!(m.get(), 20_000);
        // 20 ms ages out of the window; the later 50 ms remains.
        m.sample(12_000_000, 60_000);
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

/// This end's receive counters of a subflow, as reported to the peer.
pub fn rx_report(maps: &crate::bpfmaps::DataPathMaps, token: u32, subflow: u8) -> RxReport {
    let s = maps.subflow_stats(mptcp_common::maps::SubflowKey { token, subflow_id: subflow as u32 });
    RxReport { bytes: s.rx_bytes, packets: s.rx_packets, lost: s.rx_lost(), owd_us: s.rx_owd_us as u32 }
}

/// One subflow's latest estimate, as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubflowEstimate {
    pub token: u32,
    pub subflow: u8,
    #[serde(flatten)]
    pub estimate: PathEstimate,
}

pub fn estimates_file(instance: &str) -> std::path::PathBuf {
    std::path::Path::new(crate::lifecycle::RUN_ROOT).join(format!("{instance}.estimates.json"))
}

/// Publish the controller's latest estimates for `status` (best effort).
pub fn publish(instance: &str, all: &[SubflowEstimate]) {
    let f = estimates_file(instance);
    let tmp = f.with_extension("json.tmp");
    if let Ok(text) = serde_json::to_vec(all) {
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &f);
        }
    }
}

/// The estimates a running controller published (empty if none).
pub fn load(instance: &str) -> Vec<SubflowEstimate> {
    std::fs::read(estimates_file(instance)).ok().and_then(|t| serde_json::from_slice(&t).ok()).unwrap_or_default()
}
