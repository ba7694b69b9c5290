//! Local requests both roles answer alike: the policy of each class, and
//! status (the maps plus the role's estimates). A user's mistake is an
//! `Ok(Response::Error)` naming it; `Err` is the controller's own failure.

use anyhow::Context;

use crate::bpfmaps::DataPathMaps;
use crate::classes::{self, DEFAULT_CLASS_NAME};
use crate::config::PolicyName;
use crate::ctl::{PolicyChoice, Response};
use crate::estimate::SubflowEstimate;
use crate::lifecycle::InstanceState;

use super::Handled;

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

pub fn status(maps: &DataPathMaps, instance: &str, estimates: &[SubflowEstimate]) -> Handled<Response> {
    let st = crate::status::collect_from(
        instance,
        maps,
        InstanceState::load(instance)?,
        Some(std::process::id()),
        estimates,
    )?;
    Ok(Response::Status(Box::new(st)))
}
