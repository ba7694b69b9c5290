//! The native-mode role on the controller's event loop: it keeps the
//! kernel's path manager in line with the uplinks, their probes and the
//! policy. Every input that changes something ends in
//! [`Native::reconcile`], which works out what each path should have in the
//! kernel and changes only what differs: source routing while its link runs
//! with an address; an endpoint while its probes are answered too; its
//! backup flag from the policy. A path that goes down or silent loses its
//! endpoint, so the kernel closes its subflows (their data goes again on
//! the others) and tells the peer; when it works again the endpoint
//! returns, and the kernel opens a subflow from it on every live
//! connection.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use mptcp_common::Policy;

use super::paths::{self, Applied, NativePath, Side};
use super::pm::{Limits, PathManager};
use super::policy::{self, PathView};
use super::probe::{Heard, Prober, Verdict};
use crate::config::{Config, PathConfig, PolicyName, Role};
use crate::ctl::{PathChange, PolicyChoice, Request, Response};
use crate::daemon::{Handled, Role as LoopRole};
use crate::lifecycle::InstanceState;
use crate::netdev::{Net, NetEvent};
use crate::peer::Inbound;
use crate::status::{ConnectionStatus, PathStatus, Status, SubflowState, SubflowStatus};

/// One configured path and what the kernel has of it.
struct Path {
    cfg: PathConfig,
    /// Its device's index when last looked up.
    ifindex: Option<u32>,
    /// Its source routing, while in place (with the backup flag its
    /// endpoint has or gets).
    routed: Option<NativePath>,
    /// Its endpoint is in the kernel (only ever with `routed`).
    endpoint: bool,
    /// Its probes, while it has an address and something to probe.
    prober: Option<Prober>,
    verdict: Verdict,
    /// Its endpoint is to be taken out and put back ([`Native::rejoin`]).
    bounce: bool,
}

impl Path {
    fn name(&self) -> &str {
        self.cfg.display_name()
    }

    /// What its probes go to: the configured targets, else its gateway.
    fn targets(&self, place: &NativePath, configured: &[std::net::IpAddr]) -> Vec<std::net::IpAddr> {
        let family = |t: &&std::net::IpAddr| t.is_ipv4() == place.addr.is_ipv4();
        let mut t: Vec<_> = configured.iter().filter(family).copied().collect();
        if t.is_empty() {
            t.extend(place.gateway);
        }
        t
    }
}

/// How often a client looks for subflows lost while their path works.
const LOSSES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// A path's endpoint is put back for a lost subflow at most this often: it
/// takes the path's subflows of every connection along for a moment.
const REJOIN_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// How often min-rtt looks at the paths' RTTs again.
const MIN_RTT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Native {
    instance: String,
    side: Side,
    policy: Policy,
    pm: PathManager,
    net: Net,
    paths: Vec<Path>,
    /// The limits before this instance raised them, put back at the end.
    limits_before: Limits,
    probe: crate::config::ProbeConfig,
    /// The path the policy chose last (active-backup, min-rtt).
    chosen: Option<usize>,
    /// When [`Native::reconcile`] last ran.
    reconciled: std::time::Instant,
    /// The subflow pacing program, once a policy wanted caps.
    pacing: Option<super::pacing::Pacing>,
    /// Per path: the connections that have had a subflow from it
    /// ([`super::diag::lost_subflows`]); when the subflows were last looked
    /// at for losses, and when each path's endpoint was last put back for one.
    joined: Vec<std::collections::BTreeSet<u32>>,
    losses_checked: std::time::Instant,
    rejoined: Vec<Option<std::time::Instant>>,
    event_errors: u64,
}

