//! How failed runs are retried: a number of attempts and an exponential backoff.

use std::time::Duration;

/// `retry = { attempts = 3, delay = "1min", max_delay = "30min" }`: up to `attempts` tries in all,
/// waiting `delay` before the second, twice that before the third, and so on, never more than
/// `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    /// The wait before the first retry.
    pub delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(1800),
        }
    }
}

impl RetryPolicy {
    /// The wait before try number `attempt` (2 for the first retry), or `None` when no try is
    /// left.
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        if attempt < 2 || attempt > self.attempts {
            return None;
        }
        let doublings = (attempt - 2).min(30);
        let d = self.delay.saturating_mul(1u32 << doublings);
        Some(d.min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops() {
        let p = RetryPolicy {
            attempts: 5,
            delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(200),
        };
        let waits: Vec<Option<u64>> = (1..=6)
            .map(|a| p.delay_before(a).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            waits,
            [None, Some(60), Some(120), Some(200), Some(200), None]
        );
    }
}
