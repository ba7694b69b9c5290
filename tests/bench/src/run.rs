//! One system through one scenario: fresh testbed, shaped links, the traffic,
//! the scheduled events, and the measurements.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mptcp_testbed::traffic::{self, percentile, Amount, BulkReport, BulkSink, Stream, Transport, UdpReport};
use mptcp_testbed::wan::{Direction, Shape, BUCKET};
use mptcp_testbed::{Netns, Testbed};
use mptcp_user::status::Status;
use serde::Serialize;

use crate::scenario::{Action, Scenario, System, Traffic};
use crate::systems;

/// Everything measured for one system in one run. `None` = not applicable.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    pub goodput_mbit: Option<f64>,
    pub capacity_share_pct: Option<f64>,
    pub completion_s: Option<f64>,
    /// Share of the uplink bytes each link carried, in scenario link order.
    pub link_share_pct: Vec<f64>,
    pub retrans_segs: Option<f64>,
    /// Out-of-order queueing events at the receiver (TCP and MPTCP levels).
    pub reorder_events: Option<f64>,
    /// Longest silence of the bulk receiver after its first byte.
    pub tcp_gap_ms: Option<f64>,
    pub udp_loss_pct: Option<f64>,
    pub udp_p50_ms: Option<f64>,
    pub udp_p95_ms: Option<f64>,
    pub udp_p99_ms: Option<f64>,
    pub udp_gap_ms: Option<f64>,
    /// Percent of the UDP datagrams that arrived behind three or more later
    /// ones: what QUIC's loss detection would declare lost.
    pub udp_late_pct: Option<f64>,
    pub rr_p50_ms: Option<f64>,
    pub rr_p99_ms: Option<f64>,
    /// After the first link failure: time until the surviving links carry 90 %
    /// of their summed rate over 0.5 s. `None` with a failure = never.
    pub recovery_s: Option<f64>,
    pub controller_cpu_pct: Option<f64>,
    pub controller_rss_mib: Option<f64>,
    /// A concentrator restart: seconds from stopping it until the new one
    /// served (its own start-up, most of it loading the programs). The rest
    /// of an outage is the client's.
    pub conc_away_s: Option<f64>,
}

/// One system's run, with its time series for the plots.
#[derive(Clone, Debug, Serialize)]
pub struct SystemRun {
    pub system: String,
    pub metrics: Metrics,
    /// Application goodput per 100 ms bucket, Mbit/s.
    pub goodput_series: Vec<f64>,
    /// Uplink wire rate per link per 100 ms bucket, Mbit/s.
    pub link_series: Vec<Vec<f64>>,
    /// Per link, the rate the client controller ran the path's token bucket
    /// at (its hint or its estimate, wire Mbit/s, 0 = unknown) as
    /// (seconds since the start, Mbit/s), sampled every [`ESTIMATE_POLL`]:
    /// whether the estimate finds the link's true rate ([`true_rate_steps`]).
    /// Empty for systems without a controller.
    pub estimate_series: Vec<Vec<(f64, f64)>>,
}

const BULK_PORT: u16 = 5001;
const UDP_PORT: u16 = 5002;
const RR_PORT: u16 = 5003;
/// How often a bond's client controller is asked for its paths' rates.
const ESTIMATE_POLL: Duration = Duration::from_millis(250);

fn server(port: u16) -> SocketAddr {
    SocketAddr::new(Testbed::SERVER_V4.parse().unwrap(), port)
}

enum Outcome {
    /// A bulk receiver's report; `timed` for flows that ran for a set time,
    /// `None` for a fixed transfer.
    Bulk {
        report: BulkReport,
        timed: Option<Duration>,
    },
    Udp(UdpReport),
    Rr(Vec<u64>),
}

