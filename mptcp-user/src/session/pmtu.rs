//! A path's MTU, found and kept with padded probes (after DPLPMTUD, RFC 8899):
//! no ICMP needed, which NATs, firewalls and carriers drop.
//!
//! A full round sends one authenticated, don't-fragment probe of each
//! candidate size (the whole outer IP packet) at once; the concentrator
//! answers each it receives, and when the round's time is up the path's MTU
//! is the largest size answered. A confirming round (the current size only)
//! follows every [`CONFIRM_US`] on an idle path and every [`BUSY_CONFIRM_US`]
//! on one that carried traffic within the last [`CONFIRM_US`] (where a drop
//! black-holes full-size packets and costs most; one probe a second is nothing
//! beside the traffic; and the black hole soon stalls the traffic, so a path
//! that just went quiet counts as busy), a full
//! one every [`SEARCH_US`] and [`RETRY_US`] after any round that missed, so
//! a busy path whose MTU drops is found within about two seconds. A larger size is taken
//! at once; a smaller one only when two rounds in a row missed the current
//! one, so one lost probe does not shrink the bond.
//!
//! An ICMP "fragmentation needed" / "packet too big" for the path is a hint,
//! never the answer (anyone can forge one): it starts a full round at once
//! (at most one a [`RETRY_US`]), and if that round's authenticated answers
//! confirm a smaller size, it is taken without waiting for a second miss.
//!
//! Pure: the client sends what [`Pmtu::due`] asks for and feeds back
//! answers, hints and time.

