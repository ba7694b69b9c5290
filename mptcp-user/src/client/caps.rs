//! The client's data caps ([`crate::datacap`]): each capped path's usage,
//! opened from the usage file, brought up to date on every tick from the
//! data path's counters, and the path's hints changed when its budget is
//! spent or renews.

use anyhow::Result;
use mptcp_common::status::CapStatus;

use super::Client;
use crate::daemon::Handled;
use crate::datacap::{Change, Ledger, Opened, PathCap, Usage};
use crate::estimate::counters;

impl Client {
    /// Read the usage file and give each capped path what it used in its
    /// period; a budget spent before a restart stays spent.
    pub(super) fn open_caps(&mut self) -> Result<()> {
        if self.paths.iter().all(|p| p.cfg.cap.is_none()) {
            return Ok(());
        }
        let file = Ledger::file(&self.cfg.state_dir, &self.cfg.instance);
        let Opened { mut ledger, usage: mut saved, corrupt } = Ledger::open(file.clone())?;
        if let Some(aside) = &corrupt {
            tracing::error!(
                file = %file.display(),
                moved_to = %aside.display(),
                "the data caps' usage file is corrupt: the capped paths count as spent until their budget renews \
                 (to keep what it counted, mend it, put it back and restart)"
            );
        }
        let now = chrono::Local::now().naive_local();
        for p in &mut self.paths {
            let Some(cfg) = p.cfg.cap.clone() else { continue };
            let mut cap = PathCap::new(cfg, saved.remove(p.name()).unwrap_or_default());
            if corrupt.is_some() {
                cap.assume_spent(now);
            }
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
        // Paths without a cap now keep their entries, should it come back.
        ledger.keep(saved);
        self.ledger = Some(ledger);
        Ok(())
    }

    /// A subflow of `token` adopted from a previous controller: counting
    /// starts from its counters unless the usage file followed it.
    pub(super) fn adopt_caps(&mut self, token: u32) {
        for i in 0..self.paths.len() {
            if !self.paths[i].state.established() {
                continue;
            }
            let id = self.paths[i].id;
            let c = counters(&self.maps, token, id);
            if let Some(cap) = &mut self.paths[i].cap {
                cap.usage.adopt(token, id, c.tx_bytes + c.rx_bytes);
            }
        }
    }

    /// Count what each capped path carried since the last tick; a budget
    /// spent or renewed changes the path's hints at once (here and at the
    /// concentrator) and is written to the usage file at once.
    pub(super) async fn caps_tick(&mut self) -> Handled {
        if self.ledger.is_none() {
            return Ok(());
        }
        let now = chrono::Local::now().naive_local();
        let (mut grown, mut changed, mut urgent) = (0, false, false);
        for i in 0..self.paths.len() {
            let p = &self.paths[i];
            if p.cap.is_none() {
                continue;
            }
            let subflow = match self.token {
                Some(token) if p.state.established() => {
                    let c = counters(&self.maps, token, p.id);
                    Some((token, p.id, c.tx_bytes + c.rx_bytes))
                }
                _ => None,
            };
            let p = &mut self.paths[i];
            let Some(cap) = &mut p.cap else { continue };
            let before = cap.usage.clone();
            let change = cap.update(now, subflow);
            grown += cap.usage.used_bytes.saturating_sub(before.used_bytes);
            changed |= cap.usage != before;
            if let Some(change) = change {
                urgent = true;
                let (used_mb, budget_mb) = (cap.usage.used_bytes as f64 / 1e6, cap.cfg.budget_mb);
                match change {
                    Change::Spent => tracing::warn!(
                        path = p.cfg.display_name(),
                        used_mb,
                        budget_mb,
                        "data cap spent: the path is {} until it renews",
                        cap.cfg.when_spent.name()
                    ),
                    Change::Renewed => tracing::info!(path = p.cfg.display_name(), budget_mb, "data cap renewed"),
                }
                cap.hint_pending = true;
            }
            if cap.hint_pending {
                // Until the data path and the concentrator have it: a failed
                // map write is tried again at the next tick.
                match self.push_hint(i).await {
                    Ok(_) => self.paths[i].cap.as_mut().expect("capped").hint_pending = false,
                    Err(e) => tracing::warn!(
                        path = self.paths[i].name(),
                        error = format!("{e:#}"),
                        "cannot apply the data cap yet"
                    ),
                }
            }
        }
        if changed {
            let ledger = self.ledger.as_mut().expect("checked above");
            ledger.changed(urgent, grown, usages(&self.paths))?;
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
