//! The native-mode role on the controller's event loop: it keeps the
//! kernel's path manager in line with the uplinks and the policy. Every
//! input ends in [`Native::reconcile`], which works out what each path
//! should have in the kernel (an endpoint and source routing while its link
//! runs with an address; its backup flag from the policy) and changes only
//! what differs. An uplink that goes down loses its endpoint, so the kernel
//! closes its subflows and tells the peer; one that comes back gets it
//! again, and the kernel opens a subflow from it on every live connection.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use mptcp_common::Policy;

use super::paths::{self, Applied, NativePath, Side};
use super::pm::{Limits, PathManager};
use super::policy::{self, PathView};
use crate::config::{Config, PathConfig, PolicyName, Role};
use crate::ctl::{PathChange, PolicyChoice, Request, Response};
use crate::daemon::{Handled, Role as LoopRole};
use crate::lifecycle::InstanceState;
use crate::netdev::{Net, NetEvent};
use crate::peer::Inbound;
use crate::status::{PathStatus, Status, SubflowState};

/// One configured path and what the kernel has of it.
struct Path {
    cfg: PathConfig,
    /// Its device's index when last looked up.
    ifindex: Option<u32>,
    /// Its endpoint and source routing, while in place (the backup flag as
    /// the endpoint has it).
    live: Option<NativePath>,
}

impl Path {
    fn name(&self) -> &str {
        self.cfg.display_name()
    }
}

pub struct Native {
    instance: String,
    side: Side,
    policy: Policy,
    pm: PathManager,
    net: Net,
    paths: Vec<Path>,
    /// The limits before this instance raised them, put back at the end.
    limits_before: Limits,
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
            paths: cfg.paths.iter().map(|c| Path { cfg: c.clone(), ifindex: None, live: None }).collect(),
            limits_before,
            event_errors: 0,
        };
        for (i, p) in previous.paths {
            if let Some(path) = n.paths.get_mut(i) {
                tracing::info!(path = path.name(), addr = %p.addr, "adopting the path left in place");
                path.live = Some(p);
            } else if let Err(e) = paths::remove(&mut n.pm, &n.net, i, &p).await {
                tracing::warn!(error = format!("{e:#}"), "cannot remove a path no longer configured");
            }
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

    /// Bring the kernel in line with the links and the policy: take out
    /// the paths that are gone or changed, set the backup flags of those
    /// that stay, put in the new ones. Every path is tried; the first
    /// error is returned.
    async fn reconcile(&mut self) -> Result<()> {
        let mut first: Option<anyhow::Error> = None;
        let mut wanted = Vec::new();
        for i in 0..self.paths.len() {
            match self.wanted(i).await {
                Ok(w) => wanted.push(w),
                Err(e) => {
                    // Unknown: leave the path as it is.
                    wanted.push(self.paths[i].live.clone());
                    first.get_or_insert(e.context(format!("path {}", self.paths[i].name())));
                }
            }
        }
        let views: Vec<PathView> = self
            .paths
            .iter()
            .zip(&wanted)
            .map(|(p, w)| PathView { up: w.is_some(), backup: p.cfg.backup, priority: p.cfg.priority, srtt_us: 0 })
            .collect();
        let backups = policy::backups(self.policy, &views).map_err(|why| anyhow::anyhow!("{why}"))?;
        for (i, w) in wanted.into_iter().enumerate() {
            let w = w.map(|w| NativePath { backup: backups & (1 << i) != 0, ..w });
            if let Err(e) = self.settle(i, w).await {
                first.get_or_insert(e.context(format!("path {}", self.paths[i].name())));
            }
        }
        self.record()?;
        first.map_or(Ok(()), Err)
    }

    /// Make path `i` what `want` says.
    async fn settle(&mut self, i: usize, want: Option<NativePath>) -> Result<()> {
        let live = self.paths[i].live.clone();
        let same_place =
            |a: &NativePath, b: &NativePath| a.ifindex == b.ifindex && a.addr == b.addr && a.gateway == b.gateway;
        match (live, want) {
            (None, None) => Ok(()),
            (Some(l), Some(w)) if same_place(&l, &w) => {
                if l.backup != w.backup {
                    let id = paths::slot(i).0;
                    self.pm.set_backup(id, w.backup).await?;
                    tracing::info!(
                        path = self.paths[i].name(),
                        backup = w.backup,
                        "subflows' priority changed (MP_PRIO)"
                    );
                    self.paths[i].live = Some(w);
                }
                Ok(())
            }
            (live, want) => {
                if let Some(l) = live {
                    // Gone from the kernel's view even if removing failed:
                    // a device that vanished took its routes along.
                    self.paths[i].live = None;
                    paths::remove(&mut self.pm, &self.net, i, &l).await.or_else(|e| {
                        if want.is_none() {
                            tracing::debug!(error = format!("{e:#}"), "removing a path whose link went");
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                    tracing::info!(path = self.paths[i].name(), addr = %l.addr, "path withdrawn: its subflows close");
                }
                if let Some(w) = want {
                    paths::add(&mut self.pm, &self.net, self.side, i, &w).await?;
                    tracing::info!(
                        path = self.paths[i].name(),
                        addr = %w.addr,
                        backup = w.backup,
                        "path in place: subflows open from it on every connection"
                    );
                    self.paths[i].live = Some(w);
                }
                Ok(())
            }
        }
    }

    /// What is in place, in the state file (for an adopting controller,
    /// and for `down` after one that died).
    fn record(&self) -> Result<()> {
        let Some(mut st) = InstanceState::load(&self.instance)? else { return Ok(()) };
        st.native = Some(self.applied());
        st.store(&self.instance)
    }

    fn applied(&self) -> Applied {
        Applied {
            paths: self.paths.iter().enumerate().filter_map(|(i, p)| Some((i, p.live.clone()?))).collect(),
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
        self.policy = c.policy.0;
        Ok(format!("instance {}: policy {}", self.instance, c.policy))
    }

    fn path_set(&mut self, c: &PathChange) -> Result<String, String> {
        if c.weight.is_some() || c.rate_mbit.is_some() {
            return Err("mode mptcp uses a path's priority and backup flag only".into());
        }
        let Some(p) = self.paths.iter_mut().find(|p| p.name() == c.path || p.cfg.interface == c.path) else {
            return Err(format!("no path {:?}", c.path));
        };
        c.apply_to(&mut p.cfg);
        Ok(format!("path {}: priority {}, backup {}", p.name(), p.cfg.priority, p.cfg.backup))
    }

    fn status(&self) -> Status {
        let st = InstanceState::load(&self.instance).ok().flatten();
        Status {
            instance: self.instance.clone(),
            mode: Some("mptcp".into()),
            role: st.map(|s| format!("{:?}", s.role).to_lowercase()),
            bond: None,
            controller_pid: Some(std::process::id()),
            policy: PolicyName(self.policy).to_string(),
            connections: Vec::new(),
            drops: BTreeMap::new(),
            control: BTreeMap::from([("event-errors".to_string(), self.event_errors)]),
            paths: self
                .paths
                .iter()
                .enumerate()
                .map(|(i, p)| PathStatus {
                    name: p.name().to_string(),
                    interface: p.cfg.interface.clone(),
                    address: p.live.as_ref().map(|l| l.addr.to_string()),
                    endpoint: p.live.as_ref().map(|_| paths::slot(i).0),
                    state: if p.live.is_some() { SubflowState::Up } else { SubflowState::Down },
                    backup: p.live.as_ref().is_some_and(|l| l.backup),
                })
                .collect(),
        }
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
            Request::Status => return Ok(Response::Status(Box::new(self.status()))),
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
