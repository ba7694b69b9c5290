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

#[cfg(test)]
mod tests {
    use super::*;

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
