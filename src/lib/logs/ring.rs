//! One session's recent lines: a bounded ring with per-session sequence numbers that any
//! number of streaming clients read from at their own pace.
//!
//! Clients do not get a copy of each line; each keeps a cursor (the last sequence number it
//! sent) and reads what is above it. A client that falls further behind than the ring holds
//! finds its cursor below the oldest line and is told how many lines it missed (a gap), so a
//! slow client never holds up the feed or the other clients, and is never silently given a hole.
//!
//! Memory: a line costs one allocation (its text) plus a 32-byte slot; sources are interned
//! per ring and sequence numbers are implied by position. The ring keeps at most `capacity`
//! lines and about `max_bytes` (slots, text and allocator overhead counted), whichever binds
//! first, so 1,000 sessions stay within the seed's budget of 100 KB each.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire::ConsoleLine;

/// A line as clients read it.
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

/// What one push did, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Lines the host numbered but that never arrived (a jump in its sequence).
    pub lost_in_transit: u64,
    /// Lines the host's throttle held back (announced by marker lines in this push).
    pub throttled: u64,
}

/// A line in the ring: its sequence number is implied by its position.
#[derive(Debug)]
struct Slot {
    timestamp: i64,
    message: Box<str>,
    source: u8,
}

/// What a slot is counted as, besides its text: the slot itself and the text allocation's
/// bookkeeping.
const SLOT_COST: usize = std::mem::size_of::<Slot>() + 16;
/// Distinct sources a ring names; any more share the last one, `other`.
const MAX_SOURCES: usize = 16;

#[derive(Debug)]
struct Ring {
    lines: VecDeque<Slot>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    sources: Vec<Box<str>>,
    /// The first sequence number this ring handed out.
    base: i64,
    next: i64,
    /// The host's sequence of the last line received (0: none yet, or not numbered).
    last_host_seq: u64,
    closed: bool,
}

#[derive(Debug)]
pub struct SessionLog {
    pub session_id: i64,
    ring: Mutex<Ring>,
    grew: Condvar,
}

/// A ring's default byte bound: the seed's 100 KB per session.
pub const DEFAULT_MAX_BYTES: usize = 96 * 1024;