pub fn run_system(
    scn: &Scenario,
    system: System,
    controller: &Path,
    log_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<SystemRun> {
    let n = scn.links.len();
    // The end hosts' congestion control is set on each socket: no sysctl.
    let available = traffic::available_congestion();
    anyhow::ensure!(
        available.split_whitespace().any(|cc| cc == scn.tcp_congestion),
        "scenario asks for TCP congestion control {:?}, but this kernel offers only {available}",
        scn.tcp_congestion
    );
    let bed = if scn.any_nat() { Testbed::with_wan_nat(1, n)? } else { Testbed::with_wan(1, n)? };
    if scn.any_nat() {
        for (k, _) in scn.links.iter().enumerate().filter(|(_, l)| !l.nat) {
            bed.set_public(0, k)?;
        }
    }
    let wan = bed.wan();
    for (k, l) in scn.links.iter().enumerate() {
        wan.set(k, Direction::Up, &l.uplink())?;
        wan.set(k, Direction::Down, &l.downlink())?;
    }
    let running = systems::start(system, &bed, scn, controller, log_dir)
        .with_context(|| format!("starting {}", system.label()))?;
    let transport =
        if matches!(system, System::KernelMptcp | System::Native(_)) { Transport::Mptcp } else { Transport::Tcp };
    let stream = Stream::new(transport, &scn.tcp_congestion);
    let (client, srv) = (&bed.clients[0], &bed.server);
    let before = (tcp_counters(client)?, tcp_counters(srv)?, running.usage());
    let duration = Duration::from_secs_f64(scn.duration_s);

    wan.restart_series();
    let epoch = Instant::now();
    let finished = AtomicBool::new(false);
    let outcomes = std::thread::scope(|s| {
        let handles: Vec<_> = scn
            .traffic
            .iter()
            .map(|t| {
                let stream = stream.clone();
                s.spawn(move || traffic_run(t, client, srv, stream, epoch, duration))
            })
            .collect();
        let events = s.spawn(|| apply_events(scn, &bed, &running, epoch, &finished));
        let estimates =
            matches!(system, System::Bond(_)).then(|| s.spawn(|| poll_estimates(scn, &running, epoch, &finished)));
        let mut next_report = Duration::from_secs(1);
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
            let t = epoch.elapsed();
            if t >= next_report {
                next_report += Duration::from_secs(1);
                let last_second: u64 = (0..n)
                    .map(|k| {
                        let series = wan.series(k, Direction::Up);
                        let end = series.len().min((t.as_millis() / 100) as usize);
                        series[end.saturating_sub(10)..end].iter().sum::<u64>()
                    })
                    .sum();
                progress(&format!(
                    "t={:>3.0}/{:.0} s  uplinks carry {:.1} Mbit/s",
                    t.as_secs_f64(),
                    scn.duration_s,
                    last_second as f64 * 8.0 / 1e6
                ));
            }
        }
        finished.store(true, Relaxed);
        let events = events.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the events thread panicked")));
        // A sampler that panicked leaves no series; the run stands.
        let estimates = estimates.and_then(|h| h.join().ok()).unwrap_or_default();
        let traffic = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("traffic panicked"))))
            .collect();
        (events, estimates, traffic)
    });
    let (events, estimate_series, outcomes): (Result<Option<Duration>>, _, Vec<Result<Outcome>>) = outcomes;
    let conc_away = events.context("applying the scenario's events")?;
    let after = (tcp_counters(client)?, tcp_counters(srv)?, running.usage());
    drop(running);

    let mut m = Metrics { conc_away_s: conc_away.map(|d| d.as_secs_f64()), ..Metrics::default() };
    // Links whose rate changes mid-run (or that go down) count at their mean.
    let capacity = mean_capacity_mbit(scn);
    let mut goodput_series = Vec::new();
    for o in outcomes {
        match o? {
            Outcome::Bulk { report: b, timed } => {
                let finished = b.finished_after.unwrap_or(Duration::ZERO);
                if timed.is_none() && b.complete {
                    m.completion_s = Some(finished.as_secs_f64());
                }
                let secs = match timed {
                    Some(t) => t,
                    None if b.complete => finished,
                    None => duration,
                }
                .as_secs_f64();
                let g = b.bytes as f64 * 8.0 / secs.max(1e-3) / 1e6;
                m.goodput_mbit = Some(g);
                m.capacity_share_pct = Some(100.0 * g / capacity);
                m.tcp_gap_ms = Some(b.longest_gap.as_secs_f64() * 1000.0);
                goodput_series = b.series.iter().map(|&x| x as f64 * 8.0 / BUCKET.as_secs_f64() / 1e6).collect();
            }
            Outcome::Udp(u) => {
                m.udp_loss_pct = Some(100.0 * u.loss());
                m.udp_p50_ms = u.owd_percentile_ms(50.0);
                m.udp_p95_ms = u.owd_percentile_ms(95.0);
                m.udp_p99_ms = u.owd_percentile_ms(99.0);
                m.udp_gap_ms = Some(u.longest_gap_ms());
                m.udp_late_pct = Some(u.quic_late_pct());
            }
            Outcome::Rr(rtts) => {
                m.rr_p50_ms = percentile(&rtts, 50.0).map(|us| us / 1000.0);
                m.rr_p99_ms = percentile(&rtts, 99.0).map(|us| us / 1000.0);
            }
        }
    }
    m.retrans_segs = Some(after.0.retrans.saturating_sub(before.0.retrans) as f64);
    m.reorder_events = Some(after.1.ofo.saturating_sub(before.1.ofo) as f64);
    let link_series: Vec<Vec<u64>> = (0..n).map(|k| wan.series(k, Direction::Up)).collect();
    let totals: Vec<u64> = link_series.iter().map(|s| s.iter().sum()).collect();
    let all: u64 = totals.iter().sum::<u64>().max(1);
    m.link_share_pct = totals.iter().map(|&t| 100.0 * t as f64 / all as f64).collect();
    m.recovery_s = recovery(scn, &link_series);
    if !after.2.is_empty() {
        let elapsed = epoch.elapsed().as_secs_f64();
        let ticks: u64 = after.2.iter().zip(&before.2).map(|(a, b)| a.cpu_ticks.saturating_sub(b.cpu_ticks)).sum();
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        m.controller_cpu_pct = Some(100.0 * ticks as f64 / hz / elapsed);
        m.controller_rss_mib = after.2.iter().map(|u| u.peak_rss_kib as f64 / 1024.0).reduce(f64::max);
    }
    Ok(SystemRun {
        system: system.label(),
        metrics: m,
        goodput_series,
        link_series: link_series
            .iter()
            .map(|s| s.iter().map(|&x| x as f64 * 8.0 / BUCKET.as_secs_f64() / 1e6).collect())
            .collect(),
        estimate_series,
    })
}

