//! Prometheus metrics (`/metrics` of `up --http ADDR`): the instance's
//! status in Prometheus' text format, rendered by a pure function.

use std::fmt::Write as _;

use crate::status::Status;

/// A label value as the text format wants it: backslash, quote and
/// newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', r#"\""#).replace('\n', r"\n")
}

/// The metrics text: one family at a time, each with its HELP and TYPE.
/// Every sample carries `mptcp_instance`, the instance's name (`instance`
/// is Prometheus' own label, the scraped target).
struct Families {
    out: String,
    instance: String,
}

impl Families {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut l = format!("mptcp_instance=\"{}\"", escape(&self.instance));
        for (k, v) in labels {
            let _ = write!(l, ",{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(self.out, "{name}{{{l}}} {value}");
    }
}

/// `s` in Prometheus' text exposition format.
pub fn render(s: &Status) -> String {
    let mut m = Families { out: String::new(), instance: s.instance.clone() };
    m.family("mptcp_controller_up", "gauge", "1 while the instance's controller runs.");
    m.sample("mptcp_controller_up", &[], if s.controller_pid.is_some() { 1.0 } else { 0.0 });
    m.family(
        "mptcp_policy_info",
        "gauge",
        "Each traffic class's policy, as labels (the default class's in native mode).",
    );
    if s.classes.is_empty() {
        m.sample("mptcp_policy_info", &[("class", "default"), ("policy", &s.policy)], 1.0);
    }
    for c in &s.classes {
        m.sample("mptcp_policy_info", &[("class", &c.name), ("policy", &c.policy)], 1.0);
    }

    type Field = fn(&crate::status::SubflowStatus) -> f64;
    let subflow_families: [(&str, &str, &str, Field); 11] = [
        ("mptcp_subflow_up", "gauge", "1 while the subflow is up.", |f| {
            (f.state == crate::status::SubflowState::Up) as u8 as f64
        }),
        ("mptcp_subflow_backup", "gauge", "1 while the subflow is a backup.", |f| f.backup as u8 as f64),
        ("mptcp_subflow_rtt_seconds", "gauge", "Smoothed round-trip time.", |f| f.srtt_us as f64 / 1e6),
        ("mptcp_subflow_one_way_delay_seconds", "gauge", "One-way propagation delay estimate.", |f| {
            f.owd_us as f64 / 1e6
        }),
        ("mptcp_subflow_rate_bits_per_second", "gauge", "The rate the scheduler uses (hint or estimate).", |f| {
            f.rate_mbit * 1e6
        }),
        ("mptcp_subflow_loss_ratio", "gauge", "Receive-side loss.", |f| f.rx_loss),
        ("mptcp_subflow_tx_bytes_total", "counter", "Bytes sent (native mode: acknowledged).", |f| f.tx_bytes as f64),
        ("mptcp_subflow_tx_packets_total", "counter", "Packets sent.", |f| f.tx_packets as f64),
        ("mptcp_subflow_rx_bytes_total", "counter", "Bytes received.", |f| f.rx_bytes as f64),
        ("mptcp_subflow_rx_packets_total", "counter", "Packets received.", |f| f.rx_packets as f64),
        ("mptcp_subflow_retransmits_total", "counter", "Retransmissions (native mode).", |f| f.retransmits as f64),
    ];
    for (name, kind, help, value) in subflow_families {
        m.family(name, kind, help);
        for c in &s.connections {
            for f in &c.subflows {
                let id = f.id.to_string();
                m.sample(name, &[("connection", &c.token), ("subflow", &id), ("path", &f.path)], value(f));
            }
        }
    }
    if !s.paths.is_empty() {
        m.family("mptcp_path_up", "gauge", "1 while the native path has its endpoint.");
        for p in &s.paths {
            m.sample("mptcp_path_up", &[("path", &p.name)], p.endpoint.is_some() as u8 as f64);
        }
        m.family("mptcp_path_probe_rtt_seconds", "gauge", "The native path's probe round trip.");
        for p in &s.paths {
            m.sample("mptcp_path_probe_rtt_seconds", &[("path", &p.name)], p.srtt_us as f64 / 1e6);
        }
    }
    if !s.caps.is_empty() {
        type Cap = fn(&mptcp_common::status::CapStatus) -> f64;
        let cap_families: [(&str, &str, Cap); 4] = [
            ("mptcp_path_budget_bytes", "The path's data cap per period.", |c| c.budget_bytes as f64),
            ("mptcp_path_used_bytes", "What the path used of its data cap this period.", |c| c.used_bytes as f64),
            ("mptcp_path_budget_spent", "1 while the path's data cap is spent.", |c| c.spent as u8 as f64),
            ("mptcp_path_budget_renews_timestamp_seconds", "When the path's data cap renews (Unix time).", |c| {
                c.renews_at as f64
            }),
        ];
        for (name, help, value) in cap_families {
            m.family(name, "gauge", help);
            for c in &s.caps {
                m.sample(name, &[("path", &c.path)], value(c));
            }
        }
    }
    m.family("mptcp_drops_total", "counter", "Packets the data path dropped, by reason.");
    for (reason, n) in &s.drops {
        m.sample("mptcp_drops_total", &[("reason", reason)], *n as f64);
    }
    m.family("mptcp_control_total", "counter", "Control-plane events, by kind.");
    for (event, n) in &s.control {
        m.sample("mptcp_control_total", &[("event", event)], *n as f64);
    }
    m.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ConnectionStatus, SubflowState, SubflowStatus};