impl Native {
    /// Take over the kernel's path manager for `cfg`'s paths. `previous`:
    /// what a controller that stopped with SIGTERM left in place (adopted
    /// where it is still right). On error nothing of ours is left.
    pub async fn start(cfg: &Config, previous: Option<Applied>) -> Result<Native> {
        let side = match cfg.role {
            Role::Client => Side::Client,
            Role::Concentrator => Side::Server,
        };
        let mut pm = PathManager::open()?;
        let net = Net::new()?;
        let previous = previous.unwrap_or_default();
        let theirs: Vec<_> = pm
            .endpoints()
            .await?
            .into_iter()
            .filter(|e| !previous.paths.iter().any(|(i, p)| paths::slot(*i).0 == e.id && p.addr == e.addr))
            .collect();
        for (i, p) in cfg.paths.iter().enumerate() {
            let id = paths::slot(i).0;
            if let Some(e) = theirs.iter().find(|e| e.id == id || Some(e.addr) == p.local) {
                bail!(
                    "the kernel already has MPTCP endpoint {} ({}) where path {} would go; \
                     remove it (`ip mptcp endpoint delete id {}`) or run no other MPTCP path manager",
                    e.id,
                    e.addr,
                    p.display_name(),
                    e.id
                );
            }
        }
        let limits_before = match previous.limits_before {
            Some(l) => {
                paths::open_limits(&mut pm, cfg.paths.len()).await?;
                l
            }
            None => paths::open_limits(&mut pm, cfg.paths.len()).await?,
        };
        let mut n = Native {
            instance: cfg.instance.clone(),
            side,
            policy: cfg.policy.0,
            pm,
            net,
            paths: cfg
                .paths
                .iter()
                .map(|c| Path {
                    cfg: c.clone(),
                    ifindex: None,
                    routed: None,
                    endpoint: false,
                    prober: None,
                    verdict: Verdict::default(),
                    bounce: false,
                })
                .collect(),
            limits_before,
            probe: cfg.probe.clone(),
            chosen: None,
            reconciled: std::time::Instant::now(),
            pacing: None,
            joined: vec![Default::default(); cfg.paths.len()],
            losses_checked: std::time::Instant::now(),
            rejoined: vec![None; cfg.paths.len()],
            event_errors: 0,
        };
        for (i, p) in previous.paths {
            let endpoint = !previous.withdrawn.contains(&i);
            if let Some(path) = n.paths.get_mut(i) {
                tracing::info!(path = path.name(), addr = %p.addr, "adopting the path left in place");
                (path.routed, path.endpoint) = (Some(p), endpoint);
            } else {
                let gone = async {
                    if endpoint {
                        paths::del_endpoint(&mut n.pm, i).await?;
                    }
                    paths::del_route(&n.net, i, &p).await
                };
                if let Err(e) = gone.await {
                    tracing::warn!(error = format!("{e:#}"), "cannot remove a path no longer configured");
                }
            }
        }
        // Attached before any connection it should cap: sockops sees a
        // subflow only from its establishment on.
        match super::pacing::Pacing::attach() {
            Ok(p) => n.pacing = Some(p),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "no subflow pacing caps: weighted is not available"),
        }
        if let Err(e) = n.reconcile().await {
            n.teardown().await;
            return Err(e);
        }
        Ok(n)
    }

    /// Where path `i` should be: its link runs and has an address (the
    /// configured one, else its first IPv4, else its first global IPv6).
    async fn wanted(&mut self, i: usize) -> Result<Option<NativePath>> {
        let link = self.net.link(&self.paths[i].cfg.interface).await?;
        self.paths[i].ifindex = link.as_ref().map(|l| l.index);
        let cfg = &self.paths[i].cfg;
        let Some(link) = link.filter(|l| l.running) else { return Ok(None) };
        let addrs = self.net.addresses(link.index).await?;
        let pick = |v4| crate::netdev::pick_local(&addrs, None, v4, &cfg.interface).ok();
        let addr = match (cfg.local, cfg.gateway) {
            (Some(a), _) => addrs.contains(&a).then_some(a),
            (None, Some(g)) => pick(g.is_ipv4()),
            (None, None) => pick(true).or_else(|| pick(false)),
        };
        let Some(addr) = addr else { return Ok(None) };
        let gateway = match cfg.gateway {
            Some(g) => Some(g),
            None => self.net.default_gateway(link.index, addr.is_ipv4()).await?,
        };
        Ok(Some(NativePath { ifindex: link.index, addr, gateway, backup: false }))
    }

    /// Bring the kernel in line with the links, the probes and the policy.
    /// Every path is tried; the first error is returned.
    async fn reconcile(&mut self) -> Result<()> {
        self.reconciled = std::time::Instant::now();
        let mut first: Option<anyhow::Error> = None;
        let mut places = Vec::new();
        for i in 0..self.paths.len() {
            match self.wanted(i).await {
                Ok(w) => places.push(w),
                Err(e) => {
                    // Unknown: leave the path as it is.
                    places.push(self.paths[i].routed.clone());
                    first.get_or_insert(e.context(format!("path {}", self.paths[i].name())));
                }
            }
        }
        for (i, place) in places.iter().enumerate() {
            if let Err(e) = self.follow_probes(i, place.as_ref()) {
                first.get_or_insert(e.context(format!("path {}: cannot probe it", self.paths[i].name())));
            }
        }
        // Probes all silent while links run: the probes are more likely
        // wrong than every path dead, and withdrawing every endpoint gains
        // nothing (as the bond sends on paths whose probes stopped).
        let heard = |p: &Path| p.prober.is_none() || p.verdict.alive;
        let trust = self.paths.iter().zip(&places).any(|(p, w)| w.is_some() && heard(p));
        let usable: Vec<bool> =
            self.paths.iter().zip(&places).map(|(p, w)| w.is_some() && (heard(p) || !trust)).collect();
        let views: Vec<PathView> = self
            .paths
            .iter()
            .zip(&usable)
            .map(|(p, &up)| PathView {
                up,
                backup: p.cfg.backup,
                priority: p.cfg.priority,
                srtt_us: p.prober.as_ref().map_or(0, |pr| pr.heard().srtt_us),
            })
            .collect();
        let (backups, chosen) =
            policy::backups(self.policy, &views, self.chosen).map_err(|why| anyhow::anyhow!("{why}"))?;
        if chosen != self.chosen && chosen.is_some() {
            tracing::info!(path = chosen.map(|c| self.paths[c].name()), policy = %PolicyName(self.policy), "the policy chose a path");
        }
        self.chosen = chosen;
        if let Err(e) = self.pace(&places, &usable) {
            first.get_or_insert(e.context("subflow pacing caps"));
        }
        for (i, place) in places.into_iter().enumerate() {
            let place = place.map(|w| NativePath { backup: backups & (1 << i) != 0, ..w });
            if let Err(e) = self.settle(i, place, usable[i]).await {
                first.get_or_insert(e.context(format!("path {}", self.paths[i].name())));
            }
        }
        self.record()?;
        first.map_or(Ok(()), Err)
    }

    /// Find the connections that lost their subflow from a path that still
    /// works (its endpoint in place, its probes answered) and withdraw that
    /// path's endpoint, for [`Native::reconcile`] to put back at once: the
    /// kernel then opens a subflow from it on every connection, the ones
    /// that lost theirs included (in-kernel, only an endpoint's arrival
    /// opens subflows on live connections). At most once per
    /// [`REJOIN_HOLD`] per path, and once per loss. True if it withdrew one.
    fn rejoin(&mut self, listed: Option<Vec<super::diag::Subflow>>) -> Result<bool> {
        self.losses_checked = std::time::Instant::now();
        let all = match listed {
            Some(all) => all,
            None => super::diag::subflows().context("cannot list the subflows")?,
        };
        let mut withdrew = false;
        for i in 0..self.paths.len() {
            let p = &self.paths[i];
            let works = p.endpoint && (p.prober.is_none() || p.verdict.alive);
            let Some(addr) = p.routed.as_ref().map(|r| r.addr).filter(|_| works) else {
                // Its subflows close with it; the endpoint's return opens them.
                self.joined[i].clear();
                continue;
            };
            let lost = super::diag::lost_subflows(&mut self.joined[i], &all, addr);
            if lost.is_empty() || self.rejoined[i].is_some_and(|t| t.elapsed() < REJOIN_HOLD) {
                continue;
            }
            tracing::warn!(
                path = self.paths[i].name(),
                connections = ?lost,
                "subflow closed while its path works: the endpoint is put back so the kernel opens it again"
            );
            self.joined[i].retain(|t| !lost.contains(t));
            self.rejoined[i] = Some(std::time::Instant::now());
            self.paths[i].bounce = true;
            withdrew = true;
        }
        Ok(withdrew)
    }

    /// Cap each path's subflows as the policy wants (weighted), or lift
    /// the caps it set before; the pacing program is attached at the first
    /// cap.
    fn pace(&mut self, places: &[Option<NativePath>], usable: &[bool]) -> Result<()> {
        let configs: Vec<_> = self.paths.iter().map(|p| p.cfg.clone()).collect();
        let caps = policy::caps(self.policy, &configs, usable).map_err(|why| anyhow::anyhow!("{why}"))?;
        if self.pacing.is_none() {
            if caps.iter().all(|&c| c == super::pacing::NO_CAP) {
                return Ok(());
            }
            self.pacing = Some(super::pacing::Pacing::attach()?);
        }
        let at: Vec<_> = places.iter().zip(&caps).filter_map(|(p, &c)| p.as_ref().map(|p| (p.addr, c))).collect();
        self.pacing.as_mut().expect("attached above").set(&at)
    }

    /// Probe path `i` from where it is now (a new prober, taken to work
    /// until it hears otherwise, when the place changed), or not at all.
    fn follow_probes(&mut self, i: usize, place: Option<&NativePath>) -> Result<()> {
        let path = &mut self.paths[i];
        let Some(place) = place else {
            (path.prober, path.verdict) = (None, Verdict::default());
            return Ok(());
        };
        if path.prober.as_ref().is_some_and(|p| p.ifindex == place.ifindex && p.addr == place.addr) {
            return Ok(());
        }
        (path.prober, path.verdict) = (None, Verdict::default());
        let targets = path.targets(place, &self.probe.targets);
        if targets.is_empty() {
            return Ok(());
        }
        let interval = std::time::Duration::from_millis(self.probe.active_interval_ms());
        // An answer later than a path's silence limit (a slow one's
        // included) no longer tells whether it works.
        let slow = Heard { srtt_us: 1_000_000, rttvar_us: 250_000, ..Default::default() };
        let patience = std::time::Duration::from_micros(slow.silence_limit_us(interval, self.probe.down_after));
        path.prober = Some(Prober::start(place.ifindex, place.addr, &targets, interval, patience)?);
        tracing::info!(path = path.name(), from = %place.addr, ?targets, "probing the path");
        Ok(())
    }

    /// Make path `i` what `place` (routing, backup flag) and `endpoint`
    /// (whether it should have its endpoint) say.
    async fn settle(&mut self, i: usize, place: Option<NativePath>, endpoint: bool) -> Result<()> {
        let same_place =
            |a: &NativePath, b: &NativePath| a.ifindex == b.ifindex && a.addr == b.addr && a.gateway == b.gateway;
        if let Some(old) = self.paths[i].routed.clone().filter(|r| place.as_ref().is_none_or(|w| !same_place(r, w))) {
            // Gone from the kernel's view even if removing failed: a device
            // that vanished took its routes along.
            let had_endpoint = std::mem::take(&mut self.paths[i].endpoint);
            self.paths[i].routed = None;
            let removed = async {
                if had_endpoint {
                    paths::del_endpoint(&mut self.pm, i).await?;
                }
                paths::del_route(&self.net, i, &old).await
            };
            match (removed.await, &place) {
                (Ok(()), _) => {}
                (Err(e), None) => tracing::debug!(error = format!("{e:#}"), "removing a path whose link went"),
                (Err(e), Some(_)) => return Err(e),
            }
            tracing::info!(path = self.paths[i].name(), addr = %old.addr, "path withdrawn: its subflows close");
        }
        let Some(want) = place else { return Ok(()) };
        if self.paths[i].routed.is_none() {
            paths::add_route(&self.net, i, &want).await?;
            self.paths[i].routed = Some(want.clone());
        }
        if std::mem::take(&mut self.paths[i].bounce) && self.paths[i].endpoint && endpoint {
            // Out and straight back in: the kernel opens a subflow from
            // it on every connection, one that lost its own included.
            paths::del_endpoint(&mut self.pm, i).await?;
            self.paths[i].endpoint = false;
        }
        let had = self.paths[i].routed.as_ref().map(|r| r.backup);
        let name = self.paths[i].name().to_string();
        match (self.paths[i].endpoint, endpoint) {
            (true, false) => {
                paths::del_endpoint(&mut self.pm, i).await?;
                self.paths[i].endpoint = false;
                tracing::warn!(path = %name, "path silent: endpoint withdrawn, its subflows close");
            }
            (false, true) => {
                paths::add_endpoint(&mut self.pm, self.side, i, &want).await?;
                self.paths[i].endpoint = true;
                tracing::info!(path = %name, addr = %want.addr, backup = want.backup, "path in place: subflows open from it on every connection");
            }
            (true, true) if had != Some(want.backup) => {
                self.pm.set_backup(paths::slot(i).0, want.backup).await?;
                tracing::info!(path = %name, backup = want.backup, "subflows' priority changed (MP_PRIO)");
            }
            _ => {}
        }
        self.paths[i].routed = Some(want);
        Ok(())
    }

    /// What is in place, in the state file (for an adopting controller,
    /// and for `down` after one that died).
    fn record(&self) -> Result<()> {
        let Some(mut st) = InstanceState::load(&self.instance)? else { return Ok(()) };
        st.native = Some(self.applied());
        st.store(&self.instance)
    }

    fn applied(&self) -> Applied {
        let routed = self.paths.iter().enumerate().filter(|(_, p)| p.routed.is_some());
        Applied {
            paths: routed.clone().filter_map(|(i, p)| Some((i, p.routed.clone()?))).collect(),
            withdrawn: routed.filter(|(_, p)| !p.endpoint).map(|(i, _)| i).collect(),
            limits_before: Some(self.limits_before),
        }
    }

    /// Remove everything of ours and put the limits back (best effort,
    /// errors logged).
    pub async fn teardown(mut self) {
        let applied = self.applied();
        if let Err(e) = paths::teardown(&mut self.pm, &self.net, &applied).await {
            tracing::error!(error = format!("{e:#}"), "native paths not all removed");
        }
    }

    fn policy_set(&mut self, c: &PolicyChoice) -> Result<String, String> {
        if c.class != crate::classes::DEFAULT_CLASS_NAME {
            return Err(format!("mode mptcp has one class, {}, not {:?}", crate::classes::DEFAULT_CLASS_NAME, c.class));
        }
        policy::expressible(c.policy.0).map_err(|why| format!("policy {}: not in mode mptcp: {why}", c.policy))?;
        let configs: Vec<_> = self.paths.iter().map(|p| p.cfg.clone()).collect();
        let caps = policy::caps(c.policy.0, &configs, &vec![true; configs.len()])
            .map_err(|why| format!("policy {}: not with these paths: {why}", c.policy))?;
        if self.pacing.is_none() && caps.iter().any(|&c| c != super::pacing::NO_CAP) {
            self.pacing =
                Some(super::pacing::Pacing::attach().map_err(|e| format!("policy {}: pacing caps: {e:#}", c.policy))?);
        }
        self.policy = c.policy.0;
        Ok(format!("instance {}: policy {}", self.instance, c.policy))
    }

    fn path_set(&mut self, c: &PathChange) -> Result<String, String> {
        let Some(i) = self.paths.iter().position(|p| p.name() == c.path || p.cfg.interface == c.path) else {
            return Err(format!("no path {:?}", c.path));
        };
        let mut configs: Vec<_> = self.paths.iter().map(|p| p.cfg.clone()).collect();
        c.apply_to(&mut configs[i]);
        policy::caps(self.policy, &configs, &vec![true; configs.len()])
            .map_err(|why| format!("policy {}: {why}", PolicyName(self.policy)))?;
        let p = &mut self.paths[i];
        c.apply_to(&mut p.cfg);
        Ok(format!(
            "path {}: priority {}, backup {}, weight {}, rate {}",
            p.name(),
            p.cfg.priority,
            p.cfg.backup,
            p.cfg.weight,
            p.cfg.rate_mbit.map_or("unset".into(), |r| format!("{r} Mbit/s"))
        ))
    }

    /// The kernel's MPTCP connections over our paths, each with its
    /// subflows, as `status` shows them.
    fn connections(&self) -> Result<Vec<ConnectionStatus>> {
        let mut by_token: BTreeMap<u32, Vec<SubflowStatus>> = BTreeMap::new();
        for s in super::diag::subflows()? {
            let path = self.paths.iter().find(|p| p.routed.as_ref().is_some_and(|r| r.addr == s.local.ip()));
            let Some(path) = path else { continue };
            let subflows = by_token.entry(s.token).or_default();
            subflows.push(SubflowStatus {
                id: subflows.len() as u32,
                path: path.name().to_string(),
                local: s.local.to_string(),
                remote: s.remote.to_string(),
                state: SubflowState::Up,
                backup: s.backup,
                priority: path.cfg.priority,
                srtt_us: s.srtt_us,
                tx_bytes: s.bytes_acked,
                rx_bytes: s.bytes_received,
                retransmits: s.total_retrans as u64,
                ..Default::default()
            });
        }
        Ok(by_token
            .into_iter()
            .map(|(token, subflows)| ConnectionStatus { token: format!("{token:08x}"), prefixes: Vec::new(), subflows })
            .collect())
    }

    fn status(&self) -> Result<Status> {
        let st = InstanceState::load(&self.instance).ok().flatten();
        Ok(Status {
            instance: self.instance.clone(),
            mode: Some("mptcp".into()),
            role: st.map(|s| format!("{:?}", s.role).to_lowercase()),
            bond: None,
            controller_pid: Some(std::process::id()),
            policy: PolicyName(self.policy).to_string(),
            connections: self.connections()?,
            drops: BTreeMap::new(),
            control: BTreeMap::from([("event-errors".to_string(), self.event_errors)]),
            paths: self
                .paths
                .iter()
                .enumerate()
                .map(|(i, p)| PathStatus {
                    name: p.name().to_string(),
                    interface: p.cfg.interface.clone(),
                    address: p.routed.as_ref().map(|l| l.addr.to_string()),
                    endpoint: p.endpoint.then_some(paths::slot(i).0),
                    state: if p.endpoint { SubflowState::Up } else { SubflowState::Down },
                    backup: p.endpoint && p.routed.as_ref().is_some_and(|l| l.backup),
                    srtt_us: p.prober.as_ref().map_or(0, |pr| pr.heard().srtt_us),
                    probes_answered: p.prober.as_ref().map(|pr| pr.heard().answers),
                    cap_mbit: p
                        .routed
                        .as_ref()
                        .and_then(|l| self.pacing.as_ref()?.cap(l.addr))
                        .map(|c| c as f64 / 125_000.0),
                })
                .collect(),
            caps: Vec::new(),
            classes: Vec::new(),
        })
    }

    /// Keep a runtime change for a controller that adopts the paths.
    fn remember(&self, f: impl FnOnce(&mut crate::runtime::RuntimeChanges)) -> Result<()> {
        let mut r = crate::runtime::RuntimeChanges::load(&self.instance)?;
        f(&mut r);
        r.store(&self.instance)
    }
}

