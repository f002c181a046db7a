//! Time, injected: the scheduler asks a [`Clock`] what time it is and to wait, so tests can
//! run through days of schedule in milliseconds ([`TokioClock`] under tokio's paused time)
//! while the daemon uses the wall clock ([`SystemClock`]).

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// What time it is, and waiting for a time.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// Returns at `t` or soon after (at once if `t` has passed).
    async fn sleep_until(&self, t: DateTime<Utc>);

    /// Returns after `d`.
    async fn sleep(&self, d: Duration) {
        let t = self.now() + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX / 2);
        self.sleep_until(t).await;
    }
}

/// The wall clock. Long waits are cut into steps of at most 30 seconds, each re-reading the
/// time, so a machine that was suspended or had its clock set still wakes on time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, t: DateTime<Utc>) {
        loop {
            let left = t - Utc::now();
            if left <= TimeDelta::zero() {
                return;
            }
            let step = left
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(30));
            tokio::time::sleep(step).await;
        }
    }
}

/// A clock that starts at a chosen time and follows tokio's clock. Under
/// `#[tokio::test(start_paused = true)]` tokio's clock jumps ahead whenever every task is
/// waiting, so a scheduler driven by this clock runs through hours of schedule at once, in a
/// deterministic order.
#[derive(Debug, Clone)]
pub struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `base` now.
    pub fn starting_at(base: DateTime<Utc>) -> TokioClock {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + TimeDelta::from_std(self.start.elapsed()).unwrap_or(TimeDelta::MAX / 2)
    }

    async fn sleep_until(&self, t: DateTime<Utc>) {
        if let Ok(d) = (t - self.now()).to_std() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let base = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let c = TokioClock::starting_at(base);
        assert_eq!(c.now(), base);
        c.sleep(Duration::from_secs(3 * 3600)).await;
        assert_eq!(c.now(), base + TimeDelta::hours(3));
        // A time in the past returns at once.
        c.sleep_until(base).await;
        assert_eq!(c.now(), base + TimeDelta::hours(3));
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_the_time() {
        let c = SystemClock;
        let t = c.now() + TimeDelta::milliseconds(50);
        c.sleep_until(t).await;
        assert!(c.now() >= t);
    }
}
