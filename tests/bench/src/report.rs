//! Medians over runs, the markdown table and the machine-readable summary.

use mptcp_testbed::traffic::median;
use serde::Serialize;

use crate::cost::Cost;
use crate::run::{true_rate_mbit, Metrics, SystemRun};
use crate::scenario::Scenario;

/// One system's medians over all runs.
#[derive(Clone, Debug, Serialize)]
pub struct SystemSummary {
    pub system: String,
    pub runs: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Per link, the median over runs of [`estimate_ratio`]: how close the
    /// controller's rate came to the link's true rate. Empty for systems
    /// without a controller; `None` for a link without samples.
    pub estimate_vs_true: Vec<Option<f64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub description: String,
    pub runs: usize,
    pub capacity_mbit: f64,
    /// The end hosts' TCP congestion control.
    pub tcp_congestion: String,
    pub links: Vec<String>,
    /// The scenario takes a link down, so recovery times apply.
    pub has_failure: bool,
    pub systems: Vec<SystemSummary>,
    pub datapath_cost: Option<Cost>,
}

/// Field by field median of the runs (absent values are skipped).
pub fn median_metrics(runs: &[&Metrics]) -> Metrics {
    let m = |f: fn(&Metrics) -> Option<f64>| median(runs.iter().filter_map(|r| f(r)));
    let links = runs.iter().map(|r| r.link_share_pct.len()).max().unwrap_or(0);
    Metrics {
        goodput_mbit: m(|r| r.goodput_mbit),
        capacity_share_pct: m(|r| r.capacity_share_pct),
        completion_s: m(|r| r.completion_s),
        link_share_pct: (0..links)
            .map(|k| median(runs.iter().filter_map(|r| r.link_share_pct.get(k).copied())).unwrap_or(0.0))
            .collect(),
        retrans_segs: m(|r| r.retrans_segs),
        reorder_events: m(|r| r.reorder_events),
        tcp_gap_ms: m(|r| r.tcp_gap_ms),
        udp_loss_pct: m(|r| r.udp_loss_pct),
        udp_p50_ms: m(|r| r.udp_p50_ms),
        udp_p95_ms: m(|r| r.udp_p95_ms),
        udp_p99_ms: m(|r| r.udp_p99_ms),
        udp_gap_ms: m(|r| r.udp_gap_ms),
        udp_late_pct: m(|r| r.udp_late_pct),
        rr_p50_ms: m(|r| r.rr_p50_ms),
        rr_p99_ms: m(|r| r.rr_p99_ms),
        recovery_s: m(|r| r.recovery_s),
        controller_cpu_pct: m(|r| r.controller_cpu_pct),
        controller_rss_mib: m(|r| r.controller_rss_mib),
        conc_away_s: m(|r| r.conc_away_s),
    }
}

pub fn summarize(scn: &Scenario, runs: &[Vec<SystemRun>], cost: Option<Cost>) -> Summary {
    let labels: Vec<String> = runs.first().map(|r| r.iter().map(|s| s.system.clone()).collect()).unwrap_or_default();
    let systems = labels
        .iter()
        .map(|label| {
            let runs: Vec<&SystemRun> = runs.iter().flatten().filter(|s| &s.system == label).collect();
            let of: Vec<&Metrics> = runs.iter().map(|s| &s.metrics).collect();
            SystemSummary {
                system: label.clone(),
                runs: of.len(),
                metrics: median_metrics(&of),
                estimate_vs_true: estimates_vs_true(scn, &runs),
            }
        })
        .collect();
    Summary {
        scenario: scn.name().to_string(),
        description: scn.description.clone(),
        runs: runs.len(),
        capacity_mbit: crate::run::mean_capacity_mbit(scn),
        tcp_congestion: scn.tcp_congestion.clone(),
        links: scn.links.iter().map(|l| l.name.clone()).collect(),
        has_failure: scn.events.iter().any(|e| e.action == crate::scenario::Action::Down),
        systems,
        datapath_cost: cost,
    }
}

/// How well a path's rate (hint or estimate, as the controller ran its
/// bucket) matched the link's true rate once settled: the median over the
/// run's second half of estimate / true rate, at the samples where the link
/// is up (a down link has no rate to find). A sample of an unknown rate (0)
/// counts as 0. With a steady true rate this is the estimate's median over
/// the half divided by that rate; with a `set` in the half, each sample is
/// held against the rate it was taken under. `None` without such samples.
pub fn estimate_ratio(scn: &Scenario, k: usize, series: &[(f64, f64)]) -> Option<f64> {
    let half = scn.duration_s / 2.0..=scn.duration_s;
    median(series.iter().filter(|s| half.contains(&s.0)).filter_map(|&(t, est)| {
        let truth = true_rate_mbit(scn, k, t);
        (truth > 0.0).then(|| est / truth)
    }))
}

