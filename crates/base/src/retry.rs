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

    /// Calls `attempt` (with its 0-based number) until it succeeds or has failed `tries`
    /// times, sleeping the backoff in between; the last error otherwise. For a request worth
    /// repeating a few times (a part upload, a report), not for a connection kept up forever.
    pub fn retry<T, E>(
        &self,
        tries: u32,
        mut attempt: impl FnMut(u32) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut n = 0;
        loop {
            match attempt(n) {
                Ok(v) => return Ok(v),
                Err(e) if n + 1 >= tries => return Err(e),
                Err(_) => {
                    std::thread::sleep(self.delay(n));
                    n += 1;
                }
            }
        }
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
    fn retry_stops_at_the_first_success_or_after_the_last_try() {
        let b = Backoff::new(Duration::ZERO, Duration::ZERO, 2.0);
        let mut calls = 0;
        assert_eq!(
            b.retry(5, |n| {
                calls += 1;
                if n == 2 {
                    Ok(n)
                } else {
                    Err(n)
                }
            }),
            Ok(2)
        );
        assert_eq!(calls, 3);
        assert_eq!(b.retry(3, Err::<(), _>), Err(2));
    }

    #[test]
    fn multiplier_below_one_never_shrinks() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1), 0.5);
        assert_eq!(b.delay(5), Duration::from_millis(50));
    }
}
