//! Waiting for a game's console line: a backup's pre and post actions send a command and wait
//! for the line that says it was done (`Saved the game`). The output sink offers every line
//! of a session to the watchers of that session; with no watcher the cost is one atomic load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use regex::Regex;

struct Watcher {
    id: u64,
    session_id: i64,
    pattern: Regex,
    found: Sender<String>,
}

#[derive(Default)]
pub struct LineWatchers {
    count: AtomicUsize,
    watchers: Mutex<Vec<Watcher>>,
    next_id: AtomicUsize,
}

/// One wait; dropping it stops the watching.
pub struct LineWatch {
    id: u64,
    owner: Arc<LineWatchers>,
    lines: Receiver<String>,
}

impl LineWatchers {
    /// Watches `session_id`'s console for a line matching `pattern`. Register before sending
    /// the command, so a fast reply is not missed.
    pub fn watch(self: &Arc<Self>, session_id: i64, pattern: Regex) -> LineWatch {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        crate::sync::lock(&self.watchers).push(Watcher {
            id,
            session_id,
            pattern,
            found: tx,
        });
        self.count.fetch_add(1, Ordering::Release);
        LineWatch {
            id,
            owner: self.clone(),
            lines: rx,
        }
    }

    /// A line `session_id` printed.
    pub fn offer(&self, session_id: i64, line: &str) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        for w in crate::sync::lock(&self.watchers).iter() {
            if w.session_id == session_id && w.pattern.is_match(line) {
                let _ = w.found.try_send(line.to_string());
            }
        }
    }
}

impl LineWatch {
    /// The matching line, if one came within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl Drop for LineWatch {
    fn drop(&mut self) {
        crate::sync::lock(&self.owner.watchers).retain(|w| w.id != self.id);
        self.owner.count.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_sees_only_its_sessions_matching_lines() {
        let watchers = Arc::new(LineWatchers::default());
        let watch = watchers.watch(7, Regex::new("Saved the game").unwrap());
        watchers.offer(8, "Saved the game");
        watchers.offer(7, "Saving...");
        assert_eq!(watch.wait(Duration::from_millis(10)), None);
        watchers.offer(7, "[12:00] Saved the game");
        assert_eq!(
            watch.wait(Duration::from_millis(10)).as_deref(),
            Some("[12:00] Saved the game")
        );
        drop(watch);
        assert_eq!(watchers.count.load(Ordering::Relaxed), 0);
        assert!(crate::sync::lock(&watchers.watchers).is_empty());
    }
}
