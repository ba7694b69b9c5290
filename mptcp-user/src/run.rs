//! `up` and `down`: bring the data path and the controller up, and take all
//! of it down again — also when any step of a start fails.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use mptcp_common::maps::Settings;
use mptcp_common::mtu::{bond_mtu, IPV6_MIN_MTU};
use mptcp_common::wire::{FAMILY_V4, FAMILY_V6};

use crate::bpfmaps::DataPathMaps;
use crate::classes::ClassPlan;
use crate::client::Client;
use crate::concentrator::Concentrator;
use crate::config::{Config, Mode, Role};
use crate::daemon::{self, Exit, LoopConfig};
use crate::lifecycle::{self, pin_dir, InstanceState, Uplink};
use crate::netdev::Net;
use crate::runtime::RuntimeChanges;

pub struct UpOptions {
    pub connect_timeout: Duration,
    /// The network namespace the controller runs in (recorded for `down`).
    pub netns: Option<String>,
}

/// The uplinks (deduplicated, in order) and the bond MTU they allow.
async fn plan_links(cfg: &Config, net: &Net) -> Result<(Vec<Uplink>, u32, u32)> {
    let mut uplinks: Vec<Uplink> = Vec::new();
    let mut min_mtu = u32::MAX;
    let mut any_v6 = false;
    for p in &cfg.paths {
        let link = net
            .link(&p.interface)
            .await?
            .with_context(|| format!("interface {} (path {}) does not exist", p.interface, p.display_name()))?;
        min_mtu = min_mtu.min(link.mtu);
        any_v6 |= p.remote.map(|a| a.is_ipv6()).unwrap_or(false) || p.local.map(|a| a.is_ipv6()).unwrap_or(false);
        if !uplinks.iter().any(|u| u.name == p.interface) {
            uplinks.push(Uplink { name: p.interface.clone(), raw_ip: link.raw_ip });
        }
    }
    // A concentrator may carry IPv6 outer packets on any uplink with an IPv6 address.
    if cfg.role == Role::Concentrator {
        any_v6 = true;
    }
    let fitting = bond_mtu(min_mtu, if any_v6 { FAMILY_V6 } else { FAMILY_V4 });
    let mtu = match cfg.bond.mtu {
        Some(m) if m > fitting => bail!("bond.mtu {m} is too large: the smallest uplink MTU {min_mtu} leaves room for {fitting} after encapsulation"),
        Some(m) => m,
        None => fitting,
    };
    if mtu < 576 {
        bail!("the uplinks' MTU ({min_mtu}) leaves only {mtu} bytes for the bond");
    }
    if mtu < IPV6_MIN_MTU && cfg.bond.addresses.iter().any(|a| a.addr().is_ipv6()) {
        bail!("the bond MTU {mtu} is below IPv6's minimum of {IPV6_MIN_MTU}, but the bond has IPv6 addresses");
    }
    Ok((uplinks, mtu, min_mtu))
}

/// Decapsulated packets arrive on whichever uplink carried them, so strict
/// reverse-path filtering (1) would drop those on the "wrong" one: use loose (2).
fn loosen_rp_filter(uplinks: &[String]) {
    for up in uplinks {
        let f = format!("/proc/sys/net/ipv4/conf/{up}/rp_filter");
        if std::fs::read_to_string(&f).map(|v| v.trim() == "1").unwrap_or(false) {
            match std::fs::write(&f, "2") {
                Ok(()) => {
                    tracing::info!(uplink = %up, "rp_filter set from strict to loose: decapsulated packets may arrive on any uplink")
                }
                Err(e) => {
                    tracing::warn!(uplink = %up, error = %e, "strict rp_filter will drop decapsulated packets; set it to 2")
                }
            }
        }
    }
}

/// The bond's MTU as planned from the local uplinks (and the config), and
/// the largest packet an uplink takes: what path MTU discovery starts from
/// and never exceeds.
#[derive(Clone, Copy, Debug)]
pub struct MtuPlan {
    pub bond: u32,
    pub uplink: u32,
}