fn traffic_run(
    t: &Traffic,
    client: &Netns,
    srv: &Netns,
    stream: Stream,
    epoch: Instant,
    d: Duration,
) -> Result<Outcome> {
    let bind = |port: u16| -> SocketAddr { format!("0.0.0.0:{port}").parse().unwrap() };
    match t {
        Traffic::TcpBulk { flows } => {
            // Data still in flight on a slow path when the senders stop counts.
            let stop = d + Duration::from_secs(2);
            let sink = BulkSink::start(srv, bind(BULK_PORT), stream.clone(), *flows, epoch, BUCKET, stop)?;
            traffic::bulk_send(client, server(BULK_PORT), stream, *flows, Amount::For(d), d)?;
            Ok(Outcome::Bulk { report: sink.join()?, timed: Some(d) })
        }
        Traffic::Transfer { size_mb } => {
            // The scenario's duration is the transfer's deadline.
            let sink = BulkSink::start(srv, bind(BULK_PORT), stream.clone(), 1, epoch, BUCKET, d)?;
            let bytes = (size_mb * 1e6) as u64;
            traffic::bulk_send(client, server(BULK_PORT), stream, 1, Amount::Bytes(bytes), d)?;
            Ok(Outcome::Bulk { report: sink.join()?, timed: None })
        }
        Traffic::UdpCbr { rate_mbit, size } => {
            let pps = (rate_mbit * 1e6 / 8.0 / (*size + 42) as f64).round().max(1.0) as u32;
            Ok(Outcome::Udp(traffic::udp_cbr(client, srv, server(UDP_PORT), pps, *size, d)?))
        }
        Traffic::UdpProbe { pps } => Ok(Outcome::Udp(traffic::udp_cbr(client, srv, server(UDP_PORT), *pps, 64, d)?)),
        Traffic::RequestResponse { request, response, count } => Ok(Outcome::Rr(traffic::request_response(
            client,
            srv,
            server(RR_PORT),
            stream,
            *request,
            *response,
            *count,
        )?)),
    }
}