/// Outer packet sizes tried below the uplink's own MTU, largest first
/// (Ethernet, PPPoE, DS-Lite and common LTE and tunnel MTUs), down to IPv6's
/// minimum.
pub const CANDIDATES: [u32; 12] = [1500, 1492, 1480, 1472, 1460, 1450, 1440, 1420, 1400, 1380, 1350, 1280];
pub const CONFIRM_US: u64 = 10_000_000;
pub const BUSY_CONFIRM_US: u64 = 1_000_000;
pub const SEARCH_US: u64 = 60_000_000;
pub const RETRY_US: u64 = 1_000_000;
/// Nothing smaller is probed: IPv6's minimum, and below any real path.
pub const MIN_MTU: u32 = 1280;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pmtu {
    /// The local uplink's MTU: nothing larger is tried.
    max: u32,
    /// The path's MTU, once a round has found one.
    mtu: Option<u32>,
    round: Option<Round>,
    rounds: u32,
    next_us: u64,
    /// When the last round was concluded.
    concluded_us: u64,
    /// When the path last carried traffic.
    busy_us: Option<u64>,
    searched_us: Option<u64>,
    /// Rounds in a row that did not answer the current size.
    misses: u32,
    /// An ICMP message said the path carries only this much; the next round
    /// checks it.
    hint: Option<u32>,
    /// When the last hint was taken (hints come at most one a RETRY_US).
    hinted_us: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Round {
    id: u32,
    full: bool,
    started_us: u64,
    largest: u32,
}

impl Pmtu {
    /// A path whose uplink carries at most `max` bytes; a full round is due at once.
    pub fn new(max: u32) -> Pmtu {
        Pmtu {
            max,
            mtu: None,
            round: None,
            rounds: 0,
            next_us: 0,
            concluded_us: 0,
            busy_us: None,
            searched_us: None,
            misses: 0,
            hint: None,
            hinted_us: None,
        }
    }

    /// The path's MTU, once known.
    pub fn mtu(&self) -> Option<u32> {
        self.mtu
    }

    /// The sizes to probe now, with the round's id, if a round is due on a
    /// path that is `busy` (carrying traffic) or not.
    pub fn due(&mut self, now_us: u64, busy: bool) -> Option<(u32, Vec<u32>)> {
        if busy {
            self.busy_us = Some(now_us);
        }
        if self.round.is_some() || now_us < self.next_us {
            return None;
        }
        let settled = self.mtu.is_some() && self.misses == 0 && self.hint.is_none();
        let lately_busy = self.busy_us.is_some_and(|t| now_us.saturating_sub(t) < CONFIRM_US);
        if settled && !lately_busy && now_us.saturating_sub(self.concluded_us) < CONFIRM_US {
            return None;
        }
        let full = self.mtu.is_none()
            || self.misses > 0
            || self.hint.is_some()
            || self.searched_us.is_none_or(|t| now_us.saturating_sub(t) >= SEARCH_US);
        let sizes: Vec<u32> = match (full, self.mtu) {
            (false, Some(m)) => vec![m],
            _ => {
                self.searched_us = Some(now_us);
                // A hinted size is tried too: it need not be a candidate.
                let hint = self.hint.filter(|&h| h < self.max && h >= MIN_MTU);
                let mut s: Vec<u32> = std::iter::once(self.max)
                    .chain(CANDIDATES.iter().copied().filter(|&c| c < self.max))
                    .chain(hint)
                    .collect();
                s.sort_unstable_by(|a, b| b.cmp(a));
                s.dedup();
                s
            }
        };
        self.rounds = self.rounds.wrapping_add(1);
        self.round = Some(Round { id: self.rounds, full, started_us: now_us, largest: 0 });
        Some((self.rounds, sizes))
    }

    /// An ICMP message says the path carries at most `mtu`: a full round is
    /// due at once, if that is news (smaller than what is known) and no hint
    /// was taken within the last [`RETRY_US`]. Whether a hint was taken.
    pub fn on_too_big(&mut self, now_us: u64, mtu: u32) -> bool {
        let news = self.mtu.is_some_and(|m| mtu < m);
        let recent = self.hinted_us.is_some_and(|t| now_us.saturating_sub(t) < RETRY_US);
        if !news || recent {
            return false;
        }
        self.hint = Some(mtu);
        self.hinted_us = Some(now_us);
        if self.round.is_none() {
            self.next_us = now_us;
        }
        true
    }

    /// The concentrator answered the probe of `size` in round `id`.
    pub fn on_answer(&mut self, id: u32, size: u32) {
        if let Some(r) = &mut self.round {
            if r.id == id && size <= self.max {
                r.largest = r.largest.max(size);
            }
        }
    }

    /// Time passes: a round whose answers had `wait_us` to come is concluded.
    /// Returns the path's MTU when it changed.
    pub fn on_tick(&mut self, now_us: u64, wait_us: u64) -> Option<u32> {
        let r = self.round.as_ref()?;
        if now_us.saturating_sub(r.started_us) < wait_us {
            return None;
        }
        let r = self.round.take()?;
        let before = self.mtu;
        // A round that checked a hint (started after it came) confirms a
        // smaller size at once.
        let hinted = r.full && self.hint.is_some() && self.hinted_us.is_some_and(|t| r.started_us >= t);
        if hinted {
            self.hint = None;
        }
        match self.mtu {
            // Nothing answered at all: the path is down or lossy, not smaller.
            _ if r.largest == 0 => self.misses += 1,
            None => self.mtu = Some(r.largest),
            Some(m) if r.largest >= m => {
                self.misses = 0;
                if r.full {
                    self.mtu = Some(r.largest);
                }
            }
            Some(_) if !r.full => self.misses += 1,
            Some(_) if hinted => {
                self.mtu = Some(r.largest);
                self.misses = 0;
            }
            Some(_) => {
                self.misses += 1;
                if self.misses >= 2 {
                    self.mtu = Some(r.largest);
                    self.misses = 0;
                }
            }
        }
        self.concluded_us = now_us;
        self.next_us = now_us
            + if self.hint.is_some() {
                0 // a hint came during this round: check it now
            } else if self.misses > 0 {
                RETRY_US
            } else {
                BUSY_CONFIRM_US
            };
        (self.mtu != before).then_some(self.mtu).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: u64 = 300_000;

    /// One round at `now`: the path answers every probe up to `path_mtu`
    /// (0: nothing). The sizes probed, and the MTU if it changed.
    fn round(p: &mut Pmtu, now: u64, path_mtu: u32) -> (Vec<u32>, Option<u32>) {
        let (id, sizes) = p.due(now, false).expect("a round is due");
        for &s in &sizes {
            if s <= path_mtu {
                p.on_answer(id, s);
            }
        }
        assert_eq!(p.on_tick(now + WAIT - 1, WAIT), None, "answers have until the wait is over");
        (sizes, p.on_tick(now + WAIT, WAIT))
    }

    #[test]
    fn the_first_round_finds_the_largest_size_that_crosses() {
        let mut p = Pmtu::new(1500);
        assert_eq!(p.mtu(), None);
        let (sizes, found) = round(&mut p, 0, 1400);
        assert_eq!(sizes[..3], [1500, 1492, 1480], "largest first, from the uplink's MTU");
        assert_eq!(*sizes.last().unwrap(), 1280);
        assert_eq!(found, Some(1400));
        // An uplink MTU that is no candidate is tried first.
        let mut p = Pmtu::new(1436);
        let (sizes, found) = round(&mut p, 0, 1500);
        assert_eq!((sizes[0], sizes[1], found), (1436, 1420, Some(1436)));
    }

    #[test]
    fn confirmations_keep_it_and_a_drop_is_found_after_two_misses() {
        let mut p = Pmtu::new(1500);
        round(&mut p, 0, 1500);
        assert_eq!(p.due(WAIT + 1, false), None, "not before the confirmation interval");
        assert_eq!(p.due(WAIT + BUSY_CONFIRM_US - 1, true), None, "nor before the busy one");
        let t = WAIT + CONFIRM_US;
        assert_eq!(round(&mut p, t, 1500), (vec![1500], None), "a confirmation probes the current size only");
        // The path's MTU drops to 1400: the confirmation misses, a full round
        // follows a second later, still one miss; the second full round lowers it.
        let t = t + WAIT + CONFIRM_US;
        assert_eq!(round(&mut p, t, 1400), (vec![1500], None));
        let t = t + WAIT + RETRY_US;
        let (sizes, found) = round(&mut p, t, 1400);
        assert_eq!((sizes.len() > 1, found), (true, Some(1400)));
        assert_eq!(p.mtu(), Some(1400));
    }

    #[test]
    fn one_lost_probe_does_not_shrink_it_and_silence_changes_nothing() {
        let mut p = Pmtu::new(1500);
        round(&mut p, 0, 1500);
        let t = WAIT + CONFIRM_US;
        assert_eq!(round(&mut p, t, 1400).1, None, "one miss");
        let t = t + WAIT + RETRY_US;
        assert_eq!(round(&mut p, t, 1500).1, None, "answered again: kept");
        assert_eq!(p.mtu(), Some(1500));
        // A path that answers nothing (down) keeps its MTU, and is retried soon.
        let t = t + WAIT + CONFIRM_US;
        for k in 0..5 {
            assert_eq!(round(&mut p, t + k * (WAIT + RETRY_US), 0).1, None);
        }
        assert_eq!(p.mtu(), Some(1500));
    }

    #[test]
    fn a_larger_mtu_is_taken_at_the_next_full_round_and_stale_answers_are_ignored() {
        let mut p = Pmtu::new(1500);
        assert_eq!(round(&mut p, 0, 1400).1, Some(1400));
        // Confirmations only probe 1400; the full round after SEARCH_US finds 1500.
        let mut t = WAIT;
        loop {
            t += CONFIRM_US;
            let (sizes, found) = round(&mut p, t, 1500);
            if sizes.len() > 1 {
                assert_eq!(found, Some(1500));
                break;
            }
            t += WAIT;
            assert!(t < 2 * SEARCH_US, "no full round came");
        }
        // An answer from another round counts for nothing.
        let (id, _) = p.due(t + WAIT + CONFIRM_US, false).unwrap();
        p.on_answer(id.wrapping_sub(1), 1500);
        assert_eq!(p.on_tick(t + 2 * WAIT + CONFIRM_US, WAIT), None);
        assert_eq!(p.mtu(), Some(1500), "a missed confirmation alone changes nothing");
    }

    #[test]
    fn a_busy_path_is_confirmed_every_second_and_a_drop_found_within_about_two() {
        let mut p = Pmtu::new(1500);
        round(&mut p, 0, 1500);
        let busy_round = |p: &mut Pmtu, now: u64, path_mtu: u32| {
            let (id, sizes) = p.due(now, true).expect("due on a busy path");
            for &s in sizes.iter().filter(|&&s| s <= path_mtu) {
                p.on_answer(id, s);
            }
            p.on_tick(now + WAIT, WAIT)
        };
        let mut t = WAIT + BUSY_CONFIRM_US;
        assert_eq!(busy_round(&mut p, t, 1500), None, "confirmed a second later");
        // The MTU drops just after a confirmation: the next one misses, the
        // full round a second later lowers it.
        let dropped = t + WAIT;
        t += WAIT + BUSY_CONFIRM_US;
        assert_eq!(busy_round(&mut p, t, 1380), None);
        t += WAIT + RETRY_US;
        assert_eq!(busy_round(&mut p, t, 1380), Some(1380));
        let found = t + WAIT - dropped;
        assert!(found <= 2 * (BUSY_CONFIRM_US + WAIT) + WAIT, "found {found} µs after the drop");
        // A path that just went quiet (the black hole stalls its traffic)
        // is still confirmed every second; one idle for long, every 10 s.
        let quiet = t + WAIT + BUSY_CONFIRM_US;
        let (id, sizes) = p.due(quiet, false).expect("lately busy");
        p.on_answer(id, sizes[0]);
        p.on_tick(quiet + WAIT, WAIT);
        let idle = t + CONFIRM_US + 1;
        assert_eq!(p.due(idle, false), None, "idle for longer than CONFIRM_US");
    }

    #[test]
    fn an_icmp_hint_starts_a_round_at_once_and_only_answers_lower_the_mtu() {
        let mut p = Pmtu::new(1500);
        round(&mut p, 0, 1500);
        let t = WAIT + 1000;
        assert!(!p.on_too_big(t, 1500), "no news");
        assert!(!p.on_too_big(t, 1600), "no news either");
        assert!(p.on_too_big(t, 1436));
        assert!(!p.on_too_big(t + 1, 1280), "one hint a second");
        assert!(p.due(t, false).is_some_and(|(_, sizes)| sizes.contains(&1436)), "the hinted size is tried too");
        p.round = None; // (that round aside)
        p.next_us = t;
        // The round comes at once, in full; its answers (up to 1400: the
        // hint was off) are what counts, and one such round is enough.
        let mut hinted_sizes = CANDIDATES.to_vec();
        hinted_sizes.insert(7, 1436);
        assert_eq!(round(&mut p, t, 1400), (hinted_sizes, Some(1400)));
        // A forged hint: the path still answers 1400, nothing changes.
        let t = t + WAIT + RETRY_US;
        assert!(p.on_too_big(t, 1280));
        assert_eq!(round(&mut p, t, 1400).1, None);
        assert_eq!(p.mtu(), Some(1400));
        // A hint during a confirmation is checked as soon as it ends.
        let t = t + WAIT + RETRY_US;
        let (id, _) = p.due(t, true).expect("a confirmation");
        assert!(p.on_too_big(t + 1, 1280));
        p.on_answer(id, 1400);
        p.on_tick(t + WAIT, WAIT);
        assert_eq!(p.due(t + WAIT, true).map(|(_, sizes)| sizes.len()), Some(CANDIDATES.len()));
        p.on_tick(t + 2 * WAIT, WAIT);
        // Nor does a hint whose round nothing answers (the path is down).
        let t = t + WAIT + RETRY_US;
        assert!(p.on_too_big(t, 1280));
        assert_eq!(round(&mut p, t, 0).1, None);
        assert_eq!(p.mtu(), Some(1400));
    }
}