impl SessionLog {
    /// Sequence numbers start at the current time in microseconds, so that after a restart
    /// of the log processor a new buffer's numbers are above any a client saw before
    /// (a client resuming from an old number is told about the gap instead of waiting).
    pub fn new(session_id: i64, capacity: usize, max_bytes: usize) -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(1);
        SessionLog::starting_at(session_id, capacity, max_bytes, micros)
    }

    pub fn starting_at(session_id: i64, capacity: usize, max_bytes: usize, first: i64) -> Self {
        SessionLog {
            session_id,
            ring: Mutex::new(Ring {
                // An idle session costs a few hundred bytes; the ring grows with its lines.
                lines: VecDeque::new(),
                capacity: capacity.max(1),
                max_bytes: max_bytes.max(SLOT_COST),
                bytes: 0,
                sources: Vec::new(),
                base: first,
                next: first,
                last_host_seq: 0,
                closed: false,
            }),
            grew: Condvar::new(),
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding this lock cannot leave the ring inconsistent.
        crate::sync::lock(&self.ring)
    }

    /// Appends lines (numbering them), dropping the oldest beyond the bounds, and wakes
    /// readers.
    pub fn push(&self, lines: impl IntoIterator<Item = ConsoleLine>) -> PushOutcome {
        let mut outcome = PushOutcome::default();
        let mut ring = self.ring();
        for line in lines {
            if line.seq > 0 {
                if ring.last_host_seq > 0 && line.seq > ring.last_host_seq + 1 {
                    outcome.lost_in_transit += line.seq - ring.last_host_seq - 1;
                }
                // A lower number: the agent restarted and numbers afresh.
                ring.last_host_seq = line.seq;
            }
            outcome.throttled += line.dropped;
            let source = ring.intern(&line.source);
            let message = line.message.into_boxed_str();
            ring.bytes += SLOT_COST + message.len();
            ring.lines.push_back(Slot {
                timestamp: line.timestamp,
                message,
                source,
            });
            ring.next += 1;
            while ring.lines.len() > ring.capacity
                || (ring.bytes > ring.max_bytes && ring.lines.len() > 1)
            {
                let old = ring.lines.pop_front().expect("not empty");
                ring.bytes -= SLOT_COST + old.message.len();
            }
        }
        // Keep spare slots in check after a burst of short lines was replaced by long ones.
        let keep = ring.lines.len().max(32);
        if ring.lines.capacity() > 2 * keep {
            ring.lines.shrink_to(keep);
        }
        drop(ring);
        self.grew.notify_all();
        outcome
    }

    /// No more lines will come; readers finish what is buffered and end.
    pub fn close(&self) {
        self.ring().closed = true;
        self.grew.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.ring().closed
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

    /// What the buffered lines are counted as (always within the byte bound, but for a
    /// single line longer than it).
    pub fn bytes(&self) -> usize {
        self.ring().bytes
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
        let oldest = ring.next - ring.lines.len() as i64;
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
        let lines: Vec<StoredLine> = ring
            .lines
            .iter()
            .enumerate()
            .skip(skip)
            .take(max)
            .map(|(i, slot)| StoredLine {
                sequence_number: oldest + i as i64,
                timestamp: slot.timestamp,
                source: ring.sources[slot.source as usize].clone(),
                message: slot.message.clone(),
            })
            .collect();
        let closed = ring.closed && skip + lines.len() >= ring.lines.len();
        ReadResult {
            missed,
            lines,
            closed,
        }
    }
}

impl Ring {
    fn intern(&mut self, source: &str) -> u8 {
        if let Some(i) = self.sources.iter().position(|s| &**s == source) {
            return i as u8;
        }
        if self.sources.len() < MAX_SOURCES - 1 {
            self.sources.push(source.into());
            return (self.sources.len() - 1) as u8;
        }
        match self.sources.iter().position(|s| &**s == "other") {
            Some(i) => i as u8,
            None => {
                self.sources.push("other".into());
                (self.sources.len() - 1) as u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: i64) -> ConsoleLine {
        ConsoleLine {
            seq: i as u64,
            timestamp: i,
            source: "stdout".into(),
            message: format!("line {i}"),
            dropped: 0,
        }
    }

    fn messages(r: &ReadResult) -> Vec<String> {
        r.lines.iter().map(|l| l.message.to_string()).collect()
    }

    #[test]
    fn numbers_lines_and_reads_above_a_cursor() {
        let log = SessionLog::starting_at(1, 10, DEFAULT_MAX_BYTES, 1);
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
        let log = SessionLog::starting_at(1, 3, DEFAULT_MAX_BYTES, 1);
        log.push((1..=10).map(line));
        let r = log.read_after(2, 100, Duration::ZERO);
        assert_eq!(r.missed, Some(5)); // lines 3..=7 are gone
        assert_eq!(messages(&r), ["line 8", "line 9", "line 10"]);
        // A fresh client (cursor 0) just gets what is buffered, no gap.
        assert_eq!(log.read_after(0, 100, Duration::ZERO).missed, None);
        // A cursor from an older buffer: the count is unknown.
        let newer = SessionLog::starting_at(1, 3, DEFAULT_MAX_BYTES, 1000);
        newer.push([line(1)]);
        assert_eq!(newer.read_after(10, 100, Duration::ZERO).missed, Some(-1));
    }

    #[test]
    fn readers_wake_on_push_and_see_close() {
        let log = std::sync::Arc::new(SessionLog::starting_at(1, 10, DEFAULT_MAX_BYTES, 1));
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

    #[test]
    fn a_full_ring_stays_within_its_byte_bound_and_costs_under_100_kb() {
        // 500 lines of ~100 bytes fit the seed's 100 KB per session.
        let log = SessionLog::starting_at(1, 500, DEFAULT_MAX_BYTES, 1);
        log.push((1..=600).map(|i| ConsoleLine {
            message: format!("{i:>6} {}", "x".repeat(93)),
            ..line(i)
        }));
        assert_eq!(log.len(), 500);
        assert!(log.bytes() <= DEFAULT_MAX_BYTES, "{}", log.bytes());
        assert!(log.bytes() < 100_000);
        // Long lines: the byte bound binds first, and the newest lines are the ones kept.
        let long = SessionLog::starting_at(1, 500, DEFAULT_MAX_BYTES, 1);
        long.push((1..=100).map(|i| ConsoleLine {
            message: format!("{i} {}", "y".repeat(5_000)),
            ..line(i)
        }));
        assert!(long.bytes() <= DEFAULT_MAX_BYTES, "{}", long.bytes());
        assert!(long.len() >= 15 && long.len() < 20, "{}", long.len());
        let read = long.read_after(0, 1000, Duration::ZERO);
        assert!(read.lines.last().unwrap().message.starts_with("100 "));
        assert_eq!(read.lines.last().unwrap().sequence_number, 100);
        // One line longer than the bound is still kept (alone) rather than lost.
        let huge = SessionLog::starting_at(1, 500, 1_000, 1);
        huge.push([ConsoleLine {
            message: "z".repeat(5_000),
            ..line(1)
        }]);
        assert_eq!(huge.len(), 1);
    }

    #[test]
    fn sources_are_interned_and_kept_apart() {
        let log = SessionLog::starting_at(1, 10, DEFAULT_MAX_BYTES, 1);
        let src = |i: i64, source: &str| ConsoleLine {
            source: source.into(),
            ..line(i)
        };
        log.push([
            src(1, "stdout"),
            src(2, "stderr"),
            src(3, "stdout"),
            src(4, "host"),
        ]);
        let got: Vec<String> = log
            .read_after(0, 10, Duration::ZERO)
            .lines
            .iter()
            .map(|l| format!("{}:{}", l.source, l.message))
            .collect();
        assert_eq!(
            got,
            [
                "stdout:line 1",
                "stderr:line 2",
                "stdout:line 3",
                "host:line 4"
            ]
        );
    }

    #[test]
    fn a_jump_in_the_hosts_numbering_counts_lost_lines() {
        let log = SessionLog::starting_at(1, 100, DEFAULT_MAX_BYTES, 1);
        assert_eq!(log.push([line(1), line(2)]).lost_in_transit, 0);
        assert_eq!(log.push([line(5), line(6)]).lost_in_transit, 2);
        // The agent restarted: numbering starts again, nothing counted as lost.
        assert_eq!(log.push([line(1)]).lost_in_transit, 0);
        let marker = ConsoleLine {
            dropped: 42,
            source: "host".into(),
            ..line(2)
        };
        assert_eq!(
            log.push([marker]),
            PushOutcome {
                lost_in_transit: 0,
                throttled: 42
            }
        );
    }
}
