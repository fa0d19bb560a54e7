//! Answers the status API may serve a little stale (the system summary, list totals): each is
//! recomputed at most once per period, so a dashboard polling many pages costs one aggregate
//! per period instead of one per request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value of `key` if it is fresh, else `compute`'s (cached when it succeeds).
    /// Two threads may compute the same key at once; the later one's answer stays.
    pub fn get_or<E>(&self, key: K, compute: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let entries = || crate::sync::lock(&self.entries);
        if let Some((at, value)) = entries().get(&key) {
            if at.elapsed() < self.ttl {
                return Ok(value.clone());
            }
        }
        let value = compute()?;
        let mut map = entries();
        // Bounded: filters are few, but a client could vary them; old answers are dropped.
        if map.len() >= 1024 {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        map.insert(key, (Instant::now(), value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_answer_is_reused_and_a_failure_is_not_kept() {
        let cache: TtlCache<&str, i64> = TtlCache::new(Duration::from_secs(60));
        assert_eq!(cache.get_or("a", || Ok::<_, ()>(1)), Ok(1));
        assert_eq!(cache.get_or("a", || Ok::<_, ()>(2)), Ok(1), "cached");
        assert_eq!(cache.get_or("b", || Err::<i64, _>("down")), Err("down"));
        assert_eq!(cache.get_or("b", || Ok::<_, ()>(3)), Ok(3));
        let expired: TtlCache<&str, i64> = TtlCache::new(Duration::ZERO);
        assert_eq!(expired.get_or("a", || Ok::<_, ()>(1)), Ok(1));
        assert_eq!(expired.get_or("a", || Ok::<_, ()>(2)), Ok(2), "recomputed");
    }
}
