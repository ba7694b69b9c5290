//! Traffic classes from the configuration: `[[class]]` tables with a name, a
//! policy and `[[class.match]]` rules, compiled into the data path's
//! `CLASS_POLICY` and `CLASS_RULES` maps. Class 0 is the default class (the
//! top-level `policy`); configured classes follow in file order, and their
//! rules are evaluated in file order, the first match winning.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use mptcp_common::classify::{ClassRule, DSCP_ANY, IPPROTO_TCP, IPPROTO_UDP};
use mptcp_common::maps::{PathState, MAX_CLASSES, MAX_RULES, MAX_SUBFLOWS};
use mptcp_common::policy::auto_policy;
use mptcp_common::wire::{FAMILY_V4, FAMILY_V6};
use mptcp_common::{ClassPolicy, Policy};
use serde::{Deserialize, Serialize};

use crate::bpfmaps::DataPathMaps;
use crate::config::PolicyName;

/// The name of class 0.
pub const DEFAULT_CLASS_NAME: &str = "default";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// How `policy set --class` and `status` name it.
    pub name: String,
    /// Its policy (the values of the top-level `policy`).
    pub policy: PolicyName,
    /// flowlet only: the policy that places a flow when it may move (default min-rtt).
    pub base: Option<PolicyName>,
    /// The rules that select this class; every field set in one rule must match.
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// "tcp", "udp", "icmp", "icmpv6" or an IP protocol number.
    pub protocol: Option<Protocol>,
    /// The source port: one, or an inclusive range, e.g. "443" or "5060-5070".
    pub sport: Option<PortRange>,
    /// The destination port, likewise.
    pub dport: Option<PortRange>,
    /// DiffServ code point, 0..=63 (e.g. 46 = EF).
    pub dscp: Option<u8>,
    /// Inner destination prefix.
    pub destination: Option<IpNet>,
}

/// Classes ready for the maps: names and policies by class id, and the rules.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassPlan {
    pub names: Vec<String>,
    pub policies: Vec<ClassPolicy>,
    pub rules: Vec<ClassRule>,
}

/// An IP protocol, by name or number, checked when the config is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Protocol(pub u8);

impl std::str::FromStr for Protocol {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Protocol> {
        parse_protocol(s).map(Protocol)
    }
}

impl TryFrom<String> for Protocol {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Protocol, String> {
        s.parse().map_err(|e| format!("{e:#}"))
    }
}

impl From<Protocol> for String {
    fn from(p: Protocol) -> String {
        match p.0 {
            IPPROTO_TCP => "tcp".into(),
            IPPROTO_UDP => "udp".into(),
            1 => "icmp".into(),
            58 => "icmpv6".into(),
            n => n.to_string(),
        }
    }
}

/// An inclusive port range ("443" or "5060-5070"), checked when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl std::str::FromStr for PortRange {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<PortRange> {
        parse_ports(s).map(|(lo, hi)| PortRange { lo, hi })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<PortRange, String> {
        s.parse().map_err(|e| format!("{e:#}"))
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        if r.lo == r.hi {
            r.lo.to_string()
        } else {
            format!("{}-{}", r.lo, r.hi)
        }
    }
}

fn parse_protocol(s: &str) -> Result<u8> {
    Ok(match s {
        "tcp" => IPPROTO_TCP,
        "udp" => IPPROTO_UDP,
        "icmp" => 1,
        "icmpv6" => 58,
        n => match n.parse::<u8>() {
            Ok(v) if v != 0 => v,
            _ => bail!("protocol {s:?}: use tcp, udp, icmp, icmpv6 or a protocol number 1..=255"),
        },
    })
}