impl LoopRole for Native {
    async fn on_peer(&mut self, _m: Inbound) -> Handled {
        Ok(())
    }

    async fn on_tick(&mut self) -> Handled {
        let interval = std::time::Duration::from_millis(self.probe.active_interval_ms());
        let mut changed = false;
        let mut subflows = None;
        for p in &mut self.paths {
            let Some(prober) = &p.prober else { continue };
            let mut heard = prober.heard();
            let limit = heard.silence_limit_us(interval, self.probe.down_after);
            if p.verdict.alive && heard.silence_us > limit {
                // Silent probes; but a subflow that still hears its peer
                // proves the path (a queue filling behind a transfer
                // delays the answers, not the ACKs).
                let all = match &subflows {
                    Some(all) => all,
                    None => subflows.insert(super::diag::subflows().context("cannot list the subflows")?),
                };
                if let Some(ms) = super::diag::heard_from(all, prober.addr) {
                    heard.silence_us = heard.silence_us.min(ms as u64 * 1000);
                }
            }
            if p.verdict.judge(heard.answers, heard.silence_us, limit) {
                let (name, alive) = (p.cfg.display_name(), p.verdict.alive);
                if alive {
                    tracing::info!(path = name, "path answers again");
                } else {
                    tracing::warn!(path = name, silent_ms = heard.silence_us / 1000, "path silent");
                }
                changed = true;
            }
        }
        // min-rtt follows the paths' RTTs, which change without an event.
        let rtts_due = self.policy == Policy::MinRtt && self.reconciled.elapsed() >= MIN_RTT_EVERY;
        let losses_due = self.side == Side::Client && self.losses_checked.elapsed() >= LOSSES_EVERY;
        if losses_due && self.rejoin(subflows.take())? {
            changed = true;
        }
        if changed || rtts_due {
            self.reconcile().await?;
        }
        Ok(())
    }

