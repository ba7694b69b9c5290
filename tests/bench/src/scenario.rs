//! Scenario files: links, traffic, events and duration as TOML. Unknown fields
//! and impossible values are errors that name the field.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use mptcp_common::Policy;
use mptcp_testbed::wan::Shape;
use mptcp_user::config::parse_policy;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Defaults to the file name without extension.
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Seconds each system carries the traffic.
    pub duration_s: f64,
    #[serde(rename = "link")]
    pub links: Vec<LinkSpec>,
    #[serde(rename = "traffic")]
    pub traffic: Vec<Traffic>,
    #[serde(default, rename = "event")]
    pub events: Vec<Event>,
    /// Which systems to compare; default: all (see [`System`]).
    pub systems: Option<Vec<String>>,
    #[serde(default)]
    pub bond: BondSettings,
    /// Congestion control of the end hosts' TCP, set on every socket of the
    /// client and the server (every system alike; an MPTCP socket passes it to
    /// its subflows). Default "cubic", Linux's own default, so results do not
    /// depend on what the benchmarking host is set to; no sysctl is changed.
    /// BBR caps what it keeps in flight at twice the smallest path's
    /// bandwidth-delay product, which a bond under one TCP flow cannot fill.
    #[serde(default = "default_tcp_congestion")]
    pub tcp_congestion: String,
}

fn default_tcp_congestion() -> String {
    mptcp_testbed::traffic::DEFAULT_CONGESTION.into()
}

/// One emulated link between the client and the concentrator. The top-level
/// fields describe both directions; `downlink` overrides some of them for
/// concentrator → client.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub name: String,
    pub rate_mbit: f64,
    #[serde(default)]
    pub delay_ms: f64,
    #[serde(default)]
    pub jitter_ms: f64,
    #[serde(default)]
    pub loss_pct: f64,
    pub queue_ms: Option<f64>,
    /// Largest IP packet the path carries, both ways (a hop neither end can
    /// see; larger packets vanish without ICMP). Default: no limit.
    pub mtu: Option<u32>,
    /// The link crosses a NAT (the kernel's masquerade on the client's
    /// router), as behind a home router or an LTE carrier's CGNAT; `rebind`
    /// events need it. Once one link has it, every link goes through the
    /// router, those without it routed as public addresses.
    #[serde(default)]
    pub nat: bool,
    pub downlink: Option<ShapeOverride>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeOverride {
    pub rate_mbit: Option<f64>,
    pub delay_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub queue_ms: Option<f64>,
    pub mtu: Option<u32>,
}

impl ShapeOverride {
    fn apply(&self, mut s: Shape) -> Shape {
        s.rate_mbit = self.rate_mbit.unwrap_or(s.rate_mbit);
        s.delay_ms = self.delay_ms.unwrap_or(s.delay_ms);
        s.jitter_ms = self.jitter_ms.unwrap_or(s.jitter_ms);
        s.loss_pct = self.loss_pct.unwrap_or(s.loss_pct);
        s.queue_ms = self.queue_ms.unwrap_or(s.queue_ms);
        s.mtu = self.mtu.unwrap_or(s.mtu);
        s
    }

    fn is_empty(&self) -> bool {
        self.rate_mbit.is_none()
            && self.delay_ms.is_none()
            && self.jitter_ms.is_none()
            && self.loss_pct.is_none()
            && self.queue_ms.is_none()
            && self.mtu.is_none()
    }
}

impl LinkSpec {
    /// Client → concentrator.
    pub fn uplink(&self) -> Shape {
        Shape {
            rate_mbit: self.rate_mbit,
            delay_ms: self.delay_ms,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss_pct,
            queue_ms: self.queue_ms.unwrap_or(Shape::default().queue_ms),
            mtu: self.mtu.unwrap_or(0),
        }
    }

    /// Concentrator → client.
    pub fn downlink(&self) -> Shape {
        self.downlink.as_ref().map_or_else(|| self.uplink(), |o| o.apply(self.uplink()))
    }
}