/// Apply the scenario's events at their times (until the run finishes).
/// Returns how long the first concentrator restart kept it away.
fn apply_events(
    scn: &Scenario,
    bed: &Testbed,
    running: &systems::Running,
    epoch: Instant,
    finished: &AtomicBool,
) -> Result<Option<Duration>> {
    let wan = bed.wan();
    let mut shapes: Vec<(Shape, Shape)> = scn.links.iter().map(|l| (l.uplink(), l.downlink())).collect();
    let mut events: Vec<_> = scn.events.iter().collect();
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let mut rebinds = 0u16;
    let mut away = None;
    for e in events {
        let at = Duration::from_secs_f64(e.at_s);
        while epoch.elapsed() < at {
            if finished.load(Relaxed) {
                return Ok(away);
            }
            std::thread::sleep((at - epoch.elapsed()).min(Duration::from_millis(20)));
        }
        let link = || scn.links.iter().position(|l| Some(&l.name) == e.link.as_ref()).expect("validated");
        match e.action {
            Action::Down => wan.set_up(link(), false),
            Action::Up => wan.set_up(link(), true),
            Action::Rebind => {
                // A fresh range of public ports for each rebinding.
                rebinds = rebinds % 40 + 1;
                let lo = 20000 + 1000 * rebinds;
                bed.set_nat(0, Some((link(), lo..=lo + 999)))?;
            }
            Action::RestartConcentrator => {
                let gone = running.restart_concentrator(Duration::from_secs_f64(e.away_s.unwrap_or(0.0)))?;
                away.get_or_insert(gone);
            }
            Action::Set => {
                let k = link();
                shapes[k] = (e.apply(shapes[k].0.clone()), e.apply(shapes[k].1.clone()));
                wan.set(k, Direction::Up, &shapes[k].0)?;
                wan.set(k, Direction::Down, &shapes[k].1)?;
            }
        }
    }
    Ok(away)
}

/// Ask the client controller for its paths' rates every [`ESTIMATE_POLL`]
/// until the run finishes; per scenario link, (seconds since `epoch`,
/// Mbit/s). A failed query skips its sample (the series is an observation,
/// not a metric the run depends on), and a slow answer skips the ticks it
/// overran rather than bunching samples to catch up.
fn poll_estimates(
    scn: &Scenario,
    running: &systems::Running,
    epoch: Instant,
    finished: &AtomicBool,
) -> Vec<Vec<(f64, f64)>> {
    let mut series = vec![Vec::new(); scn.links.len()];
    let mut next = Duration::ZERO;
    loop {
        // Sleep in short steps so that the run's end stops the sampler promptly.
        while epoch.elapsed() < next && !finished.load(Relaxed) {
            std::thread::sleep(next.saturating_sub(epoch.elapsed()).min(Duration::from_millis(20)));
        }
        if finished.load(Relaxed) {
            return series;
        }
        let asked = epoch.elapsed();
        if let Some(status) = running.client_status() {
            // Stamped halfway through the query: the controller answered somewhere in it.
            let t = (asked + epoch.elapsed()).as_secs_f64() / 2.0;
            record_rates(scn, &status, t, &mut series);
        }
        while next <= epoch.elapsed() {
            next += ESTIMATE_POLL;
        }
    }
}

/// Append each link's rate in `status` at `t_s`: the subflow whose path has
/// the link's name (a link without one, e.g. while the connection is being
/// re-established, gets no sample).
fn record_rates(scn: &Scenario, status: &Status, t_s: f64, series: &mut [Vec<(f64, f64)>]) {
    for (l, s) in scn.links.iter().zip(series) {
        if let Some(f) = status.connections.iter().flat_map(|c| &c.subflows).find(|f| f.path == l.name) {
            s.push((t_s, f.rate_mbit));
        }
    }
}

/// Link `k`'s true uplink rate over the run, as steps (from `t_s`, Mbit/s)
/// starting at 0: the scenario's rate, changed by `set` events and 0 while
/// the link is `down`, as [`apply_events`] shapes it. From the scenario, not
/// the run, so that it is exact and the same for every system.
pub fn true_rate_steps(scn: &Scenario, k: usize) -> Vec<(f64, f64)> {
    let link = &scn.links[k];
    let mut events: Vec<_> = scn.events.iter().filter(|e| e.link.as_ref() == Some(&link.name)).collect();
    // Stable: events at the same time apply in file order, as in the run.
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let (mut rate, mut up) = (link.uplink().rate_mbit, true);
    let mut steps = vec![(0.0, rate)];
    for e in events {
        match e.action {
            Action::Down => up = false,
            Action::Up => up = true,
            Action::Set => rate = e.rate_mbit.unwrap_or(rate),
            Action::Rebind | Action::RestartConcentrator => continue,
        }
        let now = if up { rate } else { 0.0 };
        // One step per time, and only where the rate changes.
        if steps.last().is_some_and(|s| s.0 == e.at_s) {
            steps.pop();
        }
        if steps.last().is_none_or(|s| s.1 != now) {
            steps.push((e.at_s, now));
        }
    }
    steps
}