fn parse_ports(s: &str) -> Result<(u16, u16)> {
    let bad = || format!("port range {s:?}: use a port (443) or an inclusive range (5000-5100)");
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().with_context(bad)?, b.trim().parse::<u16>().with_context(bad)?),
        None => {
            let p = s.trim().parse::<u16>().with_context(bad)?;
            (p, p)
        }
    };
    if lo > hi {
        bail!("port range {s:?} is empty (the first port is above the last)");
    }
    Ok((lo, hi))
}

/// A class's policy value; `base` only with flowlet. Auto stands for
/// min-rtt until [`follow_auto`] has seen the connections' paths.
pub fn class_policy(policy: Policy, base: Option<Policy>) -> Result<ClassPolicy> {
    let mut cp = match policy {
        Policy::Auto => ClassPolicy::auto(Policy::MinRtt),
        p => ClassPolicy::new(p),
    };
    match (policy, base) {
        (Policy::Flowlet, Some(b)) => {
            if !b.is_base() {
                bail!("base policy {} cannot place flows for flowlet; use min-rtt, active-backup, weighted or earliest-arrival", b.name());
            }
            cp = cp.with_base(b);
        }
        (_, Some(_)) => bail!("`base` is for flowlet classes only"),
        _ => {}
    }
    Ok(cp)
}

fn rule(class: u8, m: &MatchConfig) -> Result<ClassRule> {
    let mut r = ClassRule { class, ..Default::default() };
    if let Some(p) = m.protocol {
        r.proto = p.0;
    }
    if let Some(p) = m.sport {
        (r.sport_lo, r.sport_hi) = (p.lo, p.hi);
    }
    if let Some(p) = m.dport {
        (r.dport_lo, r.dport_hi) = (p.lo, p.hi);
    }
    if (m.sport.is_some() || m.dport.is_some()) && r.proto != IPPROTO_TCP && r.proto != IPPROTO_UDP {
        bail!("ports only match TCP or UDP: add protocol = \"tcp\" or \"udp\"");
    }
    if let Some(d) = m.dscp {
        if d > 63 {
            bail!("dscp {d} is out of range 0..=63");
        }
        r.dscp = d;
    } else {
        r.dscp = DSCP_ANY;
    }
    if let Some(net) = m.destination {
        let net = net.trunc();
        r.prefix_len = net.prefix_len();
        match net.addr() {
            IpAddr::V4(a) => {
                r.family = FAMILY_V4;
                r.prefix[..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                r.family = FAMILY_V6;
                r.prefix = a.octets();
            }
        }
    }
    if m.protocol.is_none() && m.sport.is_none() && m.dport.is_none() && m.dscp.is_none() && m.destination.is_none() {
        bail!("an empty match would take every packet; name at least one of protocol, sport, dport, dscp, destination");
    }
    Ok(r)
}

/// Check and compile the configured classes behind the default class's `policy`.
pub fn plan(default_policy: Policy, classes: &[ClassConfig]) -> Result<ClassPlan> {
    let mut plan = ClassPlan {
        names: vec![DEFAULT_CLASS_NAME.to_string()],
        policies: vec![class_policy(default_policy, None)?],
        rules: Vec::new(),
    };
    if classes.len() >= MAX_CLASSES as usize {
        bail!("{} classes configured; at most {} besides the default class", classes.len(), MAX_CLASSES - 1);
    }
    for c in classes {
        let id = plan.names.len() as u8;
        let ctx = || format!("class {:?}", c.name);
        if c.name.is_empty() || plan.names.contains(&c.name) {
            bail!("class name {:?} is empty or used twice (\"{DEFAULT_CLASS_NAME}\" is the default class)", c.name);
        }
        plan.policies.push(class_policy(c.policy.0, c.base.map(|b| b.0)).with_context(ctx)?);
        if c.matches.is_empty() {
            bail!("class {:?} has no [[class.match]] rule, so no packet could reach it", c.name);
        }
        for (i, m) in c.matches.iter().enumerate() {
            plan.rules.push(rule(id, m).with_context(|| format!("class {:?}, match {}", c.name, i + 1))?);
        }
        plan.names.push(c.name.clone());
    }
    if plan.rules.len() > MAX_RULES as usize {
        bail!("{} match rules configured; at most {MAX_RULES}", plan.rules.len());
    }
    Ok(plan)
}

/// Write the plan into the data path: policies and rules first, the rule
/// count last, so a packet never sees a rule pointing at an unset class.
pub fn install(maps: &mut DataPathMaps, plan: &ClassPlan) -> Result<()> {
    for (id, cp) in plan.policies.iter().enumerate() {
        maps.set_class_policy(id as u32, *cp)?;
    }
    for (i, r) in plan.rules.iter().enumerate() {
        maps.class_rules.set(i as u32, *r, 0)?;
    }
    let mut s = maps.settings.get(&0, 0)?;
    s.n_rules = plan.rules.len() as u16;
    maps.settings.set(0, s, 0)?;
    Ok(())
}

/// A class's policy as the operator reads it: "auto (earliest-arrival)".
pub fn describe(cp: ClassPolicy) -> String {
    match cp.is_auto() {
        true => format!("auto ({})", cp.policy().name()),
        false => cp.policy().name().to_string(),
    }
}

/// What auto stands for over these connections (each as its path states):
/// [`auto_policy`] where they all agree on earliest-arrival, else min-rtt.
/// The class policies are the data path's, shared by its connections: a
/// concentrator serving clients whose paths differ runs min-rtt for all.
pub fn auto_over<'a>(connections: impl IntoIterator<Item = &'a [PathState]>) -> Policy {
    let mut any = false;
    for states in connections {
        if !states.iter().any(|p| p.established()) {
            continue;
        }
        any = true;
        if auto_policy(states) != Policy::EarliestArrival {
            return Policy::MinRtt;
        }
    }
    if any {
        Policy::EarliestArrival
    } else {
        Policy::MinRtt
    }
}

