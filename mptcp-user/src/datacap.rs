//! Data caps: a client path's byte budget per period, as a metered plan (an
//! LTE SIM) counts it. The data path counts every byte a subflow sends and
//! receives (`SUBFLOW_STATS`); the controller adds what its own control
//! messages take, folds both into the path's usage on every tick, and once
//! the budget is spent makes the path backup-only or leaves it unused — in
//! its own data path and, by a hint, in the concentrator's, which schedules
//! the return direction. The usage is kept in a file, so a restart (or a
//! reboot) does not hand out the budget twice.
//!
//! Counted between two ticks (50 ms on a busy path) the cap can be passed by
//! what the path carries in that time; at 100 Mbit/s some 600 kB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};

use crate::control::PathHint;

/// A client path's data cap: its budget and what happens once it is spent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapConfig {
    /// The budget per period, MB (10^6 bytes): both directions, as the data
    /// path counts them (the tunnel's IP and UDP headers included) plus the
    /// controller's probes on the path.
    pub budget_mb: f64,
    /// How often the budget renews.
    #[serde(default)]
    pub period: Period,
    /// The day it renews, at local midnight: day of the month for a month
    /// (1–31; past the month's last day, its last day), day of the week for a
    /// week (1 = Monday … 7 = Sunday); ignored for a day.
    #[serde(default = "first_day")]
    pub renews_on: u32,
    /// What the path does once the budget is spent.
    #[serde(default)]
    pub when_spent: WhenSpent,
}

fn first_day() -> u32 {
    1
}

/// How often a budget renews.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    Day,
    Week,
    #[default]
    Month,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// What a path whose budget is spent does until it renews.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WhenSpent {
    /// A backup path until it renews: used, like any backup path, only
    /// while no regular path is up (a failover link: costly, but better
    /// than none).
    #[default]
    Backup,
    /// Not used at all, even with every other path down.
    Unused,
}

impl WhenSpent {
    pub fn name(self) -> &'static str {
        match self {
            WhenSpent::Backup => "backup",
            WhenSpent::Unused => "unused",
        }
    }
}

impl CapConfig {
    pub fn budget_bytes(&self) -> u64 {
        (self.budget_mb * 1e6) as u64
    }

    pub fn validate(&self, path: &str) -> Result<()> {
        if !(self.budget_mb.is_finite() && self.budget_mb > 0.0) {
            bail!("path {path}: cap.budget_mb must be a positive number of MB");
        }
        let days = match self.period {
            Period::Month => 1..=31,
            Period::Week => 1..=7,
            Period::Day => return Ok(()),
        };
        if !days.contains(&self.renews_on) {
            bail!(
                "path {path}: cap.renews_on {} is not a day of the {} ({}–{})",
                self.renews_on,
                self.period.name(),
                days.start(),
                days.end()
            );
        }
        Ok(())
    }

    /// The period that holds `now` (local time): its start and the next
    /// renewal.
    pub fn period_bounds(&self, now: NaiveDateTime) -> (NaiveDateTime, NaiveDateTime) {
        let today = now.date();
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists");
        match self.period {
            Period::Day => (midnight(today), midnight(today + Days::new(1))),
            Period::Week => {
                let back = (today.weekday().number_from_monday() + 7 - self.renews_on) % 7;
                let start = today - Days::new(back as u64);
                (midnight(start), midnight(start + Days::new(7)))
            }
            Period::Month => {
                let this_month = renewal_in(today.year(), today.month(), self.renews_on);
                let start = if today >= this_month {
                    this_month
                } else {
                    let prev = today.with_day(1).expect("day 1 exists") - Months::new(1);
                    renewal_in(prev.year(), prev.month(), self.renews_on)
                };
                let next = start.with_day(1).expect("day 1 exists") + Months::new(1);
                (midnight(start), midnight(renewal_in(next.year(), next.month(), self.renews_on)))
            }
        }
    }
}

/// Day `day` of a month, or its last day if it has fewer.
fn renewal_in(year: i32, month: u32, day: u32) -> NaiveDate {
    (1..=day).rev().find_map(|d| NaiveDate::from_ymd_opt(year, month, d)).expect("every month has a day 1")
}

