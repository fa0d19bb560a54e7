//! Console lines on their way out of the host: numbered per session, throttled per session
//! (what a session prints beyond its rate is counted and replaced by one marker line, as
//! Wings does), queued for the publisher, and grouped there into per-session batches.
//!
//! The throttle runs in the game's own output thread, before the shared queue, so a flooding
//! server fills nothing that the other sessions on the host need.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::bus::OutgoingMessage;
use crate::config::{ConfigError, Env};
use crate::wire::{routing, ConsoleBatch, ConsoleLine};

/// Lines waiting for the publisher; beyond this (the broker is away) lines are dropped and
/// counted, never blocking a game's output.
pub const QUEUE: usize = 20_000;
/// A batch's text stays under this, far below the broker's frame and message limits.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// A session that printed nothing for this long forgets its numbering and window.
const IDLE_FORGET: Duration = Duration::from_secs(600);
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `LOG_MAX_LINES_PER_SECOND`: per session; 0 turns the throttle off.
    pub max_lines_per_second: u32,
    /// `LOG_BATCH_LINES`: most lines in one message.
    pub batch_lines: usize,
    /// `LOG_BATCH_LINGER_MS`: how long the publisher waits for more lines before sending a
    /// batch that is not full.
    pub batch_linger: Duration,
}

impl Default for ConsoleSettings {
    /// Wings' 20,000 lines/s; batch sizes as measured in docs/BENCHMARKS.md.
    fn default() -> Self {
        ConsoleSettings {
            max_lines_per_second: 20_000,
            batch_lines: 500,
            batch_linger: Duration::from_millis(10),
        }
    }
}

impl ConsoleSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = ConsoleSettings::default();
        let batch_lines: usize = env.parse("LOG_BATCH_LINES", d.batch_lines)?;
        if !(1..=10_000).contains(&batch_lines) {
            return Err(ConfigError::new("LOG_BATCH_LINES", "must be 1 .. 10000"));
        }
        let linger_ms: u64 = env.parse("LOG_BATCH_LINGER_MS", d.batch_linger.as_millis() as u64)?;
        if linger_ms > 1_000 {
            return Err(ConfigError::new("LOG_BATCH_LINGER_MS", "must be 0 .. 1000"));
        }
        Ok(ConsoleSettings {
            max_lines_per_second: env.parse("LOG_MAX_LINES_PER_SECOND", d.max_lines_per_second)?,
            batch_lines,
            batch_linger: Duration::from_millis(linger_ms),
        })
    }
}

/// A line on the queue to the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedLine {
    pub session_id: i64,
    pub line: ConsoleLine,
}

/// One session's numbering and throttle window.
struct SessionOutput {
    next_seq: u64,
    window_start: Instant,
    in_window: u32,
    /// Lines held back in the current window, not yet announced by a marker.
    throttled: u64,
    last_line: Instant,
}

pub struct ConsoleLines {
    max_per_window: u32,
    sessions: Mutex<HashMap<i64, SessionOutput>>,
    queue: Sender<QueuedLine>,
    last_tick: Mutex<Instant>,
    /// Lines dropped because the queue was full (the broker away for long).
    pub dropped: AtomicU64,
    /// Lines held back by the throttle.
    pub throttled: AtomicU64,
}

/// The marker that stands for what a session printed beyond its rate.
pub fn throttle_marker(lines: u64) -> String {
    format!("[manman] {lines} lines dropped: output too fast")
}

