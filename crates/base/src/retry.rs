//! The one exponential backoff used everywhere: broker reconnects, DB outages, process restarts.

use std::time::Duration;

/// Exponential backoff: `initial * multiplier^attempt`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Backoff {
            initial,
            max,
            multiplier,
        }
    }

    /// For reconnecting to a service: 100 ms doubling up to 5 s.
    pub const fn reconnect() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 2.0)
    }

    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let millis = self.initial.as_secs_f64() * 1000.0 * factor;
        let capped = millis.min(self.max.as_secs_f64() * 1000.0);
        Duration::from_micros((capped * 1000.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0);
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(1), Duration::from_millis(200));
        assert_eq!(b.delay(3), Duration::from_millis(800));
        assert_eq!(b.delay(4), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn multiplier_below_one_never_shrinks() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1), 0.5);
        assert_eq!(b.delay(5), Duration::from_millis(50));
    }
}
