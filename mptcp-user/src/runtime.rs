//! What an operator changed at runtime (`policy set`, `path set`) beyond the
//! config. The controller keeps it in the instance's state file, and a
//! controller that adopts the data path after a restart (`systemctl
//! restart`: SIGTERM, then `up`) applies it again instead of falling back to
//! the config. A fresh start (no data path to adopt) begins from the config.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::ctl::{PathChange, PolicyChoice};
use crate::lifecycle::InstanceState;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeChanges {
    /// By class name: the policy set at runtime.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyChoice>,
    /// By path name: the hints set at runtime, merged in order.
    #[serde(default)]
    pub paths: BTreeMap<String, PathChange>,
}

impl RuntimeChanges {
    pub fn record_policy(&mut self, c: &PolicyChoice) {
        self.policies.insert(c.class.clone(), c.clone());
    }

    /// `path` is the path's name (not the interface the request may use).
    pub fn record_path(&mut self, path: &str, c: &PathChange) {
        let entry = self.paths.entry(path.to_string()).or_insert_with(|| PathChange { path: path.into(), ..c.clone() });
        entry.merge(c);
        entry.path = path.to_string();
    }

    /// Write into the instance's state file (read, change, write: the file
    /// also holds what `down` and `status` need).
    pub fn store(&self, instance: &str) -> Result<()> {
        if let Some(mut st) = InstanceState::load(instance)? {
            st.runtime = self.clone();
            st.store(instance)?;
        }
        Ok(())
    }

    pub fn load(instance: &str) -> Result<RuntimeChanges> {
        Ok(InstanceState::load(instance)?.map(|s| s.runtime).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_path_changes_win_field_by_field() {
        let mut r = RuntimeChanges::default();
        r.record_path(
            "dsl",
            &PathChange { path: "eth1".into(), weight: Some(3), backup: Some(true), ..Default::default() },
        );
        r.record_path(
            "dsl",
            &PathChange { path: "dsl".into(), backup: Some(false), rate_mbit: Some(5.0), ..Default::default() },
        );
        let c = &r.paths["dsl"];
        assert_eq!((c.path.as_str(), c.weight, c.backup, c.rate_mbit), ("dsl", Some(3), Some(false), Some(5.0)));
    }

    #[test]
    fn old_state_files_without_runtime_changes_still_load() {
        let r: RuntimeChanges = serde_json::from_str("{}").unwrap();
        assert_eq!(r, RuntimeChanges::default());
    }
}
