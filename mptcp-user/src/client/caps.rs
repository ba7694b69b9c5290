//! The client's data caps ([`crate::datacap`]): each capped path's usage,
//! opened from the usage file, brought up to date on every tick from the
//! data path's counters, and the path's hints changed when its budget is
//! spent or renews.

use anyhow::Result;
use mptcp_common::status::CapStatus;

use super::Client;
use crate::daemon::Handled;
use crate::datacap::{Change, Ledger, PathCap, Usage};
use crate::estimate::counters;

impl Client {
    /// Read the usage file and give each capped path what it used in its
    /// period; a budget spent before a restart stays spent.
    pub(super) fn open_caps(&mut self) -> Result<()> {
        if self.paths.iter().all(|p| p.cfg.cap.is_none()) {
            return Ok(());
        }
        let (ledger, mut saved) = Ledger::open(Ledger::file(&self.cfg.state_dir, &self.cfg.instance))?;
        let now = chrono::Local::now().naive_local();
        for p in &mut self.paths {
            let Some(cfg) = p.cfg.cap.clone() else { continue };
            let mut cap = PathCap::new(cfg, saved.remove(p.name()).unwrap_or_default());
            cap.update(now, None);
            if cap.spent {
                tracing::warn!(
                    path = p.cfg.display_name(),
                    used_mb = cap.usage.used_bytes as f64 / 1e6,
                    budget_mb = cap.cfg.budget_mb,
                    "data cap spent in this period: the path is {} until it renews",
                    cap.cfg.when_spent.name()
                );
            }
            p.cap = Some(cap);
        }
        self.ledger = Some(ledger);
        Ok(())
    }

    /// Count what each capped path carried since the last tick; a budget
    /// spent or renewed changes the path's hints at once (here and at the
    /// concentrator) and is written to the usage file at once.
    pub(super) async fn caps_tick(&mut self) -> Handled {
        if self.ledger.is_none() {
            return Ok(());
        }
        let now = chrono::Local::now().naive_local();
        let (mut changed, mut urgent) = (false, false);
        for i in 0..self.paths.len() {
            let p = &self.paths[i];
            if p.cap.is_none() {
                continue;
            }
            let subflow = match self.token {
                Some(token) if p.state.established() => {
                    let c = counters(&self.maps, token, p.id);
                    Some((token, c.tx_bytes + c.rx_bytes))
                }
                _ => None,
            };
            let p = &mut self.paths[i];
            let Some(cap) = &mut p.cap else { continue };
            let before = cap.usage.clone();
            let change = cap.update(now, subflow);
            changed |= cap.usage != before;
            let Some(change) = change else { continue };
            urgent = true;
            let (used_mb, budget_mb, when) = (cap.usage.used_bytes as f64 / 1e6, cap.cfg.budget_mb, cap.cfg.when_spent);
            match change {
                Change::Spent => tracing::warn!(
                    path = p.cfg.display_name(),
                    used_mb,
                    budget_mb,
                    "data cap spent: the path is {} until it renews",
                    when.name()
                ),
                Change::Renewed => tracing::info!(path = p.cfg.display_name(), budget_mb, "data cap renewed"),
            }
            self.push_hint(i).await?;
        }
        if changed {
            let ledger = self.ledger.as_mut().expect("checked above");
            ledger.changed(urgent, usages(&self.paths))?;
        }
        Ok(())
    }

    /// Each capped path's budget and use, for `status`.
    pub(super) fn caps_status(&self) -> Vec<CapStatus> {
        self.paths.iter().filter_map(|p| Some(p.cap.as_ref()?.status(p.name()))).collect()
    }
}

fn usages(paths: &[super::Path]) -> impl Iterator<Item = (&str, &Usage)> {
    paths.iter().filter_map(|p| Some((p.cfg.display_name(), &p.cap.as_ref()?.usage)))
}

impl Drop for Client {
    /// What was counted since the last write is kept when the controller
    /// stops (Ctrl-C, SIGTERM or an error alike).
    fn drop(&mut self) {
        if let Some(ledger) = &mut self.ledger {
            if let Err(e) = ledger.flush(usages(&self.paths)) {
                tracing::error!(error = format!("{e:#}"), "cannot keep the data caps' usage");
            }
        }
    }
}
