//! The one way to take a lock: a mutex whose holder panicked is still usable (the data behind
//! it is plain counters and maps; a daemon's panic hook ends it anyway, and a supervised
//! thread's panic drains it), so no caller has to decide what a poisoned lock means.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
