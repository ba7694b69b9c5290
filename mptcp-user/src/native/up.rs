//! `up` and `down` in native mode: take over the kernel's MPTCP path
//! manager for the configured paths, run the controller, and give it all
//! back. Ctrl-C (SIGINT) removes the paths and puts the limits back;
//! SIGTERM leaves them with the kernel for a restarted controller to adopt.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::controller::Native;
use super::paths;
use super::pm::PathManager;
use crate::config::{Config, Mode};
use crate::daemon::{self, Exit, LoopConfig};
use crate::lifecycle::{state_file, InstanceState};
use crate::netdev::Net;
use crate::run::UpOptions;

/// Whether this namespace's kernel takes MPTCP sockets and lets the
/// in-kernel path manager (the one native mode drives) manage them.
fn check_kernel() -> Result<()> {
    let read = |k: &str| std::fs::read_to_string(format!("/proc/sys/net/mptcp/{k}")).map(|v| v.trim().to_string());
    match read("enabled") {
        Ok(v) if v == "1" => {}
        Ok(_) => bail!("MPTCP is disabled here (net.mptcp.enabled = 0): `sysctl -w net.mptcp.enabled=1` first"),
        Err(_) => bail!("this kernel has no MPTCP (no /proc/sys/net/mptcp): it needs CONFIG_MPTCP=y"),
    }
    match read("path_manager") {
        Ok(pm) if pm != "kernel" => bail!(
            "the MPTCP path manager here is {pm:?}; native mode drives the in-kernel one: \
             `sysctl -w net.mptcp.path_manager=kernel`"
        ),
        _ => Ok(()),
    }
}

/// The runtime changes of a controller whose paths are adopted, applied
/// to `cfg`; none when starting afresh.
fn carried_over(cfg: &mut Config, previous: Option<&InstanceState>) -> crate::runtime::RuntimeChanges {
    let Some(runtime) = previous.map(|s| s.runtime.clone()) else { return Default::default() };
    if let Some(c) = runtime.policies.get(crate::classes::DEFAULT_CLASS_NAME) {
        if super::policy::expressible(c.policy.0).is_ok() {
            tracing::info!(policy = %c.policy, "keeping the policy set at runtime");
            cfg.policy = c.policy;
        }
    }
    for p in cfg.paths.iter_mut() {
        if let Some(c) = runtime.paths.get(p.display_name()) {
            tracing::info!(path = p.display_name(), "keeping the path changes made at runtime");
            c.apply_to(p);
        }
    }
    runtime
}

pub async fn up(mut cfg: Config, opts: &UpOptions) -> Result<()> {
    check_kernel()?;
    let previous = InstanceState::load(&cfg.instance)?.filter(|s| s.mode == Mode::Mptcp);
    let adopted = previous.as_ref().and_then(|s| s.native.clone());
    let runtime = carried_over(&mut cfg, previous.as_ref().filter(|_| adopted.is_some()));
    InstanceState {
        role: cfg.role,
        mode: Mode::Mptcp,
        bond: String::new(),
        uplinks: cfg.paths.iter().map(|p| p.interface.clone()).collect(),
        uplink_indexes: Vec::new(),
        path_names: cfg.paths.iter().map(|p| p.display_name().to_string()).collect(),
        classes: Vec::new(),
        pid: std::process::id(),
        netns: opts.netns.clone(),
        runtime,
        native: adopted.clone(),
    }
    .store(&cfg.instance)?;
    let native = match Native::start(&cfg, adopted).await {
        Ok(n) => n,
        Err(e) => {
            remove_leftovers(&cfg.instance).await;
            return Err(e);
        }
    };
    let lc = LoopConfig {
        instance: cfg.instance.clone(),
        // The probes' verdicts are read every half interval: a path that
        // went silent is left within half an interval of its limit.
        tick: Duration::from_millis(cfg.probe.active_interval_ms()) / 2,
        vital_link: None,
        ready: Some("mptcp-user: native paths up"),
    };
    // Nothing sends peer messages yet: native mode has no control channel.
    let (_peers, inbound) = tokio::sync::mpsc::channel(1);
    match daemon::run(native, inbound, lc).await {
        Ok((Exit::Teardown, native)) => {
            native.teardown().await;
            let _ = std::fs::remove_file(state_file(&cfg.instance));
            println!("mptcp-user: stopped; native paths removed, MPTCP limits put back");
            Ok(())
        }
        Ok((Exit::Handover, _)) => {
            println!("mptcp-user: stopped; the kernel keeps the paths (`mptcp-user up` adopts them, `mptcp-user down` removes them)");
            Ok(())
        }
        Err(e) => {
            remove_leftovers(&cfg.instance).await;
            Err(e)
        }
    }
}

/// Remove what the state file says is in place, and the state file (for a
/// controller that failed, or died). Best effort: errors are logged.
pub async fn remove_leftovers(instance: &str) {
    let applied = match InstanceState::load(instance) {
        Ok(st) => st.and_then(|s| s.native),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cannot read what is in place");
            None
        }
    };
    if let Some(applied) = applied {
        let removed = async {
            let (mut pm, net) = (PathManager::open()?, Net::new()?);
            paths::teardown(&mut pm, &net, &applied).await
        };
        if let Err(e) = removed.await {
            tracing::warn!(
                error = format!("{e:#}"),
                "native paths not all removed (some may have gone with their links)"
            );
        }
    }
    let _ = std::fs::remove_file(state_file(instance));
}

/// `down` of a native-mode instance whose controller is stopped: remove
/// what it left (in its network namespace).
pub fn down(instance: &str, st: &InstanceState) -> Result<()> {
    let instance = instance.to_string();
    crate::netns::run_in(st.netns.clone(), "native path removal", move || async move {
        remove_leftovers(&instance).await;
        Ok(())
    })
    .context("cannot remove the native paths")
}
