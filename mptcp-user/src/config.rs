//! Configuration: a TOML file (`up --config FILE`) or, for the common case,
//! command-line flags. Unknown fields are errors, and every check names the
//! field it rejects.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use mptcp_common::{wire::DEFAULT_PORT, Policy};
use serde::{Deserialize, Serialize};

use crate::key::Key;

/// Which end of the bond this host is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Opens the connection to a concentrator over every path.
    Client,
    /// Accepts connections from clients and routes their prefixes.
    Concentrator,
}

/// How the paths are bonded.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Our tunnel between a client and a concentrator, scheduled per packet
    /// by the eBPF data path.
    #[default]
    Bond,
    /// The kernel's own Multipath TCP (RFC 8684) end to end with any MPTCP
    /// peer: the controller manages its subflows (a client opens one per
    /// path; a concentrator, the server side, announces each path's address).
    Mptcp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which end of the bond this host is.
    pub role: Role,
    /// How the paths are bonded.
    #[serde(default)]
    pub mode: Mode,
    /// Pins live under /sys/fs/bpf/mptcp-ebpf/<instance>/.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// The file holding the key both ends share (hex, as `mptcp-user
    /// genkey` writes it; readable by its owner only).
    pub key_file: Option<std::path::PathBuf>,
    /// The concentrator's UDP port (a client's paths send from ports the
    /// kernel draws, one per path).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The default class's scheduling policy, switched at runtime with
    /// `mptcp-user policy set`: `auto` runs earliest-arrival where the
    /// paths' delays differ (or their rates are known) and min-rtt where not;
    /// the others are described in the README's "Policies".
    #[serde(default = "default_policy")]
    pub policy: PolicyName,
    /// The bond device and what is routed into it.
    #[serde(default)]
    pub bond: BondConfig,
    /// How each subflow's path is probed and given up.
    #[serde(default)]
    pub probe: ProbeConfig,
    /// The uplinks: a client's paths to the concentrator, a concentrator's
    /// listening interfaces, or native mode's paths.
    #[serde(default, rename = "path")]
    pub paths: Vec<PathConfig>,
    /// Traffic classes besides the default one (which uses `policy`).
    #[serde(default, rename = "class")]
    pub classes: Vec<crate::classes::ClassConfig>,
    /// Concentrator: the clients it serves, each with a key of its own and
    /// the prefixes it may announce. Without any, every client shares
    /// `key_file` and may announce any prefix.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
    /// Serve the live status page on `http://ADDR/` and Prometheus metrics on
    /// `http://ADDR/metrics` (none by default; no authentication: bind it to
    /// loopback or a management network).
    #[serde(default)]
    pub http: Option<std::net::SocketAddr>,
    /// Where the controller keeps what must outlive it and a reboot: the
    /// data caps' usage (`<instance>.usage.json`).
    #[serde(default = "default_state_dir")]
    pub state_dir: std::path::PathBuf,
}

/// One client a concentrator serves (`[[client]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// For logs and errors.
    pub name: String,
    /// Its key, as in the client's own `key_file`.
    pub key_file: std::path::PathBuf,
    /// What it may announce (its `bond.addresses` must lie in them) and send
    /// from; no two clients' prefixes overlap.
    pub prefixes: Vec<IpNet>,
}

/// A client as the concentrator knows it: who signs with which key, and
/// what it may announce (None: anything, the shared-key setup).
#[derive(Debug)]
pub struct Identity {
    pub name: String,
    pub key: Key,
    /// [`crate::control::key_id`] of `key`.
    pub key_id: u32,
    pub prefixes: Option<Vec<IpNet>>,
}