impl ConsoleLines {
    pub fn new(settings: &ConsoleSettings) -> (ConsoleLines, Receiver<QueuedLine>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let lines = ConsoleLines {
            max_per_window: settings.max_lines_per_second,
            sessions: Mutex::new(HashMap::new()),
            queue: tx,
            last_tick: Mutex::new(Instant::now()),
            dropped: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        };
        (lines, rx)
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<i64, SessionOutput>> {
        crate::sync::lock(&self.sessions)
    }

    /// A line the game printed: throttled, numbered, queued.
    pub fn game_output(&self, session_id: i64, source: &str, text: &str) {
        self.game_output_at(Instant::now(), session_id, source, text);
    }

    fn game_output_at(&self, now: Instant, session_id: i64, source: &str, text: &str) {
        let mut sessions = self.sessions();
        let s = sessions
            .entry(session_id)
            .or_insert_with(|| SessionOutput::new(now));
        s.last_line = now;
        self.roll_window(session_id, s, now);
        if self.max_per_window > 0 && s.in_window >= self.max_per_window {
            s.throttled += 1;
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        s.in_window += 1;
        self.enqueue(session_id, s, source, text);
    }

    /// A line of the agent's own (restart notices, …): numbered, never throttled.
    pub fn host_line(&self, session_id: i64, text: &str) {
        let now = Instant::now();
        let mut sessions = self.sessions();
        let s = sessions
            .entry(session_id)
            .or_insert_with(|| SessionOutput::new(now));
        s.last_line = now;
        self.enqueue(session_id, s, "host", text);
    }

    /// Announces held-back lines of windows that are over (a session that went quiet right
    /// after a flood still gets its marker) and forgets idle sessions. Cheap to call often:
    /// it does its work at most every 100 ms.
    pub fn tick(&self) {
        let now = Instant::now();
        {
            let mut last = crate::sync::lock(&self.last_tick);
            if now.duration_since(*last) < Duration::from_millis(100) {
                return;
            }
            *last = now;
        }
        self.tick_at(now);
    }

    fn tick_at(&self, now: Instant) {
        let mut sessions = self.sessions();
        for (id, s) in sessions.iter_mut() {
            self.roll_window(*id, s, now);
        }
        sessions.retain(|_, s| s.throttled > 0 || now.duration_since(s.last_line) < IDLE_FORGET);
    }

    /// Starts a new window once the current one is over, announcing what it held back.
    fn roll_window(&self, session_id: i64, s: &mut SessionOutput, now: Instant) {
        if now.duration_since(s.window_start) < WINDOW {
            return;
        }
        s.window_start = now;
        s.in_window = 0;
        if s.throttled > 0 {
            let dropped = std::mem::take(&mut s.throttled);
            self.enqueue_line(session_id, s, "host", &throttle_marker(dropped), dropped);
        }
    }

    fn enqueue(&self, session_id: i64, s: &mut SessionOutput, source: &str, text: &str) {
        self.enqueue_line(session_id, s, source, text, 0);
    }

    fn enqueue_line(
        &self,
        session_id: i64,
        s: &mut SessionOutput,
        source: &str,
        text: &str,
        dropped: u64,
    ) {
        // A dropped line still uses its number: the gap shows the loss downstream.
        let seq = s.next_seq;
        s.next_seq += 1;
        let line = ConsoleLine {
            seq,
            timestamp: chrono::Utc::now().timestamp_millis(),
            source: source.to_string(),
            message: text.to_string(),
            dropped,
        };
        if self
            .queue
            .try_send(QueuedLine { session_id, line })
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl SessionOutput {
    fn new(now: Instant) -> Self {
        SessionOutput {
            next_seq: 1,
            window_start: now,
            in_window: 0,
            throttled: 0,
            last_line: now,
        }
    }
}

/// Groups queued lines into per-session batch messages, keeping each session's order: at
/// most `max_lines` lines and about [`MAX_BATCH_BYTES`] of text per message.
pub fn batch_messages(lines: Vec<QueuedLine>, max_lines: usize) -> Vec<OutgoingMessage> {
    let mut order: Vec<ConsoleBatch> = Vec::new();
    // Index in `order` of each session's batch still being filled.
    let mut open: HashMap<i64, (usize, usize)> = HashMap::new();
    for QueuedLine { session_id, line } in lines {
        let bytes = line.text_bytes();
        let slot = match open.get(&session_id) {
            Some(&(i, b)) if order[i].lines.len() < max_lines && b + bytes <= MAX_BATCH_BYTES => {
                (i, b)
            }
            _ => {
                order.push(ConsoleBatch {
                    session_id,
                    lines: Vec::new(),
                });
                (order.len() - 1, 0)
            }
        };
        order[slot.0].lines.push(line);
        open.insert(session_id, (slot.0, slot.1 + bytes));
    }
    order
        .into_iter()
        .map(|b| {
            OutgoingMessage::raw(
                routing::MANMAN_EXCHANGE,
                &routing::session_logs(b.session_id),
                b.encode(),
            )
            .transient()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(limit: u32) -> ConsoleSettings {
        ConsoleSettings {
            max_lines_per_second: limit,
            ..ConsoleSettings::default()
        }
    }

    fn drain(rx: &Receiver<QueuedLine>) -> Vec<QueuedLine> {
        rx.try_iter().collect()
    }

    #[test]
    fn the_throttle_keeps_the_rate_and_its_marker_counts_exactly() {
        let (console, rx) = ConsoleLines::new(&settings(100));
        let t0 = Instant::now();
        for i in 0..250u32 {
            console.game_output_at(t0, 1, "stdout", &format!("flood {i}"));
            console.game_output_at(t0, 2, "stdout", &format!("calm {i}"));
            if i.is_multiple_of(3) {
                // Session 3 stays under the limit and is never touched.
                console.game_output_at(t0, 3, "stderr", &format!("quiet {i}"));
            }
        }
        let first = drain(&rx);
        let of = |id: i64, lines: &[QueuedLine]| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.session_id == id)
                .map(|l| l.line.message.clone())
                .collect()
        };
        assert_eq!(of(1, &first).len(), 100);
        assert_eq!(of(2, &first).len(), 100);
        assert_eq!(of(3, &first).len(), 84);
        assert_eq!(console.throttled.load(Ordering::Relaxed), 150 + 150);
        // Session 1 goes quiet; the tick after its window announces what it held back.
        console.tick_at(t0 + Duration::from_millis(999));
        assert!(drain(&rx).is_empty());
        console.tick_at(t0 + WINDOW);
        let markers = drain(&rx);
        let mut announced: Vec<(i64, String, String)> = markers
            .iter()
            .map(|l| (l.session_id, l.line.source.clone(), l.line.message.clone()))
            .collect();
        announced.sort();
        assert_eq!(
            announced,
            [
                (1, "host".to_string(), throttle_marker(150)),
                (2, "host".to_string(), throttle_marker(150)),
            ]
        );
        // The marker is numbered right after the last line that went out.
        let last_out = first.iter().rfind(|l| l.session_id == 1).unwrap();
        let marker = markers.iter().find(|l| l.session_id == 1).unwrap();
        assert_eq!(marker.line.seq, last_out.line.seq + 1);
        assert_eq!(marker.line.dropped, 150);
        // A new window lets lines through again.
        console.game_output_at(t0 + WINDOW, 1, "stdout", "back");
        assert_eq!(of(1, &drain(&rx)), ["back"]);
    }

    #[test]
    fn host_lines_are_never_throttled_and_zero_turns_the_throttle_off() {
        let (console, rx) = ConsoleLines::new(&settings(1));
        let t0 = Instant::now();
        console.game_output_at(t0, 1, "stdout", "one");
        console.game_output_at(t0, 1, "stdout", "two");
        console.host_line(1, "[manman] restarting");
        let lines = drain(&rx);
        let seqs: Vec<(u64, &str)> = lines
            .iter()
            .map(|l| (l.line.seq, l.line.message.as_str()))
            .collect();
        assert_eq!(seqs, [(1, "one"), (2, "[manman] restarting")]);

        let (unlimited, rx) = ConsoleLines::new(&settings(0));
        for i in 0..50_000 {
            unlimited.game_output_at(t0, 1, "stdout", &i.to_string());
        }
        assert_eq!(drain(&rx).len(), QUEUE);
        assert_eq!(
            unlimited.dropped.load(Ordering::Relaxed),
            50_000 - QUEUE as u64
        );
        assert_eq!(unlimited.throttled.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn batches_keep_each_sessions_order_and_respect_their_limits() {
        let line = |session_id: i64, seq: u64, message: String| QueuedLine {
            session_id,
            line: ConsoleLine {
                seq,
                timestamp: 0,
                source: if seq.is_multiple_of(2) {
                    "stderr"
                } else {
                    "stdout"
                }
                .into(),
                message,
                dropped: 0,
            },
        };
        let mut queued = Vec::new();
        for seq in 1..=7 {
            queued.push(line(1, seq, format!("a{seq}")));
            queued.push(line(2, seq, format!("b{seq}")));
        }
        // Three 100 KB lines cannot share one batch.
        for seq in 8..=10 {
            queued.push(line(1, seq, "x".repeat(100 * 1024)));
        }
        let messages = batch_messages(queued, 3);
        let batches: Vec<ConsoleBatch> = messages
            .iter()
            .map(|m| ConsoleBatch::decode(&m.body).unwrap())
            .collect();
        for m in &messages {
            assert!(m.routing_key.starts_with("logs.session."));
        }
        for b in &batches {
            assert!(b.lines.len() <= 3);
            assert!(b.text_bytes() <= MAX_BATCH_BYTES);
        }
        for session in [1, 2] {
            let seqs: Vec<u64> = batches
                .iter()
                .filter(|b| b.session_id == session)
                .flat_map(|b| b.lines.iter().map(|l| l.seq))
                .collect();
            let want: Vec<u64> = (1..=if session == 1 { 10 } else { 7 }).collect();
            assert_eq!(seqs, want, "session {session}");
        }
        let sources_of_2: Vec<&str> = batches
            .iter()
            .filter(|b| b.session_id == 2)
            .flat_map(|b| b.lines.iter().map(|l| l.source.as_str()))
            .collect();
        assert_eq!(sources_of_2[..2], ["stdout", "stderr"]);
    }
}