/// What runs during the scenario; every entry runs at once, from t = 0.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Traffic {
    /// `flows` TCP streams from client to server for the whole duration.
    TcpBulk {
        #[serde(default = "one")]
        flows: usize,
    },
    /// One fixed transfer; its completion time is the metric. It must finish
    /// within `duration_s`, or it is reported as not completed.
    Transfer { size_mb: f64 },
    /// UDP at a constant bit rate: loss and one-way latency percentiles.
    UdpCbr {
        rate_mbit: f64,
        #[serde(default = "default_datagram")]
        size: usize,
    },
    /// A 1 kHz (by default) stream of small UDP probes: the longest silence
    /// is the failover gap.
    UdpProbe {
        #[serde(default = "default_probe_pps")]
        pps: u32,
    },
    /// Round trips of a small request and a larger response over one connection.
    RequestResponse {
        #[serde(default = "default_request")]
        request: usize,
        #[serde(default = "default_response")]
        response: usize,
        #[serde(default = "default_count")]
        count: usize,
    },
}

fn one() -> usize {
    1
}
fn default_datagram() -> usize {
    1200
}
fn default_probe_pps() -> u32 {
    1000
}
fn default_request() -> usize {
    100
}
fn default_response() -> usize {
    10_000
}
fn default_count() -> usize {
    200
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The link silently drops everything (its interfaces stay up).
    Down,
    Up,
    /// Change some of rate/delay/jitter/loss/mtu, both directions.
    Set,
    /// The link's NAT forgets its mappings and maps the client to a new
    /// public port from then on (a NAT reboot, a timed-out mapping, a CGNAT
    /// rebinding). Needs the link's `nat = true`.
    Rebind,
    /// The concentrator's controller is stopped (its data path removed, as on
    /// a reboot: nothing of its state survives) and started afresh after
    /// `away_s` (default 0). Bond systems only: the kernel's MPTCP has no
    /// concentrator.
    RestartConcentrator,
}

impl Action {
    /// Whether the action happens to one link (and names it).
    fn on_link(self) -> bool {
        !matches!(self, Action::RestartConcentrator)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at_s: f64,
    /// The link it happens to; none for `restart-concentrator`.
    pub link: Option<String>,
    pub action: Action,
    pub rate_mbit: Option<f64>,
    pub delay_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub mtu: Option<u32>,
    /// `restart-concentrator`: seconds the concentrator stays away.
    pub away_s: Option<f64>,
}

impl Event {
    pub fn change(&self) -> ShapeOverride {
        ShapeOverride {
            rate_mbit: self.rate_mbit,
            delay_ms: self.delay_ms,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss_pct,
            queue_ms: None,
            mtu: self.mtu,
        }
    }

    pub fn apply(&self, s: Shape) -> Shape {
        self.change().apply(s)
    }
}

/// How the bond's controllers are configured for the run.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BondSettings {
    /// Probe interval of both controllers (default: the controller's own).
    pub probe_interval_ms: Option<u64>,
    /// Missed probes before a path is declared down.
    pub down_after: Option<u32>,
    /// Give each path its link rate (× `rate_hint_pct` / 100) as the
    /// capacity hint, as an operator who knows their lines would. Off by
    /// default: the controllers estimate every path's rate, as they must
    /// on links whose rate nobody knows or that changes.
    #[serde(default)]
    pub rate_hints: bool,
    /// The hint as a percentage of the link rate (default 100: the buckets
    /// count bytes on the wire, headers included, as the links do).
    #[serde(default = "default_hint_pct")]
    pub rate_hint_pct: f64,
}

fn default_hint_pct() -> f64 {
    100.0
}

impl BondSettings {
    /// The capacity hint for a link of `rate_mbit`, if hints are on.
    pub fn hint_mbit(&self, rate_mbit: f64) -> Option<f64> {
        self.rate_hints.then_some(rate_mbit * self.rate_hint_pct / 100.0)
    }
}

impl Default for BondSettings {
    fn default() -> Self {
        BondSettings { probe_interval_ms: None, down_after: None, rate_hints: false, rate_hint_pct: default_hint_pct() }
    }
}

/// The policies native mode can run (the rest need a packet scheduler).
pub const NATIVE_POLICIES: [Policy; 3] = [Policy::Auto, Policy::ActiveBackup, Policy::MinRtt];

/// A system under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Plain TCP over the best link alone.
    SinglePath,
    /// The kernel's Multipath TCP: default scheduler, in-kernel path manager,
    /// one subflow endpoint per link; applications open IPPROTO_MPTCP sockets.
    KernelMptcp,
    /// mptcp-ebpf bond mode under one policy.
    Bond(Policy),
    /// mptcp-ebpf native mode (the kernel's MPTCP, its paths managed and
    /// probed by the controller) under one policy.
    Native(Policy),
}