/// A local time as Unix seconds (a time a clock change skips: the hour after).
fn unix(t: NaiveDateTime) -> i64 {
    match chrono::Local.from_local_datetime(&t).earliest() {
        Some(t) => t.timestamp(),
        None => {
            chrono::Local.from_local_datetime(&(t + chrono::Duration::hours(1))).earliest().map_or(0, |t| t.timestamp())
        }
    }
}

/// What a path used in its current period, as kept in the usage file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// The local date the period began: a period whose start date is later
    /// is a new one (so a change of time zone starts none).
    pub period: Option<NaiveDate>,
    /// When it began, Unix seconds (for status).
    pub period_start: i64,
    pub used_bytes: u64,
    /// The subflow whose data-path counters were read last (its connection's
    /// token and its id) and their sum then: an adopted subflow's counters
    /// go on from there; a new subflow's begin at 0.
    pub token: u32,
    pub subflow: u8,
    pub seen: u64,
}

impl Usage {
    /// Subflow `id` of connection `token`, its counters (bytes sent plus
    /// received) read now: counts what they grew by since the last read.
    pub fn count_subflow(&mut self, token: u32, id: u8, counters: u64) {
        if !self.follows(token, id, counters) {
            // Another subflow (a new connection): its counters began at 0.
            (self.token, self.subflow, self.seen) = (token, id, 0);
        }
        self.used_bytes += counters - self.seen;
        self.seen = counters;
    }

    /// A subflow this controller took over from a previous one. Unless the
    /// file followed that very subflow, what its counters hold was carried
    /// before (and maybe in another period, or counted under another path):
    /// counting starts from them.
    pub fn adopt(&mut self, token: u32, id: u8, counters: u64) {
        if !self.follows(token, id, counters) {
            (self.token, self.subflow, self.seen) = (token, id, counters);
        }
    }

    /// Whether these are the counters of the subflow read last, grown since.
    fn follows(&self, token: u32, id: u8, counters: u64) -> bool {
        token == self.token && id == self.subflow && counters >= self.seen
    }

    /// The period that began on local date `start` (at Unix time
    /// `start_unix`) holds now: if it is a new one, nothing is used in it
    /// yet. Whether it was.
    pub fn renew(&mut self, start: NaiveDate, start_unix: i64) -> bool {
        if self.period.is_none_or(|p| start > p) {
            self.period = Some(start);
            self.period_start = start_unix;
            self.used_bytes = 0;
            return true;
        }
        false
    }
}

/// One capped path in the controller.
#[derive(Debug)]
pub struct PathCap {
    pub cfg: CapConfig,
    pub usage: Usage,
    /// The budget is spent (as last judged): the hint says so.
    pub spent: bool,
    /// The next renewal, Unix seconds.
    pub renews_at: i64,
    /// The path's hints could not be changed after the last change (a map
    /// write failed): tried again every tick.
    pub hint_pending: bool,
    /// Bytes of control messages sent and received on the path since the
    /// last tick (wire bytes: IP and UDP headers included).
    control: AtomicU64,
}

/// What a tick found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The budget ran out.
    Spent,
    /// A new period began: the path is used as configured again.
    Renewed,
}

impl PathCap {
    pub fn new(cfg: CapConfig, usage: Usage) -> PathCap {
        PathCap { cfg, usage, spent: false, renews_at: 0, hint_pending: false, control: AtomicU64::new(0) }
    }

    /// A control message of `len` bytes (UDP payload) crossed the path.
    pub fn count_control(&self, len: usize, ipv6: bool) {
        let headers = if ipv6 { 48 } else { 28 };
        self.control.fetch_add((len + headers) as u64, Ordering::Relaxed);
    }

    /// Bring the usage up to date at local time `now`: a renewal first, then
    /// the subflow's counters (None: no subflow; else token, subflow id and
    /// counters) and the control bytes.
    pub fn update(&mut self, now: NaiveDateTime, subflow: Option<(u32, u8, u64)>) -> Option<Change> {
        let (start, next) = self.cfg.period_bounds(now);
        self.renews_at = unix(next);
        self.usage.renew(start.date(), unix(start));
        if let Some((token, id, counters)) = subflow {
            self.usage.count_subflow(token, id, counters);
        }
        self.usage.used_bytes += self.control.swap(0, Ordering::Relaxed);
        let spent = self.usage.used_bytes >= self.cfg.budget_bytes();
        let was = std::mem::replace(&mut self.spent, spent);
        match (was, spent) {
            (false, true) => Some(Change::Spent),
            (true, false) => Some(Change::Renewed),
            _ => None,
        }
    }