/// Build (or adopt) the data path. `created` tells the caller what to undo.
async fn bring_up(
    cfg: &Config,
    net: &Net,
    opts: &UpOptions,
    created: &mut bool,
) -> Result<(DataPathMaps, bool, MtuPlan)> {
    let (uplinks, mtu, uplink_mtu) = plan_links(cfg, net).await?;
    let dir = pin_dir(&cfg.instance);
    let adopting = dir.exists();
    if adopting {
        lifecycle::adoptable(&dir, &uplinks)?;
        net.link(&cfg.bond.name).await?.with_context(|| {
            format!(
                "pins of instance {} exist but its bond device {} is gone; run `mptcp-user down --instance {}`",
                cfg.instance, cfg.bond.name, cfg.instance
            )
        })?;
        tracing::info!(instance = %cfg.instance, "adopting the running data path");
    } else {
        if net.link(&cfg.bond.name).await?.is_some() {
            bail!("a device named {} already exists; pick another bond.name or remove that device", cfg.bond.name);
        }
        let index = net.create_ifb(&cfg.bond.name, mtu).await?;
        *created = true;
        for a in &cfg.bond.addresses {
            net.add_address(index, *a).await?;
        }
        net.set_up(index).await?;
        for r in &cfg.bond.routes {
            net.add_route(*r, index).await?;
        }
        lifecycle::install(&dir, &cfg.bond.name, &uplinks)?;
        let names: Vec<String> = uplinks.iter().map(|u| u.name.clone()).collect();
        loosen_rp_filter(&names);
        tracing::info!(bond = %cfg.bond.name, mtu, uplinks = ?uplinks, "data path attached");
    }
    let mut uplink_indexes = Vec::new();
    for u in &uplinks {
        uplink_indexes.push(net.link(&u.name).await?.map(|l| l.index).unwrap_or(0));
    }
    let mut maps = DataPathMaps::open(&dir)?;
    let client = (cfg.role == Role::Client) as u16;
    // The data path reports drops while this controller reads them (a
    // handover clears the flag).
    let debug = crate::datapath_log::wanted()
        && crate::datapath_log::spawn(&dir)
            .map_err(|e| tracing::warn!(error = format!("{e:#}"), "no debug events from the data path"))
            .is_ok();
    let settings = Settings { port: cfg.port, n_rules: 0, uplink_mtu, bond_mtu: mtu, client, debug: debug as u16 };
    maps.settings.set(0, settings, 0)?;
    let mut classes = cfg.class_plan()?;
    // A restarted controller keeps what the operator changed at runtime;
    // applied to the plan before it is installed, so the data path never
    // runs the config's policy in between.
    let runtime = if adopting { carried_over(cfg, &mut classes)? } else { RuntimeChanges::default() };
    crate::classes::install(&mut maps, &classes)?;
    InstanceState {
        role: cfg.role,
        mode: cfg.mode,
        bond: cfg.bond.name.clone(),
        uplinks: uplinks.iter().map(|u| u.name.clone()).collect(),
        uplink_indexes,
        path_names: cfg.paths.iter().map(|p| p.display_name().to_string()).collect(),
        classes: classes.names.clone(),
        pid: std::process::id(),
        netns: opts.netns.clone(),
        runtime,
        native: None,
    }
    .store(&cfg.instance)?;
    Ok((maps, adopting, MtuPlan { bond: mtu, uplink: uplink_mtu }))
}

/// The previous controller's runtime changes that still apply to this
/// configuration, its policies written into `classes`; the rest is dropped
/// with a note.
fn carried_over(cfg: &Config, classes: &mut ClassPlan) -> Result<RuntimeChanges> {
    let mut runtime = RuntimeChanges::load(&cfg.instance)?;
    runtime.policies.retain(|name, choice| {
        let id = classes.names.iter().position(|n| n == name);
        match (id, crate::classes::class_policy(choice.policy.0, choice.base.map(|b| b.0))) {
            (Some(id), Ok(cp)) => {
                classes.policies[id] = cp;
                tracing::info!(class = %name, policy = %choice.policy, "keeping the policy set at runtime");
                true
            }
            _ => {
                tracing::warn!(class = %name, "dropping a runtime policy: the class is no longer configured");
                false
            }
        }
    });
    runtime.paths.retain(|name, _| {
        let known = cfg.paths.iter().any(|p| p.display_name() == name);
        if !known {
            tracing::warn!(path = %name, "dropping runtime hints: the path is no longer configured");
        }
        known
    });
    Ok(runtime)
}