    async fn on_net(&mut self, ev: NetEvent) -> Handled {
        let index = match ev {
            NetEvent::Link { index, .. } | NetEvent::LinkGone { index } | NetEvent::Address { index, .. } => index,
        };
        // A path whose device is missing may be the one that appeared.
        if self.paths.iter().any(|p| p.ifindex.is_none_or(|i| i == index)) {
            self.reconcile().await?;
        }
        Ok(())
    }

    async fn on_local(&mut self, req: Request) -> Handled<Response> {
        let answer = match &req {
            Request::PolicySet(c) => self.policy_set(c),
            Request::PathSet(c) => self.path_set(c),
            Request::PolicyShow => {
                let p = PolicyChoice {
                    class: crate::classes::DEFAULT_CLASS_NAME.into(),
                    policy: PolicyName(self.policy),
                    base: None,
                    now: None,
                };
                return Ok(Response::Policies(vec![p]));
            }
            Request::Status => return Ok(Response::Status(Box::new(self.status()?))),
        };
        let line = match answer {
            Ok(line) => line,
            Err(refusal) => return Ok(Response::Error(refusal)),
        };
        self.reconcile().await.context("the change is made but not all of it is in the kernel")?;
        match req {
            Request::PolicySet(c) => self.remember(|r| r.record_policy(&c))?,
            Request::PathSet(c) => {
                let name = self.paths.iter().find(|p| p.name() == c.path || p.cfg.interface == c.path);
                let name = name.map(|p| p.name().to_string()).unwrap_or_default();
                self.remember(|r| r.record_path(&name, &c))?;
            }
            _ => {}
        }
        tracing::info!("{line}");
        Ok(Response::Ok(line))
    }

    fn count_error(&mut self) {
        self.event_errors += 1;
    }
}
