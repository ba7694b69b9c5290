//! What both bond roles do alike: answer the local requests about the data
//! path (the policy of each class, and status: the maps plus the role's
//! estimates), and keep the classes set to auto in line with the paths. A
//! user's mistake is an `Ok(Response::Error)` naming it; `Err` is the
//! controller's own failure.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bpfmaps::DataPathMaps;
use crate::classes::{self, DEFAULT_CLASS_NAME};
use crate::config::PolicyName;
use crate::ctl::{PolicyChoice, Request, Response};
use crate::estimate::SubflowEstimate;
use crate::lifecycle::InstanceState;

use super::Handled;

/// What a role knows beyond the maps, for `status`.
#[derive(Default)]
pub struct RoleView {
    /// Its estimates from the peer's feedback.
    pub estimates: Vec<SubflowEstimate>,
    /// A client's data caps.
    pub caps: Vec<mptcp_common::status::CapStatus>,
}

/// Answer a request about the data path; `role` names the role for a
/// request it should have answered itself.
pub fn answer(maps: &mut DataPathMaps, instance: &str, view: &RoleView, req: Request, role: &str) -> Handled<Response> {
    match req {
        Request::PolicySet(c) => policy_set(maps, instance, c),
        Request::PolicyShow => policy_show(maps, instance),
        Request::Status => status(maps, instance, view),
        other => Ok(Response::Error(format!("the {role} does not answer {other:?}"))),
    }
}

/// Keeps the classes set to auto in line with the paths.
pub struct AutoFollow {
    last: Instant,
}

impl Default for AutoFollow {
    fn default() -> Self {
        AutoFollow { last: Instant::now() }
    }
}

impl AutoFollow {
    /// How often the classes set to auto are brought in line with the paths
    /// besides when a connection's write changes them
    /// ([`DataPathMaps::auto_stale`]; each look reads every connection).
    const EVERY: Duration = Duration::from_secs(1);

    /// A path that joins, goes or changes delay changes what auto stands
    /// for: follow it before the next packet, not up to a second later
    /// (min-rtt spilling onto a satellite beside a near link meanwhile
    /// reorders the inner flows); and look once a second regardless.
    pub fn follow(&mut self, maps: &mut DataPathMaps) -> anyhow::Result<()> {
        if !maps.auto_stale && self.last.elapsed() < Self::EVERY {
            return Ok(());
        }
        maps.auto_stale = false;
        self.last = Instant::now();
        if let Some(p) = classes::follow_auto(maps)? {
            tracing::info!(policy = p.name(), "auto now stands for another policy");
        }
        Ok(())
    }
}

fn class_names(state: &InstanceState) -> Vec<String> {
    if state.classes.is_empty() {
        vec![DEFAULT_CLASS_NAME.to_string()]
    } else {
        state.classes.clone()
    }
}

fn state(instance: &str) -> anyhow::Result<InstanceState> {
    InstanceState::load(instance)?.with_context(|| format!("the state file of instance {instance} is gone"))
}

/// Switch one class's policy (one map write) and keep the change for a
/// controller that adopts the data path after a restart.
pub fn policy_set(maps: &mut DataPathMaps, instance: &str, choice: PolicyChoice) -> Handled<Response> {
    let cp = match classes::class_policy(choice.policy.0, choice.base.map(|b| b.0)) {
        Ok(cp) => cp,
        Err(e) => return Ok(Response::Error(format!("{e:#}"))),
    };
    let mut st = state(instance)?;
    let names = class_names(&st);
    let Some(id) = names.iter().position(|n| *n == choice.class) else {
        return Ok(Response::Error(format!(
            "instance {instance} has no class {:?}; its classes: {}",
            choice.class,
            names.join(", ")
        )));
    };
    maps.set_class_policy(id as u32, cp)?;
    if cp.is_auto() {
        classes::follow_auto(maps)?;
    }
    st.runtime.record_policy(&choice);
    st.store(instance)?;
    let name = classes::describe(maps.class_policy(id as u32)?);
    tracing::info!(class = %choice.class, policy = %name, "policy switched");
    Ok(Response::Ok(format!("instance {instance}, class {}: {name}", choice.class)))
}

/// Each class and the policy the data path runs for it now.
pub fn policy_show(maps: &DataPathMaps, instance: &str) -> Handled<Response> {
    let names = class_names(&state(instance)?);
    let mut all = Vec::new();
    for (id, name) in names.iter().enumerate() {
        let cp = maps.class_policy(id as u32)?;
        let base = (cp.policy() == mptcp_common::Policy::Flowlet).then(|| PolicyName(cp.base()));
        let now = cp.is_auto().then(|| PolicyName(cp.policy()));
        all.push(PolicyChoice { class: name.clone(), policy: PolicyName(cp.chosen()), base, now });
    }
    Ok(Response::Policies(all))
}

pub fn status(maps: &DataPathMaps, instance: &str, view: &RoleView) -> Handled<Response> {
    let mut st = crate::status::collect_from(
        instance,
        maps,
        InstanceState::load(instance)?,
        Some(std::process::id()),
        &view.estimates,
    )?;
    st.caps = view.caps.clone();
    Ok(Response::Status(Box::new(st)))
}