/// Keep the classes set to auto on what it stands for now ([`auto_over`] the
/// data path's connections): one map write per class that changes, none
/// otherwise. Returns the policy auto stands for if a class changed.
pub fn follow_auto(maps: &mut DataPathMaps) -> Result<Option<Policy>> {
    let states: Vec<[PathState; MAX_SUBFLOWS]> =
        maps.connections.iter().filter_map(|e| e.ok()).map(|(_, c)| c.subflows.map(|s| s.path)).collect();
    let now = auto_over(states.iter().map(|s| &s[..]));
    let mut changed = None;
    for class in 0..MAX_CLASSES {
        let cp = maps.class_policy(class)?;
        if cp.is_auto() && cp.policy() != now {
            maps.set_class_policy(class, ClassPolicy::auto(now))?;
            changed = Some(now);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(toml_text: &str) -> Vec<ClassConfig> {
        #[derive(Deserialize)]
        struct F {
            class: Vec<ClassConfig>,
        }
        toml::from_str::<F>(toml_text).unwrap().class
    }

    #[test]
    fn classes_compile_in_order_behind_the_default() {
        let c = class(
            r#"
            [[class]]
            name = "voice"
            policy = "earliest-arrival"
            [[class.match]]
            protocol = "udp"
            dport = "5060-5070"
            [[class.match]]
            dscp = 46
            [[class]]
            name = "bulk"
            policy = "flowlet"
            base = "weighted"
            [[class.match]]
            destination = "10.8.0.0/16"
            "#,
        );
        let p = plan(Policy::MinRtt, &c).unwrap();
        assert_eq!(p.names, ["default", "voice", "bulk"]);
        assert_eq!(p.policies[2], ClassPolicy::new(Policy::Flowlet).with_base(Policy::Weighted));
        assert_eq!(p.rules.len(), 3);
        assert_eq!((p.rules[0].class, p.rules[0].proto, p.rules[0].dport_lo, p.rules[0].dport_hi), (1, 17, 5060, 5070));
        assert_eq!((p.rules[1].class, p.rules[1].dscp, p.rules[1].proto), (1, 46, 0));
        assert_eq!((p.rules[2].class, p.rules[2].family, p.rules[2].prefix_len), (2, FAMILY_V4, 16));
        assert_eq!(&p.rules[2].prefix[..4], &[10, 8, 0, 0]);
    }

    #[test]
    fn auto_stands_for_what_every_connection_agrees_on() {
        use mptcp_common::maps::{PATH_ESTABLISHED, PATH_UP};
        let at = |owd_us: u32| PathState { flags: PATH_ESTABLISHED | PATH_UP, owd_us, ..Default::default() };
        let unequal = [at(500), at(12_500)];
        let equal = [at(500), at(900)];
        assert_eq!(auto_over([&unequal[..]]), Policy::EarliestArrival);
        assert_eq!(auto_over([&equal[..]]), Policy::MinRtt);
        assert_eq!(auto_over([&unequal[..], &equal[..]]), Policy::MinRtt);
        // Connections without an established path, or none: min-rtt, and
        // they do not outvote the others.
        let none = [PathState::default(); 2];
        assert_eq!(auto_over([&none[..]]), Policy::MinRtt);
        assert_eq!(auto_over([&unequal[..], &none[..]]), Policy::EarliestArrival);
        assert_eq!(auto_over(std::iter::empty::<&[PathState]>()), Policy::MinRtt);
        // Set to auto, a class runs min-rtt until the paths are seen.
        let cp = class_policy(Policy::Auto, None).unwrap();
        assert_eq!((cp.chosen(), cp.policy()), (Policy::Auto, Policy::MinRtt));
        assert!(class_policy(Policy::Flowlet, Some(Policy::Auto)).is_err(), "flowlet's base must be a policy");
    }

    #[test]
    fn the_example_client_config_has_valid_classes() {
        let c: crate::config::Config = toml::from_str(include_str!("../../scripts/client.toml")).unwrap();
        let p = c.class_plan().unwrap();
        assert_eq!(p.names, ["default", "voice"]);
        assert_eq!(p.rules.len(), 2);
    }

    #[test]
    fn bad_classes_are_refused_naming_the_cause() {
        // A bad value is refused as the config is read; the rest when planned.
        let err = |t: &str| {
            #[derive(Deserialize)]
            struct F {
                class: Vec<ClassConfig>,
            }
            match toml::from_str::<F>(t) {
                Err(e) => e.to_string(),
                Ok(f) => format!("{:#}", plan(Policy::MinRtt, &f.class).unwrap_err()),
            }
        };
        let head = "[[class]]\nname = \"x\"\npolicy = \"min-rtt\"\n";
        assert!(err(head).contains("no [[class.match]]"));
        assert!(err(&format!("{head}[[class.match]]\ndport = \"80\"")).contains("only match TCP or UDP"));
        assert!(err(&format!("{head}[[class.match]]\nprotocol = \"tcp\"\ndport = \"90-80\"")).contains("empty"));
        assert!(err(&format!("{head}[[class.match]]\ndscp = 64")).contains("out of range"));
        assert!(err(&format!("{head}[[class.match]]\nprotocol = \"sctp\"")).contains("protocol"));
        assert!(err(&format!("{head}[[class.match]]\n")).contains("empty match"));
        assert!(err("[[class]]\nname = \"default\"\npolicy = \"min-rtt\"\n[[class.match]]\ndscp = 1")
            .contains("used twice"));
        assert!(err("[[class]]\nname = \"y\"\npolicy = \"min-rtt\"\nbase = \"weighted\"\n[[class.match]]\ndscp = 1")
            .contains("flowlet classes only"));
        assert!(err("[[class]]\nname = \"y\"\npolicy = \"nope\"\n[[class.match]]\ndscp = 1").contains("unknown policy"));
    }
}