impl Identity {
    /// Whether the client may announce `p`.
    pub fn owns(&self, p: &IpNet) -> bool {
        self.prefixes.as_ref().is_none_or(|own| own.iter().any(|o| o.contains(p)))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BondConfig {
    /// Name of the bond device (an ifb device the controller creates).
    #[serde(default = "default_bond_name")]
    pub name: String,
    /// Addresses of the bond device. A client announces them to the
    /// concentrator, which routes them back through the bond.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Prefixes routed into the bond.
    #[serde(default)]
    pub routes: Vec<IpNet>,
    /// Override the computed MTU (smallest uplink MTU minus the encapsulation).
    pub mtu: Option<u32>,
}

impl Default for BondConfig {
    fn default() -> Self {
        Self { name: default_bond_name(), addresses: Vec::new(), routes: Vec::new(), mtu: None }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Probe interval of an idle subflow.
    #[serde(default = "default_probe_interval")]
    pub interval_ms: u64,
    /// Probe interval of a subflow that carries traffic (or is down), so a
    /// path that dies under traffic is given up within a few of these
    /// (capped at `interval_ms`).
    #[serde(default = "default_active_interval")]
    pub active_interval_ms: u64,
    /// A subflow is marked down after this many probes in a row go unanswered.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// Concentrator: a connection whose client is not heard on any subflow
    /// for this many seconds is removed (its client reconnects by itself
    /// when it is heard again).
    #[serde(default = "default_collect_after")]
    pub collect_after_s: u64,
    /// mode = "mptcp": what each path pings from its own address, every
    /// active interval (default: its gateway). A far target (the MPTCP
    /// server or proxy) finds failures beyond the first hop.
    #[serde(default)]
    pub targets: Vec<IpAddr>,
}

impl ProbeConfig {
    /// The probe interval of a subflow carrying traffic: never longer than the idle one.
    pub fn active_interval_ms(&self) -> u64 {
        self.active_interval_ms.min(self.interval_ms)
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval_ms: default_probe_interval(),
            active_interval_ms: default_active_interval(),
            down_after: default_down_after(),
            collect_after_s: default_collect_after(),
            targets: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// Display name; defaults to the interface name.
    pub name: Option<String>,
    /// The uplink interface.
    pub interface: String,
    /// Client: the concentrator's address reached over this interface.
    pub remote: Option<IpAddr>,
    /// mptcp mode: the next hop on this interface (default: the gateway of
    /// the main table's default route through it, else none: on-link).
    pub gateway: Option<IpAddr>,
    /// Local address; default: the interface's first address of the remote's
    /// family (client) or all its addresses (concentrator).
    pub local: Option<IpAddr>,
    /// Lower is preferred (0 = primary).
    #[serde(default)]
    pub priority: u32,
    /// Used only when no non-backup path is up.
    #[serde(default)]
    pub backup: bool,
    /// Capacity hint in Mbit/s, the line rate as the link counts it (bytes on
    /// the wire, the tunnel's and the Ethernet headers included): paces
    /// min-rtt's spill-over and earliest-arrival's queue estimate.
    pub rate_mbit: Option<f64>,
    /// Without `rate_mbit`, the rate is estimated from the peer's feedback;
    /// this bounds the estimate (Mbit/s, e.g. the line's sync rate).
    pub max_rate_mbit: Option<f64>,
    /// Share under the weighted policy; 0 (default) = in proportion to the rate.
    #[serde(default)]
    pub weight: u32,
    /// Client: a data cap, the byte budget of a metered plan (`[path.cap]`).
    #[serde(default)]
    pub cap: Option<crate::datacap::CapConfig>,
}

impl PathConfig {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.interface)
    }
    pub fn rate_bytes_per_sec(&self) -> u64 {
        self.rate_mbit.map(|m| (m * 1_000_000.0 / 8.0) as u64).unwrap_or(0)
    }
    /// The bound on the estimated rate, bytes per second (0: none).
    pub fn max_rate_bytes_per_sec(&self) -> u64 {
        self.max_rate_mbit.map(|m| (m * 1_000_000.0 / 8.0) as u64).unwrap_or(0)
    }
}

fn default_state_dir() -> std::path::PathBuf {
    "/var/lib/mptcp-ebpf".into()
}
fn default_instance() -> String {
    "default".into()
}
fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_policy() -> PolicyName {
    PolicyName(Policy::Auto)
}
fn default_bond_name() -> String {
    "mpbond0".into()
}
fn default_probe_interval() -> u64 {
    200
}
fn default_active_interval() -> u64 {
    50
}
fn default_down_after() -> u32 {
    3
}
fn default_collect_after() -> u64 {
    60
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        for old in ["psk", "psk_file"] {
            if table.contains_key(old) {
                bail!(
                    "config file {}: `{old}` is no longer read: keys come from a file only its owner may read, \
                     named by `key_file` (`mptcp-user genkey FILE` makes one)",
                    path.display()
                );
            }
        }
        let cfg: Config = table.try_into().with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(cfg)
    }

    /// A config with every field at its default, for flag-only use.
    pub fn new(role: Role) -> Config {
        Config {
            role,
            mode: Mode::Bond,
            instance: default_instance(),
            key_file: None,
            port: default_port(),
            policy: default_policy(),
            bond: BondConfig::default(),
            probe: ProbeConfig::default(),
            paths: Vec::new(),
            classes: Vec::new(),
            clients: Vec::new(),
            http: None,
            state_dir: default_state_dir(),
        }
    }

    /// One line of what the config sets up, for `config check`.
    pub fn summary(&self) -> String {
        let role = match self.role {
            Role::Client => "client",
            Role::Concentrator => "concentrator",
        };
        let mode = match self.mode {
            Mode::Bond => "bond mode",
            Mode::Mptcp => "native MPTCP mode",
        };
        let paths: Vec<String> = self
            .paths
            .iter()
            .map(|p| match (p.name.as_deref(), p.remote) {
                (Some(n), Some(r)) if n != p.interface => format!("{n} on {} to {r}", p.interface),
                (_, Some(r)) => format!("{} to {r}", p.interface),
                (Some(n), None) if n != p.interface => format!("{n} on {}", p.interface),
                (_, None) => p.interface.clone(),
            })
            .collect();
        let mut s = format!("{role}, {mode}, instance {}, policy {}", self.instance, self.policy);
        if !paths.is_empty() {
            s += &format!(", {} path{}: {}", paths.len(), if paths.len() == 1 { "" } else { "s" }, paths.join(", "));
        }
        if !self.classes.is_empty() {
            s += &format!(", {} class{}", self.classes.len(), if self.classes.len() == 1 { "" } else { "es" });
        }
        for p in &self.paths {
            if let Some(c) = &p.cap {
                s += &format!(
                    ", {} capped at {} MB a {} (then {})",
                    p.display_name(),
                    c.budget_mb,
                    c.period.name(),
                    c.when_spent.name()
                );
            }
        }
        if !self.clients.is_empty() {
            s += &format!(", {} client{}", self.clients.len(), if self.clients.len() == 1 { "" } else { "s" });
        }
        s
    }

    pub fn policy(&self) -> Result<Policy> {
        Ok(self.policy.0)
    }

    /// The classes compiled for the data path (class 0 = default = `policy`).
    pub fn class_plan(&self) -> Result<crate::classes::ClassPlan> {
        crate::classes::plan(self.policy.0, &self.classes)
    }

    /// The shared key, read from `key_file`.
    pub fn key(&self) -> Result<Key> {
        match &self.key_file {
            Some(f) => Key::from_file(f),
            None => bail!("no key: set `key_file` (or --key-file); `mptcp-user genkey FILE` makes one"),
        }
    }

    /// The clients a concentrator serves, with their keys read: one per
    /// `[[client]]`, or, without any, every client under the shared key.
    pub fn identities(&self) -> Result<Vec<Identity>> {
        let identity = |name: &str, key: Key, prefixes| Identity {
            name: name.to_string(),
            key_id: crate::control::key_id(key.bytes()),
            key,
            prefixes,
        };
        if self.clients.is_empty() {
            return Ok(vec![identity("any client", self.key()?, None)]);
        }
        if self.key_file.is_some() {
            bail!(
                "both `key_file` and [[client]] entries: with [[client]] entries each client has its own \
                 key; remove `key_file`"
            );
        }
        let mut out: Vec<Identity> = Vec::new();
        for c in &self.clients {
            if c.name.is_empty() {
                bail!("a [[client]] entry has an empty `name`");
            }
            if c.prefixes.is_empty() {
                bail!("client {}: `prefixes` is empty: it could announce nothing", c.name);
            }
            let key = Key::from_file(&c.key_file).with_context(|| format!("client {}", c.name))?;
            let me = identity(&c.name, key, Some(c.prefixes.iter().map(IpNet::trunc).collect()));
            for other in &out {
                if other.name == me.name {
                    bail!("client {} is listed twice", me.name);
                }
                if other.key_id == me.key_id {
                    bail!("clients {} and {} have the same key (each needs its own)", other.name, me.name);
                }
                let mine = me.prefixes.iter().flatten();
                if let Some((a, b)) = mine
                    .flat_map(|a| other.prefixes.iter().flatten().map(move |b| (a, b)))
                    .find(|(a, b)| a.contains(&b.network()) || b.contains(&a.network()))
                {
                    bail!("clients {} and {} both claim addresses: {b} and {a} overlap", other.name, me.name);
                }
            }
            out.push(me);
        }
        Ok(out)
    }

    /// Checks that need no system access.
    pub fn validate(&self) -> Result<()> {
        validate_instance(&self.instance)?;
        if self.mode == Mode::Mptcp {
            return self.validate_native();
        }
        self.class_plan()?;
        match self.role {
            Role::Client if !self.clients.is_empty() => {
                bail!("[[client]] entries belong in a concentrator's config, not a client's")
            }
            Role::Client => drop(self.key()?),
            Role::Concentrator => drop(self.identities()?),
        }
        if self.port == 0 {
            bail!("`port` must not be 0");
        }
        if self.bond.name.is_empty() || self.bond.name.len() > 15 {
            bail!("bond.name {:?} must be 1 to 15 characters", self.bond.name);
        }
        if self.probe.interval_ms < 10 || self.probe.active_interval_ms < 10 {
            bail!("probe.interval_ms and probe.active_interval_ms must be at least 10");
        }
        if self.probe.down_after == 0 {
            bail!("probe.down_after must be at least 1");
        }
        let down_ms = self.probe.interval_ms * (self.probe.down_after as u64 + 1);
        if self.probe.collect_after_s * 1000 <= down_ms {
            bail!(
                "probe.collect_after_s ({} s) must be longer than a subflow takes to go down ({down_ms} ms)",
                self.probe.collect_after_s
            );
        }
        if self.paths.is_empty() {
            bail!("no paths configured: add [[path]] entries (or --path IFACE[=REMOTE])");
        }
        if self.paths.len() > mptcp_common::maps::MAX_SUBFLOWS {
            bail!("{} paths configured; at most {} are supported", self.paths.len(), mptcp_common::maps::MAX_SUBFLOWS);
        }
        for (i, p) in self.paths.iter().enumerate() {
            if p.interface.is_empty() {
                bail!("path {i}: `interface` is empty");
            }
            if p.interface == self.bond.name {
                bail!("path {}: the uplink cannot be the bond device {}", p.display_name(), self.bond.name);
            }
            match (self.role, p.remote) {
                (Role::Client, None) => bail!(
                    "path {}: a client path needs `remote` (the concentrator's address on this path)",
                    p.display_name()
                ),
                (Role::Concentrator, Some(_)) => {
                    bail!("path {}: a concentrator path takes no `remote`", p.display_name())
                }
                _ => {}
            }
            if let (Some(l), Some(r)) = (p.local, p.remote) {
                if l.is_ipv4() != r.is_ipv4() {
                    bail!("path {}: `local` {l} and `remote` {r} are of different IP families", p.display_name());
                }
            }
            for (key, v) in [("rate_mbit", p.rate_mbit), ("max_rate_mbit", p.max_rate_mbit)] {
                if v.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                    bail!("path {}: {key} must be a positive number", p.display_name());
                }
            }
            if let Some(cap) = &p.cap {
                if self.role == Role::Concentrator {
                    bail!(
                        "path {}: a data cap belongs on the client's path (the client counts both directions \
                         and tells the concentrator when it is spent)",
                        p.display_name()
                    );
                }
                cap.validate(p.display_name())?;
            }
            if self.paths[..i].iter().any(|q| q.interface == p.interface && q.remote == p.remote) {
                bail!("path {}: interface {} is configured twice", p.display_name(), p.interface);
            }
        }
        if !self.probe.targets.is_empty() {
            bail!("probe.targets is for mode = \"mptcp\" (a bond probes its peer)");
        }
        if let Some(p) = self.paths.iter().find(|p| p.gateway.is_some()) {
            bail!("path {}: `gateway` is for mode = \"mptcp\" (a bond path has `remote`)", p.display_name());
        }
        if self.role == Role::Client && self.bond.addresses.is_empty() {
            bail!("a client needs bond.addresses (its inner address, announced to the concentrator)");
        }
        Ok(())
    }
}