/// The links' summed true uplink rate averaged over the run (Mbit/s): the
/// capacity a run's goodput is a share of when rates change or links fail.
pub fn mean_capacity_mbit(scn: &Scenario) -> f64 {
    let d = scn.duration_s;
    let mean = |k: usize| {
        let steps = true_rate_steps(scn, k);
        let area: f64 = steps
            .iter()
            .enumerate()
            .map(|(i, &(t, r))| {
                let end = steps.get(i + 1).map_or(d, |s| s.0).min(d);
                (end - t.min(d)).max(0.0) * r
            })
            .sum();
        area / d
    };
    (0..scn.links.len()).map(mean).sum()
}

/// Link `k`'s true uplink rate at `t_s` (see [`true_rate_steps`]).
pub fn true_rate_mbit(scn: &Scenario, k: usize, t_s: f64) -> f64 {
    true_rate_steps(scn, k).iter().take_while(|s| s.0 <= t_s).last().map_or(0.0, |s| s.1)
}

/// Seconds from the first `down` event until the links still up carry 90 %
/// of their summed rate over a 0.5 s window (window start).
fn recovery(scn: &Scenario, link_series: &[Vec<u64>]) -> Option<f64> {
    let first = scn.events.iter().filter(|e| e.action == Action::Down).min_by(|a, b| a.at_s.total_cmp(&b.at_s))?;
    let mut up = vec![true; scn.links.len()];
    let mut rate: Vec<f64> = scn.links.iter().map(|l| l.rate_mbit).collect();
    let mut events: Vec<_> = scn.events.iter().filter(|e| e.at_s <= first.at_s).collect();
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    for e in events {
        let Some(k) = scn.links.iter().position(|l| Some(&l.name) == e.link.as_ref()) else { continue };
        match e.action {
            Action::Down => up[k] = false,
            Action::Up => up[k] = true,
            Action::Set => rate[k] = e.rate_mbit.unwrap_or(rate[k]),
            Action::Rebind | Action::RestartConcentrator => {}
        }
    }
    let surviving: f64 = (0..up.len()).filter(|&k| up[k]).map(|k| rate[k]).sum();
    let window = 5usize;
    let need = 0.9 * surviving * 1e6 / 8.0 * BUCKET.as_secs_f64() * window as f64;
    let start = (first.at_s / BUCKET.as_secs_f64()).ceil() as usize;
    let len = link_series.iter().map(|s| s.len()).max().unwrap_or(0);
    (start..len.saturating_sub(window)).find_map(|i| {
        let carried: u64 = link_series.iter().map(|s| s.iter().skip(i).take(window).sum::<u64>()).sum();
        (carried as f64 >= need).then(|| i as f64 * BUCKET.as_secs_f64() - first.at_s)
    })
}

#[derive(Default)]
struct TcpCounters {
    retrans: u64,
    ofo: u64,
}

/// The namespace's TCP retransmissions and out-of-order queueing events.
fn tcp_counters(ns: &Netns) -> Result<TcpCounters> {
    ns.run(|| {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
        let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
        Ok(TcpCounters {
            retrans: counter(&snmp, "Tcp", "RetransSegs").unwrap_or(0),
            ofo: counter(&netstat, "TcpExt", "TCPOFOQueue").unwrap_or(0)
                + counter(&netstat, "MPTcpExt", "OFOQueue").unwrap_or(0),
        })
    })
}