impl System {
    pub fn label(&self) -> String {
        match self {
            System::SinglePath => "single-path".into(),
            System::KernelMptcp => "kernel-mptcp".into(),
            System::Bond(p) => format!("bond:{}", p.name()),
            System::Native(p) => format!("native:{}", p.name()),
        }
    }

    fn parse(s: &str) -> Result<Vec<System>> {
        Ok(match s {
            "single-path" => vec![System::SinglePath],
            "kernel-mptcp" => vec![System::KernelMptcp],
            "bond" => Policy::ALL.iter().map(|p| System::Bond(*p)).collect(),
            "native" => NATIVE_POLICIES.iter().map(|p| System::Native(*p)).collect(),
            _ => match (s.strip_prefix("bond:"), s.strip_prefix("native:")) {
                (Some(p), _) => vec![System::Bond(parse_policy(p).context("in systems")?)],
                (_, Some(p)) => {
                    let policy = parse_policy(p).context("in systems")?;
                    if !NATIVE_POLICIES.contains(&policy) {
                        bail!("system {s:?}: native mode cannot run {}", policy.name());
                    }
                    vec![System::Native(policy)]
                }
                _ => bail!("unknown system {s:?}; use single-path, kernel-mptcp, bond, bond:<policy>, native or native:<policy>"),
            },
        })
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read scenario {}", path.display()))?;
        let mut s: Scenario = toml::from_str(&text).with_context(|| format!("invalid scenario {}", path.display()))?;
        if s.name.is_none() {
            s.name = path.file_stem().map(|n| n.to_string_lossy().into_owned());
        }
        s.validate().with_context(|| format!("invalid scenario {}", path.display()))?;
        Ok(s)
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("scenario")
    }

    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "name {name:?} must be letters, digits, '-' or '_' (it names the report directory)"
        );
        ensure!(
            self.duration_s.is_finite() && (1.0..=600.0).contains(&self.duration_s),
            "duration_s must be within 1..600, not {}",
            self.duration_s
        );
        ensure!(!self.links.is_empty(), "at least one [[link]] is needed");
        ensure!(self.links.len() <= 8, "at most 8 links (the subflow limit), not {}", self.links.len());
        for (i, l) in self.links.iter().enumerate() {
            ensure!(!l.name.is_empty(), "link {i} has an empty name");
            ensure!(self.links[..i].iter().all(|o| o.name != l.name), "link name {:?} is used twice", l.name);
            ensure!(l.rate_mbit > 0.0, "link {:?}: rate_mbit must be positive", l.name);
            l.uplink().validate().with_context(|| format!("link {:?}", l.name))?;
            l.downlink().validate().with_context(|| format!("link {:?} downlink", l.name))?;
            ensure!(l.downlink().rate_mbit > 0.0, "link {:?}: downlink rate_mbit must be positive", l.name);
        }
        ensure!(!self.traffic.is_empty(), "at least one [[traffic]] is needed");
        ensure!(
            !self.tcp_congestion.is_empty()
                && self.tcp_congestion.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "tcp_congestion {:?} is not a congestion control name (e.g. \"cubic\", \"bbr\")",
            self.tcp_congestion
        );
        for t in &self.traffic {
            match t {
                Traffic::TcpBulk { flows } => ensure!((1..=64).contains(flows), "tcp-bulk flows must be 1..64"),
                Traffic::Transfer { size_mb } => {
                    ensure!(*size_mb > 0.0 && *size_mb <= 4096.0, "transfer size_mb must be within 0..4096")
                }
                Traffic::UdpCbr { rate_mbit, size } => {
                    ensure!(*rate_mbit > 0.0 && *rate_mbit <= 10_000.0, "udp-cbr rate_mbit must be within 0..10000");
                    ensure!((16..=1400).contains(size), "udp-cbr size must be within 16..1400 bytes");
                }
                Traffic::UdpProbe { pps } => ensure!((1..=100_000).contains(pps), "udp-probe pps must be 1..100000"),
                Traffic::RequestResponse { request, response, count } => {
                    ensure!(*request >= 1 && *response >= 1, "request-response sizes must be positive");
                    ensure!((1..=1_000_000).contains(count), "request-response count must be 1..1000000");
                }
            }
        }
        for e in &self.events {
            ensure!(
                e.at_s.is_finite() && e.at_s >= 0.0 && e.at_s < self.duration_s,
                "event at_s {} is outside the run (0..{})",
                e.at_s,
                self.duration_s
            );
            ensure!(
                e.away_s.is_none() || e.action == Action::RestartConcentrator,
                "event at {} s: only restart-concentrator takes away_s",
                e.at_s
            );
            if !e.action.on_link() {
                ensure!(e.link.is_none(), "event at {} s: {:?} names no link", e.at_s, e.action);
                ensure!(e.change().is_empty(), "event at {} s: {:?} takes no link settings", e.at_s, e.action);
                let away = e.away_s.unwrap_or(0.0);
                ensure!(
                    away.is_finite() && (0.0..=60.0).contains(&away),
                    "event at {} s: away_s must be within 0..60",
                    e.at_s
                );
                let systems = self.systems()?;
                if let Some(other) = systems.iter().find(|s| !matches!(s, System::Bond(_))) {
                    bail!(
                        "event at {} s: restart-concentrator applies to bond systems only, not {}; set systems = [\"bond\"]",
                        e.at_s,
                        other.label()
                    );
                }
                continue;
            }
            let name =
                e.link.as_deref().with_context(|| format!("event at {} s: {:?} needs a link", e.at_s, e.action))?;
            let link = self
                .links
                .iter()
                .find(|l| l.name == name)
                .with_context(|| format!("event at {} s names unknown link {name:?}", e.at_s))?;
            match e.action {
                Action::Set => {
                    ensure!(
                        !e.change().is_empty(),
                        "event at {} s: set needs rate_mbit, delay_ms, jitter_ms, loss_pct or mtu",
                        e.at_s
                    );
                    let s = e.apply(link.uplink());
                    s.validate().with_context(|| format!("event at {} s", e.at_s))?;
                    ensure!(s.rate_mbit > 0.0, "event at {} s: rate_mbit must be positive", e.at_s);
                }
                Action::Down | Action::Up | Action::Rebind => ensure!(
                    e.change().is_empty(),
                    "event at {} s: {:?} takes no rate/delay/jitter/loss/mtu",
                    e.at_s,
                    e.action
                ),
                Action::RestartConcentrator => unreachable!("handled above"),
            }
            ensure!(
                e.action != Action::Rebind || link.nat,
                "event at {} s: rebind needs nat = true on link {name:?}",
                e.at_s
            );
        }
        self.systems()?;
        Ok(())
    }

    /// The systems to run, in report order.
    pub fn systems(&self) -> Result<Vec<System>> {
        let names = self.systems.clone().unwrap_or_else(|| {
            ["single-path", "kernel-mptcp", "native", "bond"].iter().map(|s| s.to_string()).collect()
        });
        ensure!(!names.is_empty(), "systems is empty");
        let mut out = Vec::new();
        for n in &names {
            for s in System::parse(n)? {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Index of the best link for single-path TCP: highest rate, then lowest delay.
    pub fn best_link(&self) -> usize {
        let mut best = 0;
        for (i, l) in self.links.iter().enumerate() {
            let b = &self.links[best];
            if l.rate_mbit > b.rate_mbit || (l.rate_mbit == b.rate_mbit && l.delay_ms < b.delay_ms) {
                best = i;
            }
        }
        best
    }

    /// Whether some link crosses a NAT.
    pub fn any_nat(&self) -> bool {
        self.links.iter().any(|l| l.nat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario> {
        let mut s: Scenario = toml::from_str(text)?;
        s.name.get_or_insert_with(|| "t".into());
        s.validate()?;
        Ok(s)
    }

    const OK: &str = r#"
duration_s = 5
[[link]]
name = "a"
rate_mbit = 10
[[traffic]]
kind = "tcp-bulk"
"#;

    #[test]
    fn a_minimal_scenario_parses_with_defaults() {
        let s = parse(OK).unwrap();
        assert_eq!(s.links[0].uplink().queue_ms, 50.0);
        assert_eq!(s.systems().unwrap().len(), 2 + NATIVE_POLICIES.len() + Policy::ALL.len());
        assert_eq!(System::parse("native:min-rtt").unwrap(), vec![System::Native(Policy::MinRtt)]);
        let e = format!("{:#}", System::parse("native:redundant").unwrap_err());
        assert!(e.contains("native mode cannot run redundant"), "{e}");
        assert_eq!(s.tcp_congestion, "cubic");
        assert_eq!(s.bond.hint_mbit(10.0), None, "no hints unless asked for");
    }

    #[test]
    fn unknown_and_invalid_fields_are_named() {
        let e = format!("{:#}", parse(&OK.replace("rate_mbit = 10", "rate_mbit = 10\nspeed = 3")).unwrap_err());
        assert!(e.contains("speed"), "{e}");
        let e =
            format!("{:#}", parse(&OK.replace("kind = \"tcp-bulk\"", "kind = \"tcp-bulk\"\nflow = 2")).unwrap_err());
        assert!(e.contains("flow"), "{e}");
        let e = format!("{:#}", parse(&OK.replace("tcp-bulk", "tcp-bulky")).unwrap_err());
        assert!(e.contains("tcp-bulky"), "{e}");
        let e = format!("{:#}", parse(&OK.replace("rate_mbit = 10", "rate_mbit = 10\nloss_pct = 120")).unwrap_err());
        assert!(e.contains("loss_pct"), "{e}");
        let bad_event = format!("{OK}[[event]]\nat_s = 2\nlink = \"b\"\naction = \"down\"\n");
        let e = format!("{:#}", parse(&bad_event).unwrap_err());
        assert!(e.contains("unknown link \"b\""), "{e}");
        let late = format!("{OK}[[event]]\nat_s = 9\nlink = \"a\"\naction = \"down\"\n");
        assert!(format!("{:#}", parse(&late).unwrap_err()).contains("outside the run"));
        let cc = format!("tcp_congestion = \"cubic; reboot\"\n{OK}");
        assert!(format!("{:#}", parse(&cc).unwrap_err()).contains("tcp_congestion"));
        let sys = format!("systems = [\"bond:fastest\"]\n{OK}");
        assert!(format!("{:#}", parse(&sys).unwrap_err()).contains("unknown policy \"fastest\""));
    }

    #[test]
    fn field_events_are_checked() {
        let with = |extra: &str| parse(&format!("{OK}{extra}"));
        let rebind = "[[event]]\nat_s = 2\nlink = \"a\"\naction = \"rebind\"\n";
        assert!(format!("{:#}", with(rebind).unwrap_err()).contains("rebind needs nat = true on link \"a\""));
        let natted = OK.replace("rate_mbit = 10", "rate_mbit = 10\nnat = true");
        assert!(parse(&format!("{natted}{rebind}")).unwrap().any_nat());
        let restart = "[[event]]\nat_s = 2\naction = \"restart-concentrator\"\naway_s = 1\n";
        assert!(format!("{:#}", with(restart).unwrap_err()).contains("bond systems only"));
        let s = parse(&format!("systems = [\"bond\"]\n{OK}{restart}")).unwrap();
        assert_eq!(s.events[0].away_s, Some(1.0));
        let on_link = restart.replace("away_s = 1", "link = \"a\"");
        assert!(format!("{:#}", parse(&format!("systems = [\"bond\"]\n{OK}{on_link}")).unwrap_err())
            .contains("names no link"));
        let no_link = "[[event]]\nat_s = 2\naction = \"down\"\n";
        assert!(format!("{:#}", with(no_link).unwrap_err()).contains("needs a link"));
        let mtu = "[[event]]\nat_s = 2\nlink = \"a\"\naction = \"set\"\nmtu = 1380\n";
        assert_eq!(with(mtu).unwrap().events[0].apply(Shape::default()).mtu, 1380);
        assert!(format!("{:#}", with(&mtu.replace("1380", "100")).unwrap_err()).contains("mtu"));
        let link_mtu = parse(&OK.replace("rate_mbit = 10", "rate_mbit = 10\nmtu = 1400")).unwrap();
        assert_eq!((link_mtu.links[0].uplink().mtu, link_mtu.links[0].downlink().mtu), (1400, 1400));
    }

    #[test]
    fn downlink_overrides_only_what_it_names() {
        let s = parse(&OK.replace("rate_mbit = 10", "rate_mbit = 10\ndelay_ms = 7\n[link.downlink]\nrate_mbit = 30"))
            .unwrap();
        let (up, down) = (s.links[0].uplink(), s.links[0].downlink());
        assert_eq!((up.rate_mbit, up.delay_ms), (10.0, 7.0));
        assert_eq!((down.rate_mbit, down.delay_ms), (30.0, 7.0));
    }

    #[test]
    fn every_shipped_scenario_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Scenario::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 4, "expected the shipped scenarios in {}", dir.display());
    }
}