impl Config {
    /// Native mode's checks: it has no tunnel, so no key, bond, classes or
    /// remote; connections go to whatever MPTCP peer an application chose.
    fn validate_native(&self) -> Result<()> {
        let no_tunnel = |what: &str| -> Result<()> {
            bail!("{what} is for mode = \"bond\": in mode = \"mptcp\" the kernel's MPTCP talks to its peer directly")
        };
        if self.key_file.is_some() {
            no_tunnel("`key_file`")?;
        }
        if self.bond != BondConfig::default() {
            no_tunnel("[bond]")?;
        }
        if !self.classes.is_empty() {
            no_tunnel("[[class]]")?;
        }
        if !self.clients.is_empty() {
            no_tunnel("[[client]]")?;
        }
        if let Err(why) = crate::native::policy::expressible(self.policy.0) {
            bail!("policy {}: not in mode = \"mptcp\": {why}", self.policy);
        }
        if let Err(why) = crate::native::policy::caps(self.policy.0, &self.paths, &vec![true; self.paths.len()]) {
            bail!("policy {}: {why}", self.policy);
        }
        if self.probe.active_interval_ms() < 10 || self.probe.down_after == 0 {
            bail!("probe.active_interval_ms must be at least 10 and probe.down_after at least 1");
        }
        let most = crate::native::pm::MAX_LIMIT as usize;
        if self.paths.is_empty() || self.paths.len() > most {
            bail!(
                "mode = \"mptcp\" takes 1 to {most} paths ([[path]] or --path IFACE[=GATEWAY]), not {}",
                self.paths.len()
            );
        }
        for (i, p) in self.paths.iter().enumerate() {
            if p.interface.is_empty() {
                bail!("path {i}: `interface` is empty");
            }
            if p.remote.is_some() {
                bail!(
                    "path {}: `remote` is for mode = \"bond\"; an MPTCP path takes `gateway` (its next hop)",
                    p.display_name()
                );
            }
            if let (Some(l), Some(g)) = (p.local, p.gateway) {
                if l.is_ipv4() != g.is_ipv4() {
                    bail!("path {}: `local` {l} and `gateway` {g} are of different IP families", p.display_name());
                }
            }
            if p.cap.is_some() {
                bail!(
                    "path {}: data caps are for mode = \"bond\" (its data path counts each path's bytes; \
                     in mode = \"mptcp\" the kernel's subflows are not counted per path)",
                    p.display_name()
                );
            }
            if self.paths[..i].iter().any(|q| q.display_name() == p.display_name()) {
                bail!("path {}: configured twice", p.display_name());
            }
        }
        Ok(())
    }
}