pub async fn up(cfg: Config, opts: UpOptions) -> Result<()> {
    lifecycle::preflight()?;
    cfg.validate()?;
    if let Some(st) = InstanceState::load(&cfg.instance)? {
        if let Some(pid) = st.live_pid() {
            bail!(
                "instance {} is already running (controller pid {pid}); stop it with `mptcp-user down --instance {}`",
                cfg.instance,
                cfg.instance
            );
        }
    }
    // Bound before anything is set up: an address in use fails the start
    // with nothing to undo. Served from here on; until the controller
    // answers, a scrape gets 503.
    if let Some(addr) = cfg.http {
        let listener = crate::http::bind(addr).await?;
        crate::http::spawn(listener, cfg.instance.clone());
    }
    if cfg.mode == Mode::Mptcp {
        return crate::native::up::up(cfg, &opts).await;
    }
    let net = Net::new()?;
    let mut created = false;
    let (maps, adopting, mtu) = match bring_up(&cfg, &net, &opts, &mut created).await {
        Ok(v) => v,
        Err(e) => {
            if created || !pin_dir(&cfg.instance).join("link-egress").exists() {
                teardown(&cfg.instance, &cfg.bond.name, &net, created).await;
            }
            return Err(e);
        }
    };
    let result = run_role(&cfg, maps, mtu, &net, &opts).await;
    match result {
        Ok(Exit::Teardown) => {
            teardown(&cfg.instance, &cfg.bond.name, &net, true).await;
            println!("mptcp-user: stopped; data path removed");
            Ok(())
        }
        Ok(Exit::Handover) => {
            // Nobody reads the drop reports any more: the data path stops making them.
            if let Err(e) = crate::datapath_log::stop_reports(&pin_dir(&cfg.instance)) {
                tracing::warn!(error = format!("{e:#}"), "the data path may go on reporting drops to no one");
            }
            println!("mptcp-user: stopped; the data path keeps forwarding (`mptcp-user up` adopts it, `mptcp-user down` removes it)");
            Ok(())
        }
        Err(e) => {
            if adopting {
                tracing::warn!(
                    "the adopted data path is left in place; `mptcp-user down --instance {}` removes it",
                    cfg.instance
                );
            } else {
                teardown(&cfg.instance, &cfg.bond.name, &net, true).await;
            }
            Err(e)
        }
    }
}

/// Build the role on the data path and run it on the event loop (its maps
/// are closed when it returns).
async fn run_role(cfg: &Config, maps: DataPathMaps, mtu: MtuPlan, net: &Net, opts: &UpOptions) -> Result<Exit> {
    let bond_index = net.link(&cfg.bond.name).await?.context("the bond device vanished during start")?.index;
    let lc = LoopConfig {
        instance: cfg.instance.clone(),
        // Subflows carrying traffic are probed at every tick, idle ones less often.
        tick: Duration::from_millis(cfg.probe.active_interval_ms()),
        vital_link: Some(bond_index),
        ready: None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    match cfg.role {
        Role::Client => {
            let c = Client::new(cfg.clone(), maps, Net::new()?, tx, opts.connect_timeout, mtu).await?;
            daemon::run(c, rx, lc).await.map(|(exit, _)| exit)
        }
        Role::Concentrator => {
            let c = Concentrator::new(cfg.clone(), maps, net, tx).await?;
            daemon::run(c, rx, LoopConfig { ready: Some("mptcp-user: serving"), ..lc }).await.map(|(exit, _)| exit)
        }
    }
}

/// Remove pins (detaching the programs), the bond device and the state file.
/// Best effort: every step runs, failures are logged.
pub async fn teardown(instance: &str, bond: &str, net: &Net, delete_bond: bool) {
    if let Err(e) = lifecycle::remove_pins(&pin_dir(instance)) {
        tracing::error!(error = format!("{e:#}"), "cannot remove pins");
    }
    if delete_bond {
        match net.link(bond).await {
            Ok(Some(l)) => {
                if let Err(e) = net.delete_link(l.index).await {
                    tracing::error!(error = format!("{e:#}"), bond, "cannot delete the bond device");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = format!("{e:#}"), "cannot look up the bond device"),
        }
    }
    let _ = std::fs::remove_file(lifecycle::state_file(instance));
}

/// `down`: stop a running controller (which cleans up after itself), then
/// remove whatever is left.
pub fn down(instance: &str) -> Result<()> {
    crate::config::validate_instance(instance)?;
    lifecycle::preflight()?;
    let state = InstanceState::load(instance)?;
    if let Some(pid) = state.as_ref().and_then(|s| s.live_pid()) {
        println!("stopping controller pid {pid}");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT)
            .context("cannot signal the controller")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lifecycle::pid_alive(pid) {
            if std::time::Instant::now() > deadline {
                bail!("controller pid {pid} did not stop within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(st) = state.as_ref().filter(|s| s.mode == Mode::Mptcp) {
        crate::native::up::down(instance, st)?;
        println!("instance {instance}: native paths removed");
        return Ok(());
    }
    let dir = pin_dir(instance);
    let had_pins = dir.exists();
    lifecycle::remove_pins(&dir)?;
    let mut removed_bond = false;
    if let Some(st) = &state {
        let bond = st.bond.clone();
        let netns = st.netns.clone();
        // The bond lives in the controller's network namespace; enter it on a
        // thread of its own so this process stays where it is.
        removed_bond = crate::netns::run_in(netns, "bond removal", move || async move {
            let net = Net::new()?;
            match net.link(&bond).await? {
                Some(l) => net.delete_link(l.index).await.map(|_| true),
                None => Ok(false),
            }
        })?;
        let _ = std::fs::remove_file(lifecycle::state_file(instance));
    }
    if had_pins || removed_bond || state.is_some() {
        println!("instance {instance}: data path removed");
    } else {
        println!("instance {instance}: nothing to remove");
    }
    Ok(())
}
