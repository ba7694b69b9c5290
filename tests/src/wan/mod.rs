//! WAN emulator: per link and direction rate, one-way delay, jitter, random loss,
//! and link down/up, between a client's uplink and the concentrator.
//!
//! This kernel has no netem, so delay, jitter and loss come from a userspace
//! delay line in an emulator namespace: each link is two veth pairs
//! `client u<k> ── w<c>a<k> [emulator] w<c>b<k> ── c<c>u<k> concentrator`,
//! and one thread per emulator device reads the frames arriving on it
//! (AF_PACKET), holds each until its due time and sends it out of the other
//! device. The rate is a tbf on that outgoing device, so the kernel paces the
//! bottleneck queue. The emulator is an L2 wire: no addresses, ARP and
//! neighbour discovery pass through unharmed.
//!
//! Order on the wire: loss, then delay (+ jitter, never reordering, as on a
//! real link), then the rate limit and its queue. Delivered bytes are counted
//! after the rate limit, from the kernel's tap of each device's transmissions,
//! so per-link throughput over time is what actually left the emulator.

pub(crate) mod socket;

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags};
use serde::{Deserialize, Serialize};

use crate::Netns;

/// Width of one bucket of the delivered-bytes time series.
pub const BUCKET: Duration = Duration::from_millis(100);
/// Cap on bytes held in one delay line, so a flood cannot exhaust memory.
const MAX_HELD_BYTES: usize = 128 << 20;

/// One direction of a link as configured. Zero rate means unlimited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    #[serde(default)]
    pub rate_mbit: f64,
    #[serde(default)]
    pub delay_ms: f64,
    /// Uniform in ±jitter around the delay, clipped so packets never reorder.
    #[serde(default)]
    pub jitter_ms: f64,
    #[serde(default)]
    pub loss_pct: f64,
    /// Bottleneck queue, as time at the configured rate (tbf's `latency`).
    #[serde(default = "default_queue_ms")]
    pub queue_ms: f64,
    /// Largest IP packet the link carries; larger ones vanish without an
    /// ICMP answer (a PMTU black hole: a PPPoE or tunnel hop behind a
    /// router that filters ICMP). 0 = no limit.
    #[serde(default)]
    pub mtu: u32,
}

fn default_queue_ms() -> f64 {
    50.0
}

/// No rate limit, no delay, no loss, the default queue.
impl Default for Shape {
    fn default() -> Shape {
        Shape { rate_mbit: 0.0, delay_ms: 0.0, jitter_ms: 0.0, loss_pct: 0.0, queue_ms: default_queue_ms(), mtu: 0 }
    }
}

impl Shape {
    pub fn validate(&self) -> Result<()> {
        let fields = [("rate_mbit", self.rate_mbit), ("delay_ms", self.delay_ms), ("jitter_ms", self.jitter_ms)];
        for (name, v) in fields {
            anyhow::ensure!(v.is_finite() && v >= 0.0, "{name} must be a number ≥ 0, not {v}");
        }
        anyhow::ensure!(self.rate_mbit <= 10_000.0, "rate_mbit {} is above 10000", self.rate_mbit);
        anyhow::ensure!(self.delay_ms <= 10_000.0, "delay_ms {} is above 10000", self.delay_ms);
        anyhow::ensure!(
            self.loss_pct.is_finite() && (0.0..=100.0).contains(&self.loss_pct),
            "loss_pct must be within 0..100, not {}",
            self.loss_pct
        );
        anyhow::ensure!(
            self.queue_ms.is_finite() && self.queue_ms >= 1.0,
            "queue_ms must be at least 1, not {}",
            self.queue_ms
        );
        anyhow::ensure!(
            self.mtu == 0 || (576..=1500).contains(&self.mtu),
            "mtu must be 0 (no limit) or within 576..1500, not {}",
            self.mtu
        );
        Ok(())
    }
}

/// Up = client → concentrator, Down = concentrator → client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up = 0,
    Down = 1,
}

