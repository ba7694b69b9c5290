//! Medians over runs, the markdown table and the machine-readable summary.

use mptcp_testbed::traffic::median;
use serde::Serialize;

use crate::cost::Cost;
use crate::run::{Metrics, SystemRun};
use crate::scenario::Scenario;

/// One system's medians over all runs.
#[derive(Clone, Debug, Serialize)]
pub struct SystemSummary {
    pub system: String,
    pub runs: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
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
            let of: Vec<&Metrics> = runs.iter().flatten().filter(|s| &s.system == label).map(|s| &s.metrics).collect();
            SystemSummary { system: label.clone(), runs: of.len(), metrics: median_metrics(&of) }
        })
        .collect();
    Summary {
        scenario: scn.name().to_string(),
        description: scn.description.clone(),
        runs: runs.len(),
        capacity_mbit: scn.capacity_mbit(),
        tcp_congestion: scn.tcp_congestion.clone(),
        links: scn.links.iter().map(|l| l.name.clone()).collect(),
        has_failure: scn.events.iter().any(|e| e.action == crate::scenario::Action::Down),
        systems,
        datapath_cost: cost,
    }
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
    let cols: [Col; 16] = [
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
        "Summed uplink capacity {:.1} Mbit/s; end hosts' TCP: {}; medians of {} run(s). Produced by `{command}`.\n\n",
        s.capacity_mbit, s.tcp_congestion, s.runs
    );
    out += "| System |";
    for c in &cols {
        out += &format!(" {} |", c.0);
    }
    out += &format!(" Link share % ({}) |\n|---|", s.links.join(" / "));
    out += &"---:|".repeat(cols.len() + 1);
    out += "\n";
    for sys in &s.systems {
        out += &format!("| {} |", sys.system);
        for c in &cols {
            let v = (c.1)(&sys.metrics);
            let text = if c.0 == "Recovery s" && v.is_none() { "never".into() } else { cell(v, c.2) };
            out += &format!(" {text} |");
        }
        let shares: Vec<String> = sys.metrics.link_share_pct.iter().map(|p| format!("{p:.0}")).collect();
        out += &format!(" {} |\n", shares.join(" / "));
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
}
