//! At most one of a kind of thing a second — a log line, an answer to an
//! unauthenticated message — saying how many were left out, so a flood of
//! bad input costs a line a second and no more.

/// Allows one event a second and counts the rest.
#[derive(Default)]
pub struct Throttle {
    last_us: u64,
    left_out: u64,
}

impl Throttle {
    /// Whether to go ahead now: `Some(events left out since the last one)`.
    pub fn allow(&mut self, now_us: u64) -> Option<u64> {
        if self.last_us != 0 && now_us.saturating_sub(self.last_us) < 1_000_000 {
            self.left_out += 1;
            return None;
        }
        self.last_us = now_us;
        Some(std::mem::take(&mut self.left_out))
    }
}

/// A budget of `per_second` events a second, of which up to that many may
/// come at once: a token bucket.
pub struct Budget {
    per_second: u64,
    /// Tokens, in millionths (µs × per_second).
    tokens: u64,
    last_us: u64,
}

impl Budget {
    pub fn new(per_second: u64) -> Budget {
        Budget { per_second, tokens: per_second * 1_000_000, last_us: 0 }
    }

    /// Spend one event of the budget now, if there is one left.
    pub fn take(&mut self, now_us: u64) -> bool {
        let full = self.per_second * 1_000_000;
        let earned = now_us.saturating_sub(self.last_us).saturating_mul(self.per_second);
        self.tokens = self.tokens.saturating_add(earned).min(full);
        self.last_us = now_us.max(self.last_us);
        if self.tokens < 1_000_000 {
            return false;
        }
        self.tokens -= 1_000_000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_allows_its_rate_and_a_burst_of_it() {
        let mut b = Budget::new(100);
        let t0 = 10_000_000;
        assert_eq!((0..1000).filter(|_| b.take(t0)).count(), 100, "a burst of one second's worth");
        assert!(!b.take(t0 + 5_000), "nothing earned in 5 ms at 100/s");
        assert!(b.take(t0 + 10_000), "one earned in 10 ms");
        // Over a long run, the rate.
        let allowed = (1..=200_000u64).filter(|k| b.take(t0 + 10_000 + k * 50)).count();
        assert!((995..=1001).contains(&allowed), "{allowed} in 10 s at 100/s");
    }

    #[test]
    fn one_a_second_and_the_count_of_the_rest() {
        let mut t = Throttle::default();
        assert_eq!(t.allow(5_000_000), Some(0));
        for k in 1..=1000 {
            assert_eq!(t.allow(5_000_000 + k * 900), None);
        }
        assert_eq!(t.allow(6_000_000), Some(1000));
        assert_eq!(t.allow(6_500_000), None);
    }
}