/// A counter from /proc/net/{snmp,netstat}: a header line and a value line per group.
fn counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_capacity_weighs_each_rate_by_how_long_it_held() {
        let scn: Scenario = toml::from_str(
            r#"
            duration_s = 20
            [[link]]
            name = "a"
            rate_mbit = 10
            [[link]]
            name = "b"
            rate_mbit = 30
            [[traffic]]
            kind = "tcp-bulk"
            [[event]]
            at_s = 10
            link = "b"
            action = "set"
            rate_mbit = 8
            "#,
        )
        .unwrap();
        assert!((mean_capacity_mbit(&scn) - (10.0 + 19.0)).abs() < 1e-9, "{}", mean_capacity_mbit(&scn));
    }

    #[test]
    fn counters_are_read_by_name() {
        let t = "Tcp: RtoAlgorithm RetransSegs\nTcp: 1 42\nUdp: InDatagrams\nUdp: 7\n";
        assert_eq!(counter(t, "Tcp", "RetransSegs"), Some(42));
        assert_eq!(counter(t, "Udp", "InDatagrams"), Some(7));
        assert_eq!(counter(t, "Tcp", "Nope"), None);
    }

    const TWO_LINKS: &str = r#"
        duration_s = 10
        [[link]]
        name = "fast"
        rate_mbit = 10
        [link.downlink]
        rate_mbit = 50
        [[link]]
        name = "slow"
        rate_mbit = 3
        [[traffic]]
        kind = "tcp-bulk"
        [[event]]
        at_s = 4
        link = "fast"
        action = "down"
        [[event]]
        at_s = 2
        link = "fast"
        action = "set"
        rate_mbit = 6
        [[event]]
        at_s = 5
        link = "fast"
        action = "set"
        rate_mbit = 8
        delay_ms = 30
        [[event]]
        at_s = 6
        link = "fast"
        action = "up"
        [[event]]
        at_s = 8
        link = "fast"
        action = "down"
        [[event]]
        at_s = 8
        link = "fast"
        action = "up"
        [[event]]
        at_s = 3
        link = "slow"
        action = "set"
        delay_ms = 40
    "#;

    /// Events in any file order; a `set` while down takes effect at `up`;
    /// a down and up at the same instant is no step; a `set` without a rate
    /// changes nothing; the downlink's rate is not the uplink's.
    #[test]
    fn the_true_rate_follows_set_down_and_up() {
        let scn: Scenario = toml::from_str(TWO_LINKS).unwrap();
        assert_eq!(true_rate_steps(&scn, 0), vec![(0.0, 10.0), (2.0, 6.0), (4.0, 0.0), (6.0, 8.0)]);
        assert_eq!(true_rate_steps(&scn, 1), vec![(0.0, 3.0)]);
        let at = |t: f64| true_rate_mbit(&scn, 0, t);
        assert_eq!(
            [at(0.0), at(1.99), at(2.0), at(3.9), at(4.0), at(5.5), at(6.0), at(8.0), at(9.9)],
            [10.0, 10.0, 6.0, 6.0, 0.0, 0.0, 8.0, 8.0, 8.0]
        );
        assert_eq!(true_rate_mbit(&scn, 1, 9.0), 3.0);
    }

    fn subflow(path: &str, rate_mbit: f64) -> mptcp_user::status::SubflowStatus {
        mptcp_user::status::SubflowStatus {
            id: 0,
            path: path.into(),
            state: mptcp_user::status::SubflowState::Up,
            rate_mbit,
            ..Default::default()
        }
    }

    /// Subflows are matched to links by path name, whatever their order; a
    /// link the answer lacks gets no sample.
    #[test]
    fn rates_are_recorded_by_path_name() {
        let scn: Scenario = toml::from_str(TWO_LINKS).unwrap();
        let status = |subflows| Status {
            instance: "c0".into(),
            mode: None,
            role: None,
            bond: None,
            controller_pid: None,
            policy: String::new(),
            connections: vec![mptcp_user::status::ConnectionStatus { token: "1".into(), prefixes: vec![], subflows }],
            drops: Default::default(),
            control: Default::default(),
            ..Default::default()
        };
        let mut series = vec![Vec::new(); 2];
        record_rates(&scn, &status(vec![subflow("slow", 2.5), subflow("fast", 9.5)]), 0.25, &mut series);
        record_rates(&scn, &status(vec![subflow("fast", 9.8)]), 0.5, &mut series);
        assert_eq!(series, vec![vec![(0.25, 9.5), (0.5, 9.8)], vec![(0.25, 2.5)]]);
    }
}