    #[test]
    fn every_family_has_help_and_type_and_labels_are_escaped() {
        let s = Status {
            instance: "home\"1".into(),
            controller_pid: Some(7),
            policy: "min-rtt".into(),
            connections: vec![ConnectionStatus {
                token: "abcd".into(),
                prefixes: vec![],
                subflows: vec![SubflowStatus {
                    id: 1,
                    path: "lte".into(),
                    state: SubflowState::Up,
                    srtt_us: 42_000,
                    tx_packets: 10,
                    ..Default::default()
                }],
            }],
            drops: [("forged".to_string(), 3)].into(),
            caps: vec![mptcp_common::status::CapStatus {
                path: "lte".into(),
                budget_bytes: 20_000_000_000,
                used_bytes: 21_000_000_000,
                spent: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&s);
        assert!(text.contains(r#"mptcp_controller_up{mptcp_instance="home\"1"} 1"#), "{text}");
        assert!(
            text.contains(
                r#"mptcp_subflow_rtt_seconds{mptcp_instance="home\"1",connection="abcd",subflow="1",path="lte"} 0.042"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"mptcp_subflow_tx_packets_total{mptcp_instance="home\"1",connection="abcd",subflow="1",path="lte"} 10"#
        ));
        assert!(text.contains(r#"mptcp_drops_total{mptcp_instance="home\"1",reason="forged"} 3"#));
        assert!(text.contains(r#"mptcp_path_used_bytes{mptcp_instance="home\"1",path="lte"} 21000000000"#), "{text}");
        assert!(text.contains(r#"mptcp_path_budget_spent{mptcp_instance="home\"1",path="lte"} 1"#));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
        }
    }

    /// The Grafana dashboard in `scripts/` asks only for metrics that exist.
    #[test]
    fn the_grafana_dashboard_uses_only_metrics_we_serve() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../scripts/grafana-dashboard.json")).expect("the dashboard is JSON");
        let full = Status {
            connections: vec![ConnectionStatus {
                token: "abcd".into(),
                prefixes: vec![],
                subflows: vec![SubflowStatus { id: 0, path: "dsl".into(), ..Default::default() }],
            }],
            paths: vec![mptcp_common::status::PathStatus {
                name: "wifi".into(),
                interface: "wlan0".into(),
                address: None,
                endpoint: None,
                state: SubflowState::Down,
                backup: false,
                srtt_us: 0,
                probes_answered: None,
                cap_mbit: None,
            }],
            caps: vec![mptcp_common::status::CapStatus { path: "dsl".into(), ..Default::default() }],
            ..Default::default()
        };
        let text = render(&full);
        let mut used = 0;
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("an expression");
                for name in
                    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("mptcp_"))
                {
                    if name == "mptcp_instance" {
                        continue;
                    }
                    used += 1;
                    assert!(
                        text.contains(&format!("# TYPE {name} ")),
                        "panel {:?} asks for {name}, which we do not serve",
                        panel["title"]
                    );
                }
            }
        }
        assert!(used >= 13, "the dashboard's panels name our metrics ({used})");
    }
}
