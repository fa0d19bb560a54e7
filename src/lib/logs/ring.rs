//! One session's recent lines: a bounded ring with per-session sequence numbers that any
//! number of streaming clients read from at their own pace.
//!
//! Clients do not get a copy of each line; each keeps a cursor (the last sequence number it
//! sent) and reads what is above it. A client that falls further behind than the ring holds
//! finds its cursor below the oldest line and is told how many lines it missed (a gap), so a
//! slow client never holds up the feed or the other clients, and is never silently given a hole.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire::LogLine;

/// A line as stored in the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    pub sequence_number: i64,
    /// Unix milliseconds, as the host stamped it.
    pub timestamp: i64,
    pub source: Box<str>,
    pub message: Box<str>,
}

/// What a client gets from one read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadResult {
    /// Lines were dropped between the client's cursor and `lines[0]`: `Some(n)` = exactly n,
    /// `Some(-1)` = an unknown number (the cursor came from an earlier buffer).
    pub missed: Option<i64>,
    pub lines: Vec<StoredLine>,
    /// No line will ever follow (the session ended and its feed stopped).
    pub closed: bool,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<StoredLine>,
    capacity: usize,
    /// The first sequence number this ring handed out.
    base: i64,
    next: i64,
    closed: bool,
}

#[derive(Debug)]
pub struct SessionLog {
    pub session_id: i64,
    ring: Mutex<Ring>,
    grew: Condvar,
    /// The feed is attached to its queue (lines published now will arrive).
    consuming: AtomicBool,
}

impl SessionLog {
    /// Sequence numbers start at the current time in microseconds, so that after a restart
    /// of the log processor a new buffer's numbers are above any a client saw before
    /// (a client resuming from an old number is told about the gap instead of waiting).
    pub fn new(session_id: i64, capacity: usize) -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(1);
        SessionLog::starting_at(session_id, capacity, micros)
    }

    pub fn starting_at(session_id: i64, capacity: usize, first: i64) -> Self {
        SessionLog {
            session_id,
            ring: Mutex::new(Ring {
                lines: VecDeque::with_capacity(capacity.min(64)),
                capacity: capacity.max(1),
                base: first,
                next: first,
                closed: false,
            }),
            grew: Condvar::new(),
            consuming: AtomicBool::new(false),
        }
    }

    pub fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::SeqCst);
    }

    /// Whether the session's feed is attached to its queue right now.
    pub fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding this lock cannot leave the ring inconsistent.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends lines (numbering them), dropping the oldest beyond capacity, and wakes readers.
    pub fn push(&self, lines: impl IntoIterator<Item = LogLine>) {
        let mut ring = self.ring();
        for line in lines {
            if ring.lines.len() == ring.capacity {
                ring.lines.pop_front();
            }
            let sequence_number = ring.next;
            ring.next += 1;
            ring.lines.push_back(StoredLine {
                sequence_number,
                timestamp: line.timestamp,
                source: line.source.into_boxed_str(),
                message: line.message.into_boxed_str(),
            });
        }
        drop(ring);
        self.grew.notify_all();
    }

    /// No more lines will come; readers finish what is buffered and end.
    pub fn close(&self) {
        self.ring().closed = true;
        self.grew.notify_all();
    }

    /// The newest sequence number handed out (`first - 1` before any line).
    pub fn last_sequence_number(&self) -> i64 {
        self.ring().next - 1
    }

    pub fn len(&self) -> usize {
        self.ring().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` lines above `cursor`, waiting up to `wait` for one to arrive.
    pub fn read_after(&self, cursor: i64, max: usize, wait: Duration) -> ReadResult {
        let mut ring = self.ring();
        if ring.next - 1 <= cursor && !ring.closed && !wait.is_zero() {
            ring = self
                .grew
                .wait_timeout_while(ring, wait, |r| r.next - 1 <= cursor && !r.closed)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let oldest = ring.lines.front().map_or(ring.next, |l| l.sequence_number);
        let missed = if cursor > 0 && cursor + 1 < oldest {
            Some(if cursor + 1 >= ring.base {
                oldest - cursor - 1
            } else {
                -1
            })
        } else {
            None
        };
        // Index of the first line above the cursor: sequence numbers are contiguous.
        let skip = (cursor + 1 - oldest).clamp(0, ring.lines.len() as i64) as usize;
        let lines: Vec<StoredLine> = ring.lines.iter().skip(skip).take(max).cloned().collect();
        let closed = ring.closed && skip + lines.len() >= ring.lines.len();
        ReadResult {
            missed,
            lines,
            closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: i64) -> LogLine {
        LogLine {
            session_id: 1,
            timestamp: i,
            source: "stdout".into(),
            message: format!("line {i}"),
        }
    }

    fn messages(r: &ReadResult) -> Vec<String> {
        r.lines.iter().map(|l| l.message.to_string()).collect()
    }

    #[test]
    fn numbers_lines_and_reads_above_a_cursor() {
        let log = SessionLog::starting_at(1, 10, 1);
        log.push((1..=3).map(line));
        let all = log.read_after(0, 100, Duration::ZERO);
        assert_eq!(messages(&all), ["line 1", "line 2", "line 3"]);
        assert_eq!(all.lines[2].sequence_number, 3);
        assert_eq!(all.missed, None);
        let rest = log.read_after(2, 100, Duration::ZERO);
        assert_eq!(messages(&rest), ["line 3"]);
        assert!(log.read_after(3, 100, Duration::ZERO).lines.is_empty());
        assert_eq!(log.read_after(0, 2, Duration::ZERO).lines.len(), 2);
    }

    #[test]
    fn a_cursor_below_the_oldest_line_reports_the_gap() {
        let log = SessionLog::starting_at(1, 3, 1);
        log.push((1..=10).map(line));
        let r = log.read_after(2, 100, Duration::ZERO);
        assert_eq!(r.missed, Some(5)); // lines 3..=7 are gone
        assert_eq!(messages(&r), ["line 8", "line 9", "line 10"]);
        // A fresh client (cursor 0) just gets what is buffered, no gap.
        assert_eq!(log.read_after(0, 100, Duration::ZERO).missed, None);
        // A cursor from an older buffer: the count is unknown.
        let newer = SessionLog::starting_at(1, 3, 1000);
        newer.push([line(1)]);
        assert_eq!(newer.read_after(10, 100, Duration::ZERO).missed, Some(-1));
    }

    #[test]
    fn readers_wake_on_push_and_see_close() {
        let log = std::sync::Arc::new(SessionLog::starting_at(1, 10, 1));
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || log.read_after(0, 10, Duration::from_secs(30)))
        };
        log.push([line(1)]);
        assert_eq!(messages(&reader.join().unwrap()), ["line 1"]);
        log.close();
        let r = log.read_after(1, 10, Duration::from_secs(30));
        assert!(r.closed && r.lines.is_empty());
        let again = log.read_after(0, 10, Duration::ZERO);
        assert!(again.closed && again.lines.len() == 1);
    }
}