/// Per link, the median over `runs` of [`estimate_ratio`]; empty when no
/// run has an estimate series (systems without a controller).
fn estimates_vs_true(scn: &Scenario, runs: &[&SystemRun]) -> Vec<Option<f64>> {
    if runs.iter().all(|r| r.estimate_series.is_empty()) {
        return Vec::new();
    }
    (0..scn.links.len())
        .map(|k| median(runs.iter().filter_map(|r| estimate_ratio(scn, k, r.estimate_series.get(k)?))))
        .collect()
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// Which columns carry data in this scenario (a column of dashes says nothing).
fn has(s: &Summary, f: fn(&Metrics) -> Option<f64>) -> bool {
    s.systems.iter().any(|x| f(&x.metrics).is_some())
}

pub fn markdown(s: &Summary, command: &str) -> String {
    type Col = (&'static str, fn(&Metrics) -> Option<f64>, usize);
    let cols: [Col; 17] = [
        ("Goodput Mbit/s", |m| m.goodput_mbit, 2),
        ("% of capacity", |m| m.capacity_share_pct, 1),
        ("Transfer s", |m| m.completion_s, 2),
        ("Retrans", |m| m.retrans_segs, 0),
        ("Reorder", |m| m.reorder_events, 0),
        ("TCP gap ms", |m| m.tcp_gap_ms, 0),
        ("UDP loss %", |m| m.udp_loss_pct, 2),
        ("UDP p50 ms", |m| m.udp_p50_ms, 1),
        ("UDP p99 ms", |m| m.udp_p99_ms, 1),
        ("UDP gap ms", |m| m.udp_gap_ms, 0),
        ("UDP late % (QUIC)", |m| m.udp_late_pct, 2),
        ("Req/resp p50 ms", |m| m.rr_p50_ms, 1),
        ("Req/resp p99 ms", |m| m.rr_p99_ms, 1),
        ("Recovery s", |m| m.recovery_s, 2),
        ("Conc. away s", |m| m.conc_away_s, 2),
        ("Ctrl CPU %", |m| m.controller_cpu_pct, 1),
        ("Ctrl RSS MiB", |m| m.controller_rss_mib, 1),
    ];
    let cols: Vec<&Col> = cols.iter().filter(|c| has(s, c.1) || c.0 == "Recovery s" && s.has_failure).collect();
    let mut out = format!("## {}\n\n{}\n\n", s.scenario, s.description);
    out += &format!(
        "Summed uplink capacity {:.1} Mbit/s (mean over the run); end hosts' TCP: {}; medians of {} run(s). Produced by `{command}`.\n\n",
        s.capacity_mbit, s.tcp_congestion, s.runs
    );
    out += "| System |";
    for c in &cols {
        out += &format!(" {} |", c.0);
    }
    // The controller's rate against the true one, for the systems that have a controller.
    let estimates = s.systems.iter().any(|x| x.estimate_vs_true.iter().any(Option::is_some));
    out += &format!(" Link share % ({}) |", s.links.join(" / "));
    if estimates {
        out += &format!(" Est/true ({}) |", s.links.join(" / "));
    }
    out += "\n|---|";
    out += &"---:|".repeat(cols.len() + 1 + usize::from(estimates));
    out += "\n";
    for sys in &s.systems {
        out += &format!("| {} |", sys.system);
        for c in &cols {
            let v = (c.1)(&sys.metrics);
            let text = if c.0 == "Recovery s" && v.is_none() { "never".into() } else { cell(v, c.2) };
            out += &format!(" {text} |");
        }
        let shares: Vec<String> = sys.metrics.link_share_pct.iter().map(|p| format!("{p:.0}")).collect();
        out += &format!(" {} |", shares.join(" / "));
        if estimates {
            let ratios: Vec<String> = sys.estimate_vs_true.iter().map(|r| cell(*r, 2)).collect();
            out += &format!(" {} |", if ratios.is_empty() { "–".into() } else { ratios.join(" / ") });
        }
        out += "\n";
    }
    if let Some(c) = &s.datapath_cost {
        out += &format!(
            "\nPer-packet cost of the eBPF programs (BPF_PROG_TEST_RUN, median of {} single runs each, in the kernel's own timer):\n\n\
             | Program | ns/packet | no-op of the same type | difference |\n|---|---:|---:|---:|\n\
             | egress (classify + schedule + encapsulate), tc | {:.0} | {:.0} | {:.0} |\n\
             | ingress (validate + account + decapsulate), XDP | {:.0} | {:.0} | {:.0} |\n",
            c.samples,
            c.egress_ns,
            c.noop_tc_ns,
            c.egress_ns - c.noop_tc_ns,
            c.ingress_ns,
            c.noop_xdp_ns,
            c.ingress_ns - c.noop_xdp_ns
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_skip_absent_values_and_average_even_counts() {
        let a = Metrics {
            goodput_mbit: Some(10.0),
            udp_gap_ms: None,
            link_share_pct: vec![60.0, 40.0],
            ..Default::default()
        };
        let b = Metrics {
            goodput_mbit: Some(12.0),
            udp_gap_ms: Some(5.0),
            link_share_pct: vec![50.0, 50.0],
            ..Default::default()
        };
        let m = median_metrics(&[&a, &b]);
        assert_eq!(m.goodput_mbit, Some(11.0));
        assert_eq!(m.udp_gap_ms, Some(5.0));
        assert_eq!(m.link_share_pct, vec![55.0, 45.0]);
        assert_eq!(m.completion_s, None);
    }

    /// `fast` drops from 10 to 5 Mbit/s at 7 s, `slow` (4 Mbit/s) goes down at 8 s.
    const SCENARIO: &str = r#"
        duration_s = 10
        [[link]]
        name = "fast"
        rate_mbit = 10
        [[link]]
        name = "slow"
        rate_mbit = 4
        [[traffic]]
        kind = "tcp-bulk"
        [[event]]
        at_s = 7
        link = "fast"
        action = "set"
        rate_mbit = 5
        [[event]]
        at_s = 8
        link = "slow"
        action = "down"
    "#;

    /// 95 % of the true rate before and after the `set`, an outlier, and
    /// samples outside the second half that must not count.
    fn fast() -> Vec<(f64, f64)> {
        vec![(1.0, 0.0), (4.9, 0.0), (5.0, 9.5), (6.0, 9.5), (7.0, 4.75), (8.0, 4.75), (9.0, 4.0), (10.5, 50.0)]
    }

    /// Unknown at first (0 counts), then 100 % and 90 %; the samples while down do not count.
    fn slow() -> Vec<(f64, f64)> {
        vec![(5.0, 0.0), (6.0, 4.0), (7.5, 3.6), (9.0, 3.0), (9.5, 1.0)]
    }

    fn run(system: &str, estimate_series: Vec<Vec<(f64, f64)>>) -> SystemRun {
        SystemRun {
            system: system.into(),
            metrics: Metrics { link_share_pct: vec![50.0, 50.0], ..Default::default() },
            goodput_series: vec![],
            link_series: vec![],
            estimate_series,
        }
    }

    #[test]
    fn the_estimate_is_held_against_the_true_rate_of_its_time_in_the_second_half() {
        let scn: Scenario = toml::from_str(SCENARIO).unwrap();
        let r = estimate_ratio(&scn, 0, &fast()).unwrap();
        assert!((r - 0.95).abs() < 1e-9, "{r}");
        let r = estimate_ratio(&scn, 1, &slow()).unwrap();
        assert!((r - 0.9).abs() < 1e-9, "{r}");
        assert_eq!(estimate_ratio(&scn, 0, &[(1.0, 10.0), (4.0, 10.0)]), None, "first half only");
        assert_eq!(estimate_ratio(&scn, 1, &[(8.5, 4.0)]), None, "down only");
    }

    #[test]
    fn the_report_shows_est_true_only_for_systems_with_a_series() {
        let scn: Scenario = toml::from_str(SCENARIO).unwrap();
        let runs = vec![vec![run("kernel-mptcp", vec![]), run("bond:min-rtt", vec![fast(), slow()])]];
        let s = summarize(&scn, &runs, None);
        assert_eq!(s.systems[0].estimate_vs_true, vec![]);
        let table = markdown(&s, "cmd");
        assert!(table.contains("| Link share % (fast / slow) | Est/true (fast / slow) |"), "{table}");
        let row = |system: &str| table.lines().find(|l| l.starts_with(&format!("| {system} |"))).unwrap();
        assert!(row("bond:min-rtt").ends_with("| 50 / 50 | 0.95 / 0.90 |"), "{table}");
        assert!(row("kernel-mptcp").ends_with("| 50 / 50 | – |"), "{table}");
        let without = summarize(&scn, &[vec![run("kernel-mptcp", vec![])]], None);
        assert!(!markdown(&without, "cmd").contains("Est/true"));
    }
}