/// Counters of one direction of one link.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirStats {
    /// Frames that entered the emulator.
    pub received: u64,
    /// Dropped at random (configured loss).
    pub lost: u64,
    /// Dropped because the link was down.
    pub blackholed: u64,
    /// Dropped as larger than the link's MTU.
    pub too_big: u64,
    /// Dropped by the rate limiter's full queue or the delay line's cap.
    pub queue_drops: u64,
    /// Frames and bytes that left the emulator after the rate limit.
    pub delivered: u64,
    pub delivered_bytes: u64,
}

#[derive(Default)]
struct DirState {
    delay_us: AtomicU64,
    jitter_us: AtomicU64,
    /// Loss probability in parts per 2^32.
    loss: AtomicU32,
    /// Largest IP packet passed (0: any).
    mtu: AtomicU32,
    received: AtomicU64,
    lost: AtomicU64,
    blackholed: AtomicU64,
    too_big: AtomicU64,
    queue_drops: AtomicU64,
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    series: Mutex<Vec<u64>>,
}

struct LinkState {
    up: AtomicBool,
    dirs: [DirState; 2],
}

/// One emulated link: the devices facing the client (`a`) and the concentrator (`b`).
pub struct WanLink {
    pub client_side: String,
    pub conc_side: String,
    state: Arc<LinkState>,
}

/// The running emulator; its threads stop on Drop.
pub struct Wan {
    ns_name: String,
    pub links: Vec<WanLink>,
    epoch: Arc<Mutex<Instant>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
}

struct Held {
    due: Instant,
    frame: Vec<u8>,
}