    /// The path's configured hint as the budget leaves it.
    pub fn apply(&self, mut hint: PathHint) -> PathHint {
        if self.spent {
            match self.cfg.when_spent {
                WhenSpent::Backup => hint.backup = true,
                WhenSpent::Unused => hint.unused = true,
            }
        }
        hint
    }

    /// The usage could not be known (a corrupt usage file): taken as spent
    /// for the period that holds `now`, the side a metered plan's bill is safe on.
    pub fn assume_spent(&mut self, now: NaiveDateTime) {
        let (start, _) = self.cfg.period_bounds(now);
        self.usage.renew(start.date(), unix(start));
        self.usage.used_bytes = self.usage.used_bytes.max(self.cfg.budget_bytes());
    }

    pub fn status(&self, path: &str) -> mptcp_common::status::CapStatus {
        mptcp_common::status::CapStatus {
            path: path.to_string(),
            budget_bytes: self.cfg.budget_bytes(),
            used_bytes: self.usage.used_bytes,
            period: self.cfg.period.name().to_string(),
            period_start: self.usage.period_start,
            renews_at: self.renews_at,
            spent: self.spent,
            when_spent: self.cfg.when_spent.name().to_string(),
        }
    }
}

/// The usage file: every path's usage by path name (kept for paths whose
/// cap is gone too, so putting it back does not hand the budget out again),
/// written whole (a temporary file, synced, then renamed) when a budget is
/// spent or renews, after every [`Ledger::GROWN`] bytes, at least every
/// [`Ledger::EVERY`] while anything changed, and when the controller stops.
#[derive(Debug)]
pub struct Ledger {
    file: PathBuf,
    written: Instant,
    /// Bytes counted since the last write.
    unwritten: u64,
    dirty: bool,
    /// Entries of paths without a cap now.
    others: BTreeMap<String, Usage>,
}

/// What [`Ledger::open`] found.
pub struct Opened {
    pub ledger: Ledger,
    pub usage: BTreeMap<String, Usage>,
    /// The file could not be read as usage: moved to this name, and what
    /// the capped paths used is unknown.
    pub corrupt: Option<PathBuf>,
}

impl Ledger {
    const EVERY: Duration = Duration::from_secs(60);
    const GROWN: u64 = 1_000_000;

    /// `<state_dir>/<instance>.usage.json`.
    pub fn file(state_dir: &Path, instance: &str) -> PathBuf {
        state_dir.join(format!("{instance}.usage.json"))
    }

    /// Open the file (none yet: nothing used). One that cannot be read as
    /// usage is moved aside rather than stop the bond from starting.
    pub fn open(file: PathBuf) -> Result<Opened> {
        let (usage, corrupt) = match std::fs::read_to_string(&file) {
            Ok(s) => match serde_json::from_str(&s) {
                Ok(usage) => (usage, None),
                Err(_) => {
                    let aside = file.with_extension("json.corrupt");
                    std::fs::rename(&file, &aside)
                        .with_context(|| format!("cannot move the corrupt usage file {} aside", file.display()))?;
                    (BTreeMap::new(), Some(aside))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), None),
            Err(e) => return Err(e).with_context(|| format!("cannot read usage file {}", file.display())),
        };
        let ledger = Ledger { file, written: Instant::now(), unwritten: 0, dirty: false, others: BTreeMap::new() };
        Ok(Opened { ledger, usage, corrupt })
    }

    /// Entries of paths that have no cap now, written back with the rest.
    pub fn keep(&mut self, others: BTreeMap<String, Usage>) {
        self.others = others;
    }