/// A policy by its name, as configs, local requests and the CLI spell it:
/// checked when read, so a misspelt policy is refused naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PolicyName(pub Policy);

/// In the schema: one of the policies' names.
impl schemars::JsonSchema for PolicyName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Policy".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

impl std::str::FromStr for PolicyName {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<PolicyName> {
        parse_policy(s).map(PolicyName)
    }
}

impl TryFrom<String> for PolicyName {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<PolicyName, String> {
        s.parse().map_err(|e| format!("{e:#}"))
    }
}

impl From<PolicyName> for String {
    fn from(p: PolicyName) -> String {
        p.0.name().to_string()
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

pub fn parse_policy(s: &str) -> Result<Policy> {
    Policy::from_name(s).with_context(|| {
        let known: Vec<_> = Policy::ALL.iter().map(|p| p.name()).collect();
        format!("unknown policy {s:?}; known policies: {}", known.join(", "))
    })
}

pub fn validate_instance(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("instance name {name:?} must be 1-64 characters of letters, digits, '-' or '_'");
    }
    Ok(())
}

/// `IFACE[=REMOTE]` from `--path`.
pub fn parse_path_flag(s: &str) -> Result<PathConfig> {
    let (iface, remote) = match s.split_once('=') {
        Some((i, r)) => {
            (i, Some(r.parse::<IpAddr>().with_context(|| format!("--path {s}: {r:?} is not an IP address"))?))
        }
        None => (s, None),
    };
    Ok(PathConfig {
        name: None,
        interface: iface.to_string(),
        remote,
        gateway: None,
        local: None,
        priority: 0,
        backup: false,
        rate_mbit: None,
        max_rate_mbit: None,
        weight: 0,
        cap: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client config naming a key file that exists.
    fn client() -> String {
        CLIENT.replace("KEY_FILE", &test_key_file().to_string_lossy())
    }

    /// One key file per test process, made once.
    fn test_key_file() -> std::path::PathBuf {
        static MADE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        MADE.get_or_init(|| {
            let p = std::env::temp_dir().join(format!("mptcp-config-test-{}.key", std::process::id()));
            let _ = std::fs::remove_file(&p);
            Key::generate().write_new_file(&p).unwrap();
            p
        })
        .clone()
    }

    const CLIENT: &str = r#"
role = "client"
key_file = "KEY_FILE"
[bond]
addresses = ["10.99.0.2/32"]
[[path]]
interface = "u0"
remote = "10.1.0.1"
rate_mbit = 10
[[path]]
interface = "u1"
remote = "10.2.0.1"
backup = true
"#;

    #[test]
    fn parses_a_client_config() {
        let c: Config = toml::from_str(&client()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.paths.len(), 2);
        assert_eq!(c.paths[0].rate_bytes_per_sec(), 1_250_000);
        assert!(c.paths[1].backup);
        assert_eq!(c.policy().unwrap(), Policy::Auto, "the default policy");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<Config>(&client().replace("backup = true", "bakup = true")).unwrap_err();
        assert!(err.to_string().contains("bakup"), "{err}");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c: Config = toml::from_str(&client()).unwrap();
        c.paths[1].remote = None;
        assert!(c.validate().unwrap_err().to_string().contains("needs `remote`"));
        // A misspelt policy is refused as the file is read, naming it.
        let err = toml::from_str::<Config>(&format!("policy = \"fastest\"\n{}", client())).unwrap_err().to_string();
        assert!(err.contains("unknown policy") && err.contains("fastest"), "{err}");
        let mut c: Config = toml::from_str(&client()).unwrap();
        c.key_file = None;
        assert!(c.validate().unwrap_err().to_string().contains("no key: set `key_file`"));
        c.key_file = Some("/nonexistent/mptcp.key".into());
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("cannot read key file /nonexistent/mptcp.key"));
        // Collecting a connection before its subflows could even go down.
        let mut c: Config = toml::from_str(&client()).unwrap();
        assert_eq!(c.probe.collect_after_s, 60, "the default");
        c.probe.collect_after_s = 0;
        assert!(c.validate().unwrap_err().to_string().contains("probe.collect_after_s"));
    }

    const NATIVE: &str = r#"
role = "client"
mode = "mptcp"
policy = "active-backup"

[[path]]
name = "dsl"
interface = "eth0"
gateway = "192.0.2.1"

[[path]]
name = "lte"
interface = "wwan0"
backup = true
"#;

    #[test]
    fn a_native_config_needs_no_tunnel_and_refuses_the_tunnels_parts() {
        let c: Config = toml::from_str(NATIVE).unwrap();
        c.validate().unwrap();
        assert_eq!(
            (c.mode, c.paths[0].gateway, c.paths[1].gateway),
            (Mode::Mptcp, Some("192.0.2.1".parse().unwrap()), None)
        );
        let refused = |change: &dyn Fn(&mut Config), says: &str| {
            let mut c: Config = toml::from_str(NATIVE).unwrap();
            change(&mut c);
            let e = format!("{:#}", c.validate().unwrap_err());
            assert!(e.contains(says), "{e:?} does not say {says:?}");
        };
        refused(&|c| c.key_file = Some("/k".into()), "`key_file` is for mode = \"bond\"");
        refused(
            &|c| c.paths[0].remote = Some("192.0.2.9".parse().unwrap()),
            "path dsl: `remote` is for mode = \"bond\"",
        );
        refused(&|c| c.bond.addresses.push("10.0.0.1/32".parse().unwrap()), "[bond] is for mode");
        refused(&|c| c.policy = "redundant".parse().unwrap(), "policy redundant: not in mode = \"mptcp\"");
        refused(&|c| c.paths[0].local = Some("2001:db8::1".parse().unwrap()), "different IP families");
        refused(
            &|c| c.paths = (0..9).map(|i| PathConfig { interface: format!("e{i}"), ..Default::default() }).collect(),
            "1 to 8 paths",
        );
        // A bond path has no gateway.
        let mut c: Config = toml::from_str(&client()).unwrap();
        c.paths[0].gateway = Some("192.0.2.1".parse().unwrap());
        assert!(c.validate().unwrap_err().to_string().contains("`gateway` is for mode = \"mptcp\""));
    }

    #[test]
    fn a_config_written_from_its_types_reads_back_the_same() {
        let mut c: Config = toml::from_str(&client()).unwrap();
        c.classes.push(crate::classes::ClassConfig {
            name: "voice".into(),
            policy: "active-backup".parse().unwrap(),
            base: None,
            matches: vec![crate::classes::MatchConfig {
                protocol: Some("udp".parse().unwrap()),
                dport: Some("5060-5070".parse().unwrap()),
                ..Default::default()
            }],
        });
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c, "{text}");
    }

    #[test]
    fn a_key_in_the_config_is_refused_saying_where_keys_go() {
        let dir = std::env::temp_dir().join(format!("mptcp-config-test-{}-old", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for old in ["psk = \"0123456789abcdef\"", "psk_file = \"/etc/mptcp-ebpf/psk\""] {
            let f = dir.join("c.toml");
            std::fs::write(&f, client().replace("key_file = ", &format!("{old}\n# key_file = "))).unwrap();
            let e = format!("{:#}", Config::from_file(&f).unwrap_err());
            assert!(e.contains("is no longer read") && e.contains("key_file"), "{e}");
        }
        std::fs::write(dir.join("c.toml"), client()).unwrap();
        let c = Config::from_file(&dir.join("c.toml")).unwrap();
        assert!(!format!("{c:?}").contains(&*c.key().unwrap().to_hex()), "the config never shows the key");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A concentrator serving two clients, each with its own key file and
    /// prefixes (the keys made once per test process).
    fn concentrator_of_two() -> (Config, [std::path::PathBuf; 2]) {
        static MADE: std::sync::OnceLock<[std::path::PathBuf; 2]> = std::sync::OnceLock::new();
        let keys = MADE
            .get_or_init(|| {
                ["a", "b"].map(|n| {
                    let p = std::env::temp_dir().join(format!("mptcp-config-test-{}-{n}.key", std::process::id()));
                    let _ = std::fs::remove_file(&p);
                    Key::generate().write_new_file(&p).unwrap();
                    p
                })
            })
            .clone();
        let text = format!(
            r#"
role = "concentrator"
[[path]]
interface = "c0u0"
[[client]]
name = "home-a"
key_file = "{}"
prefixes = ["10.99.0.0/24", "fd99::/64"]
[[client]]
name = "van-b"
key_file = "{}"
prefixes = ["10.98.0.0/24"]
"#,
            keys[0].display(),
            keys[1].display()
        );
        (toml::from_str(&text).unwrap(), keys)
    }

    #[test]
    fn a_concentrator_lists_its_clients_each_with_a_key_and_prefixes() {
        let (c, _) = concentrator_of_two();
        c.validate().unwrap();
        let ids = c.identities().unwrap();
        assert_eq!(ids.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["home-a", "van-b"]);
        assert_ne!(ids[0].key_id, ids[1].key_id);
        let p = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(ids[0].owns(&p("10.99.0.2/32")) && ids[0].owns(&p("fd99::2/128")));
        assert!(!ids[0].owns(&p("10.98.0.2/32")) && !ids[0].owns(&p("10.99.0.0/16")));
        assert!(ids[1].owns(&p("10.98.0.7/32")) && !ids[1].owns(&p("0.0.0.0/0")));
        // Without [[client]] entries: one identity, the shared key, any prefix.
        let mut shared = c.clone();
        shared.clients.clear();
        shared.key_file = Some(test_key_file());
        let ids = shared.identities().unwrap();
        assert!(ids.len() == 1 && ids[0].owns(&p("0.0.0.0/0")));
    }

    #[test]
    fn a_bad_client_list_is_refused_naming_the_problem() {
        let (c, keys) = concentrator_of_two();
        let refused = |f: &dyn Fn(&mut Config), want: &str| {
            let mut c = c.clone();
            f(&mut c);
            let e = format!("{:#}", c.validate().unwrap_err());
            assert!(e.contains(want), "{want:?} not in: {e}");
        };
        refused(&|c| c.clients[1].prefixes = vec!["10.99.0.128/25".parse().unwrap()], "overlap");
        refused(&|c| c.clients[1].prefixes.clear(), "`prefixes` is empty");
        refused(&|c| c.clients[1].name = "home-a".into(), "listed twice");
        refused(&|c| c.clients[1].key_file = keys[0].clone(), "the same key");
        refused(&|c| c.key_file = Some(test_key_file()), "remove `key_file`");
        refused(&|c| c.clients[0].key_file = "/nonexistent/a.key".into(), "client home-a");
        refused(&|c| c.role = Role::Client, "belong in a concentrator's config");
    }

    #[test]
    fn path_flag() {
        let p = parse_path_flag("u0=10.1.0.1").unwrap();
        assert_eq!(p.interface, "u0");
        assert_eq!(p.remote, Some("10.1.0.1".parse().unwrap()));
        assert!(parse_path_flag("u0=nope").is_err());
        assert_eq!(parse_path_flag("u1").unwrap().remote, None);
    }
}