impl Wan {
    /// Start the delay lines for `links` = (client-side device, concentrator-side
    /// device) pairs inside `ns`. Every link starts unshaped and up.
    pub fn start(ns: &Netns, links: &[(String, String)]) -> Result<Wan> {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(Mutex::new(Instant::now()));
        let mut wan = Wan { ns_name: ns.name.clone(), links: Vec::new(), epoch, stop, threads: Vec::new() };
        for (a, b) in links {
            let state = Arc::new(LinkState { up: AtomicBool::new(true), dirs: Default::default() });
            // The thread reading `a` carries Up traffic to `b`, and sees Down
            // traffic leave through `a`; the one reading `b` the reverse.
            for (rx, tx, dir) in [(a, b, Direction::Up), (b, a, Direction::Down)] {
                let (rx_index, tx_index) = ns.run({
                    let (rx, tx) = (rx.clone(), tx.clone());
                    move || Ok((ifindex(&rx)?, ifindex(&tx)?))
                })?;
                let (state, stop, epoch) = (state.clone(), wan.stop.clone(), wan.epoch.clone());
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let handle = ns.spawn_thread(move || {
                    let sockets = socket::open(rx_index, true)
                        .and_then(|r| Ok((r, socket::open(tx_index, false)?)))
                        .context("opening the emulator's packet sockets");
                    let (rx_fd, tx_fd) = match sockets {
                        Ok(s) => {
                            ready_tx.send(Ok(())).ok();
                            s
                        }
                        Err(e) => {
                            ready_tx.send(Err(format!("{e:#}"))).ok();
                            return Err(e);
                        }
                    };
                    let seed = 0x9E37_79B9_7F4A_7C15 ^ (rx_index as u64) << 32 ^ tx_index as u64;
                    delay_line(rx_fd, tx_fd, &state, dir, &stop, &epoch, seed)
                });
                wan.threads.push(handle);
                ready_rx
                    .recv_timeout(Duration::from_secs(5))
                    .context("emulator thread did not start")?
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            wan.links.push(WanLink { client_side: a.clone(), conc_side: b.clone(), state });
        }
        Ok(wan)
    }

    fn device(&self, link: usize, dir: Direction) -> &str {
        // The rate limit sits on the device a direction leaves through.
        let l = &self.links[link];
        match dir {
            Direction::Up => &l.conc_side,
            Direction::Down => &l.client_side,
        }
    }

    /// Apply `shape` to one direction of one link, taking effect at once.
    pub fn set(&self, link: usize, dir: Direction, shape: &Shape) -> Result<()> {
        shape.validate()?;
        let d = &self.links[link].state.dirs[dir as usize];
        d.delay_us.store((shape.delay_ms * 1000.0).round() as u64, Relaxed);
        d.jitter_us.store((shape.jitter_ms * 1000.0).round() as u64, Relaxed);
        d.loss.store((shape.loss_pct / 100.0 * u32::MAX as f64).round() as u32, Relaxed);
        d.mtu.store(shape.mtu, Relaxed);
        let dev = self.device(link, dir).to_string();
        if shape.rate_mbit > 0.0 {
            let rate_bytes = shape.rate_mbit * 1e6 / 8.0;
            // A burst of ~2 ms keeps the pacing smooth yet above one frame.
            let burst = (rate_bytes * 0.002).max(4000.0).round() as u64;
            let kbit = (shape.rate_mbit * 1000.0).round() as u64;
            crate::sh_in(
                &self.ns_name,
                &format!(
                    "tc qdisc replace dev {dev} root tbf rate {kbit}kbit burst {burst} latency {}ms",
                    shape.queue_ms
                ),
            )
            .map(drop)
        } else {
            crate::sh_in(&self.ns_name, &format!("tc qdisc del dev {dev} root 2>/dev/null || true")).map(drop)
        }
    }

    /// A link that is down drops everything in both directions, as when a
    /// modem or radio loses its line but the local interface stays up.
    pub fn set_up(&self, link: usize, up: bool) {
        self.links[link].state.up.store(up, Relaxed);
    }

    pub fn stats(&self, link: usize, dir: Direction) -> DirStats {
        let d = &self.links[link].state.dirs[dir as usize];
        DirStats {
            received: d.received.load(Relaxed),
            lost: d.lost.load(Relaxed),
            blackholed: d.blackholed.load(Relaxed),
            too_big: d.too_big.load(Relaxed),
            queue_drops: d.queue_drops.load(Relaxed),
            delivered: d.delivered.load(Relaxed),
            delivered_bytes: d.delivered_bytes.load(Relaxed),
        }
    }

    /// Restart the time series clock and clear every series (one per run).
    pub fn restart_series(&self) {
        *self.epoch.lock().unwrap() = Instant::now();
        for l in &self.links {
            for d in &l.state.dirs {
                d.series.lock().unwrap().clear();
            }
        }
    }

    /// Delivered bytes per [`BUCKET`] since the last [`Wan::restart_series`].
    pub fn series(&self, link: usize, dir: Direction) -> Vec<u64> {
        self.links[link].state.dirs[dir as usize].series.lock().unwrap().clone()
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn ifindex(dev: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(dev).with_context(|| format!("no emulator device {dev}"))
}

/// An Ethernet header's length: what a frame carries besides its IP packet.
const ETH_HEADER: usize = 14;

fn is_ip(frame: &[u8]) -> bool {
    frame.len() >= 14 && matches!(u16::from_be_bytes([frame[12], frame[13]]), 0x0800 | 0x86DD)
}

/// The delay lines' real-time priority.
const DELAY_LINE_PRIORITY: i32 = 10;

/// Run the calling thread under SCHED_FIFO at `priority`. The delay line
/// sleeps in ppoll between frames, so it never holds a CPU for long; the
/// kernel's real-time throttling bounds it anyway.
pub(crate) fn realtime_priority(priority: i32) {
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid,
    // initialised sched_param; it only changes this thread's scheduling.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        eprintln!("wan: a paced thread at normal priority: {}", std::io::Error::last_os_error());
    }
}

/// Read frames arriving on `rx_fd` (direction `dir`), hold them for their
/// delay and send them out of `tx_fd`. Frames this host transmits on the `rx`
/// device are the opposite direction's deliveries and are only counted.
fn delay_line(
    rx_fd: OwnedFd,
    tx_fd: OwnedFd,
    link: &LinkState,
    dir: Direction,
    stop: &AtomicBool,
    epoch: &Mutex<Instant>,
    seed: u64,
) -> Result<()> {
    // Wake-ups must be punctual to the microsecond, not the default 50 µs,
    // and a busy host (a build, the traffic generators) must not delay
    // them: the line runs at real-time priority, as netem runs in softirq.
    nix::sys::prctl::set_timerslack(1000).ok();
    realtime_priority(DELAY_LINE_PRIORITY);
    let this = &link.dirs[dir as usize];
    let other = &link.dirs[1 - dir as usize];
    let mut rng = crate::rng::Rng::new(seed);
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut held_bytes = 0usize;
    let mut last_due = Instant::now();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Relaxed) {
        let now = Instant::now();
        let wait = held.front().map_or(Duration::from_millis(20), |h| h.due.saturating_duration_since(now));
        if !wait.is_zero() {
            let mut fds = [PollFd::new(rx_fd.as_fd(), PollFlags::POLLIN)];
            let ts = nix::sys::time::TimeSpec::from_duration(wait.min(Duration::from_millis(20)));
            match nix::poll::ppoll(&mut fds, Some(ts), None) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("polling the emulator socket"),
            }
        }
        // Take in everything waiting (bounded, so departures stay punctual).
        for _ in 0..512 {
            let Some(socket::Received { len: n, pkttype, arrived: now }) = socket::receive(&rx_fd, &mut buf)? else {
                break;
            };
            if pkttype == socket::PACKET_OUTGOING {
                other.delivered.fetch_add(1, Relaxed);
                other.delivered_bytes.fetch_add(n as u64, Relaxed);
                let bucket =
                    (now.saturating_duration_since(*epoch.lock().unwrap()).as_micros() / BUCKET.as_micros()) as usize;
                let mut series = other.series.lock().unwrap();
                if series.len() <= bucket {
                    series.resize(bucket + 1, 0);
                }
                series[bucket] += n as u64;
                continue;
            }
            this.received.fetch_add(1, Relaxed);
            let frame = &buf[..n];
            if !link.up.load(Relaxed) {
                this.blackholed.fetch_add(1, Relaxed);
                continue;
            }
            let mtu = this.mtu.load(Relaxed) as usize;
            if mtu > 0 && is_ip(frame) && n > mtu + ETH_HEADER {
                this.too_big.fetch_add(1, Relaxed);
                continue;
            }
            let loss = this.loss.load(Relaxed);
            if loss > 0 && is_ip(frame) && (rng.next_u64() >> 32) < loss as u64 {
                this.lost.fetch_add(1, Relaxed);
                continue;
            }
            if held_bytes + n > MAX_HELD_BYTES {
                this.queue_drops.fetch_add(1, Relaxed);
                continue;
            }
            let (delay, jitter) = (this.delay_us.load(Relaxed), this.jitter_us.load(Relaxed));
            let us = if jitter > 0 {
                let offset = (rng.next_u64() % (2 * jitter + 1)) as i64 - jitter as i64;
                (delay as i64 + offset).max(0) as u64
            } else {
                delay
            };
            let due = (now + Duration::from_micros(us)).max(last_due);
            last_due = due;
            held_bytes += n;
            held.push_back(Held { due, frame: frame.to_vec() });
        }
        let now = Instant::now();
        while held.front().is_some_and(|h| h.due <= now) {
            let h = held.pop_front().unwrap();
            held_bytes -= h.frame.len();
            if socket::transmit(&tx_fd, &h.frame).is_err() {
                // ENOBUFS: tbf's queue is full, the bottleneck dropped it.
                this.queue_drops.fetch_add(1, Relaxed);
            }
        }
    }
    Ok(())
}