    /// The usage grew by `grown` bytes (or a period began); written now if
    /// `urgent`, or if enough was counted or enough time passed since the
    /// last write.
    pub fn changed<'a>(
        &mut self,
        urgent: bool,
        grown: u64,
        all: impl Iterator<Item = (&'a str, &'a Usage)>,
    ) -> Result<()> {
        self.dirty = true;
        self.unwritten += grown;
        if urgent || self.unwritten >= Self::GROWN || self.written.elapsed() >= Self::EVERY {
            self.write(all)?;
        }
        Ok(())
    }

    /// Write if anything changed since the last write.
    pub fn flush<'a>(&mut self, all: impl Iterator<Item = (&'a str, &'a Usage)>) -> Result<()> {
        if self.dirty {
            self.write(all)?;
        }
        Ok(())
    }

    fn write<'a>(&mut self, all: impl Iterator<Item = (&'a str, &'a Usage)>) -> Result<()> {
        // A failed write is tried again after the usual interval, not every tick.
        self.written = Instant::now();
        let mut map: BTreeMap<String, &Usage> = self.others.iter().map(|(k, v)| (k.clone(), v)).collect();
        map.extend(all.map(|(k, v)| (k.to_string(), v)));
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = self.file.with_extension("json.tmp");
        let synced = |path: &Path, bytes: &[u8]| -> std::io::Result<()> {
            let mut f = std::fs::File::create(path)?;
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()
        };
        synced(&tmp, &serde_json::to_vec_pretty(&map)?).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file).with_context(|| format!("cannot write {}", self.file.display()))?;
        // The rename itself survives a power cut once the directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
        self.dirty = false;
        self.unwritten = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn cap(period: Period, renews_on: u32) -> CapConfig {
        CapConfig { budget_mb: 1.0, period, renews_on, when_spent: WhenSpent::Backup }
    }

    #[test]
    fn periods_begin_at_local_midnight_of_the_plans_day() {
        let b = |c: CapConfig, now| {
            let (s, n) = c.period_bounds(at(now));
            (s.format("%Y-%m-%d %H:%M").to_string(), n.format("%Y-%m-%d %H:%M").to_string())
        };
        let s = |a: &str, z: &str| (a.to_string(), z.to_string());
        assert_eq!(b(cap(Period::Month, 15), "2026-12-03 19:00"), s("2026-11-15 00:00", "2026-12-15 00:00"));
        assert_eq!(b(cap(Period::Month, 15), "2026-12-15 00:00"), s("2026-12-15 00:00", "2027-01-15 00:00"));
        assert_eq!(b(cap(Period::Month, 1), "2026-12-31 23:59"), s("2026-12-01 00:00", "2027-01-01 00:00"));
        // The 31st in a month of 30 days (or February) is its last day.
        assert_eq!(b(cap(Period::Month, 31), "2027-02-28 08:00"), s("2027-02-28 00:00", "2027-03-31 00:00"));
        assert_eq!(b(cap(Period::Month, 31), "2027-02-27 08:00"), s("2027-01-31 00:00", "2027-02-28 00:00"));
        assert_eq!(b(cap(Period::Month, 30), "2027-03-01 00:00"), s("2027-02-28 00:00", "2027-03-30 00:00"));
        // 2026-12-03 is a Thursday.
        assert_eq!(b(cap(Period::Week, 1), "2026-12-03 19:00"), s("2026-11-30 00:00", "2026-12-07 00:00"));
        assert_eq!(b(cap(Period::Week, 4), "2026-12-03 00:00"), s("2026-12-03 00:00", "2026-12-10 00:00"));
        assert_eq!(b(cap(Period::Week, 5), "2026-12-03 19:00"), s("2026-11-27 00:00", "2026-12-04 00:00"));
        assert_eq!(b(cap(Period::Day, 1), "2026-12-03 19:00"), s("2026-12-03 00:00", "2026-12-04 00:00"));
    }

    #[test]
    fn bad_caps_are_refused_naming_the_field() {
        let e = |c: CapConfig| c.validate("lte").unwrap_err().to_string();
        assert!(e(CapConfig { budget_mb: 0.0, ..cap(Period::Month, 1) }).contains("cap.budget_mb"));
        assert!(e(CapConfig { budget_mb: f64::NAN, ..cap(Period::Month, 1) }).contains("cap.budget_mb"));
        assert!(e(cap(Period::Month, 0)).contains("cap.renews_on 0 is not a day of the month"));
        assert!(e(cap(Period::Week, 8)).contains("week (1–7)"));
        cap(Period::Day, 99).validate("lte").unwrap();
    }

    #[test]
    fn usage_counts_what_the_counters_grew_by_across_subflows_and_adoption() {
        let mut u = Usage::default();
        u.count_subflow(7, 1, 1000);
        u.count_subflow(7, 1, 1500);
        assert_eq!(u.used_bytes, 1500);
        // Counters that went back (the subflow's entry made again): from 0.
        u.count_subflow(7, 1, 200);
        assert_eq!(u.used_bytes, 1700);
        // A new connection.
        u.count_subflow(9, 1, 300);
        assert_eq!(u.used_bytes, 2000);
        // A restarted controller that adopts the subflow the file followed
        // reads on from what it saw: the bytes between the last write and
        // the restart are counted once.
        let mut adopted = u.clone();
        adopted.adopt(9, 1, 900);
        adopted.count_subflow(9, 1, 900);
        assert_eq!(adopted.used_bytes, 2600);
        // One the file did not follow (no entry, another connection or
        // another subflow id): what its counters hold is not this period's
        // to count; from there on it is.
        for (token, id) in [(9, 2), (11, 1)] {
            let mut other = u.clone();
            other.adopt(token, id, 50_000_000);
            other.count_subflow(token, id, 50_000_100);
            assert_eq!(other.used_bytes, 2100, "{token}/{id}");
        }
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert!(u.renew(day, 5), "the first period");
        assert_eq!(u.used_bytes, 0);
        u.used_bytes = 10;
        // The same local date at another Unix time (the time zone changed): no new period.
        assert!(!u.renew(day, 5 + 3600));
        assert_eq!(u.used_bytes, 10);
        assert!(u.renew(day.succ_opt().unwrap(), 86_405));
        assert_eq!((u.used_bytes, u.period_start), (0, 86_405));
    }

    #[test]
    fn a_spent_budget_makes_the_path_backup_or_unused_until_it_renews() {
        let now = at("2026-12-03 19:00");
        let mut c = PathCap::new(CapConfig { budget_mb: 0.01, ..cap(Period::Day, 1) }, Usage::default());
        assert_eq!(c.update(now, Some((1, 0, 5_000))), None);
        assert!(!c.spent && c.apply(PathHint::default()) == PathHint::default());
        c.count_control(100, false);
        assert_eq!(c.update(now, Some((1, 0, 9_800))), None);
        assert_eq!(c.usage.used_bytes, 9_928);
        c.count_control(50, true);
        assert_eq!(c.update(now, Some((1, 0, 9_800))), Some(Change::Spent));
        assert!(c.apply(PathHint::default()).backup);
        assert_eq!(c.update(now, Some((1, 0, 20_000))), None);
        c.cfg.when_spent = WhenSpent::Unused;
        let h = c.apply(PathHint::default());
        assert!(h.unused && !h.backup);
        // Midnight: a new day, a new budget.
        assert_eq!(c.update(at("2026-12-04 00:00"), Some((1, 0, 20_001))), Some(Change::Renewed));
        assert_eq!((c.spent, c.usage.used_bytes), (false, 1));
        assert_eq!(c.apply(PathHint::default()), PathHint::default());
        // Unknown usage is taken as spent.
        c.assume_spent(at("2026-12-04 10:00"));
        assert_eq!(c.update(at("2026-12-04 10:00"), None), Some(Change::Spent));
        assert_eq!(c.update(at("2026-12-05 00:00"), None), Some(Change::Renewed));
    }

    #[test]
    fn the_ledger_keeps_usage_across_a_restart_and_moves_a_corrupt_file_aside() {
        let dir = std::env::temp_dir().join(format!("mptcp-usage-test-{}", std::process::id()));
        let file = Ledger::file(&dir, "t");
        let mut o = Ledger::open(file.clone()).unwrap();
        assert!(o.usage.is_empty() && o.corrupt.is_none());
        let u = Usage { period_start: 5, used_bytes: 123, token: 4, seen: 99, ..Default::default() };
        let gone = Usage { used_bytes: 7, ..Default::default() };
        o.ledger.keep([("old".to_string(), gone.clone())].into());
        o.ledger.changed(false, 10, [("lte", &u)].into_iter()).unwrap();
        assert!(!file.exists(), "10 bytes are not worth a write");
        o.ledger.changed(true, 0, [("lte", &u)].into_iter()).unwrap();
        let back = Ledger::open(file.clone()).unwrap();
        assert_eq!((back.usage.get("lte"), back.usage.get("old")), (Some(&u), Some(&gone)), "kept, uncapped paths too");
        std::fs::write(&file, "{").unwrap();
        let o = Ledger::open(file.clone()).unwrap();
        assert!(o.usage.is_empty() && !file.exists());
        assert_eq!(std::fs::read_to_string(o.corrupt.unwrap()).unwrap(), "{", "moved aside as it was");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
