//! What the agent tells the control plane: session statuses (from the process manager's
//! history), console lines, heartbeats with session counts, and its own `/metrics`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::cgroups::SessionCgroups;
use super::console::ConsoleLines;
use super::publisher::Outbound;
use super::sessions::{exit_code, session_of};
use crate::bus::OutgoingMessage;
use crate::procman::{HistoryEvent, HistorySink, Manager, OutputSink, ProcessState, Source};
use crate::wire::messages::{HostStatusUpdate, SessionStats, SessionStatusUpdate};
use crate::wire::{routing, HostStatus, SessionStatus};

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

/// A session status report. It carries a unique id, so the processor can drop a re-sent
/// duplicate.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub restart_count: Option<u32>,
}

pub fn status_message(
    server_id: i64,
    session_id: i64,
    status: SessionStatus,
    report: Report,
) -> OutgoingMessage {
    // The processor reads the same struct: the two sides cannot drift apart.
    let body = SessionStatusUpdate {
        session_id,
        sgc_id: None,
        status,
        exit_code: report.exit_code,
        reason: report.reason,
        restart_count: report.restart_count,
    };
    OutgoingMessage::json(
        routing::MANMAN_EXCHANGE,
        &routing::session_status(session_id),
        &serde_json::to_value(body).expect("a status update serialises"),
    )
    .with_message_id(format!(
        "host-{server_id}-{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros(),
        NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed)
    ))
}

pub fn host_message(server_id: i64, status: HostStatus) -> OutgoingMessage {
    OutgoingMessage::json(
        routing::MANMAN_EXCHANGE,
        &routing::host_status(server_id),
        &serde_json::to_value(HostStatusUpdate { server_id, status })
            .expect("a host status serialises"),
    )
}

/// Output lines → the session's console (throttled, batched to `logs.session.{id}`).
pub struct LogSink {
    pub out: Outbound,
    /// Backups waiting for a line.
    pub watchers: std::sync::Arc<super::line_watch::LineWatchers>,
}

impl OutputSink for LogSink {
    fn line(&self, process: &str, source: Source, line: &str) {
        if let Some(session_id) = session_of(process) {
            self.watchers.offer(session_id, line);
            self.out
                .console
                .game_output(session_id, source.as_str(), line);
        }
    }
}

pub struct EventSink(pub crossbeam_channel::Sender<HistoryEvent>);

impl HistorySink for EventSink {
    fn record(&self, event: &HistoryEvent) {
        let _ = self.0.send(event.clone());
    }
}

/// The console marker for why a run ended: the reason as said by the process manager
/// ("was killed by signal 9") after "the server", or whole when it is a sentence of its own
/// ("out of memory: …").
pub fn end_marker(reason: &str) -> String {
    if reason.starts_with("out of memory") {
        format!("[manman] {reason}")
    } else {
        format!("[manman] the server {reason}")
    }
}

/// Process history → session statuses (runs until the manager is gone). A crash-restart
/// keeps the session's status and reports the new restart count with the exit that caused
/// it, plus a marker line in the console.
/// A session that has ended for good has its cgroup removed (`cgroups`).
pub fn report_events(
    server_id: i64,
    events: Receiver<HistoryEvent>,
    out: Outbound,
    cgroups: Arc<SessionCgroups>,
) {
    // Sessions that reached running in this agent's life (their status is `running`).
    let mut ran: HashSet<i64> = HashSet::new();
    for event in events {
        let Some(session_id) = session_of(event.name()) else {
            continue;
        };
        let send = |status, report| out.send(status_message(server_id, session_id, status, report));
        match event {
            HistoryEvent::Running { .. } => {
                ran.insert(session_id);
                send(SessionStatus::Running, Report::default());
            }
            HistoryEvent::Restarting {
                attempt,
                delay_ms,
                last_exit,
                reason,
                ..
            } => {
                log::info!(session_id = session_id, restart = attempt;
                    "game {reason}; restarting in {delay_ms} ms (restart {attempt})");
                out.console.host_line(
                    session_id,
                    &format!(
                        "{}; restarting in {:.1} s (restart {attempt})",
                        end_marker(&reason),
                        delay_ms as f64 / 1000.0
                    ),
                );
                let status = if ran.contains(&session_id) {
                    SessionStatus::Running
                } else {
                    SessionStatus::Starting
                };
                send(
                    status,
                    Report {
                        exit_code: exit_code(last_exit),
                        // With a restart count, the reason is that run's end (not the session's).
                        reason: Some(reason),
                        restart_count: Some(attempt),
                    },
                );
            }
            HistoryEvent::Finished {
                state: ProcessState::Failed,
                last_exit,
                reason,
                ..
            } => {
                ran.remove(&session_id);
                cgroups.release(session_id);
                if let Some(r) = &reason {
                    out.console.host_line(session_id, &end_marker(r));
                }
                send(
                    SessionStatus::Crashed,
                    Report {
                        exit_code: exit_code(last_exit),
                        reason,
                        restart_count: None,
                    },
                );
            }
            HistoryEvent::Finished {
                last_exit,
                requested,
                reason,
                ..
            } => {
                ran.remove(&session_id);
                cgroups.release(session_id);
                if !requested {
                    // It ended by itself, cleanly: the state machine still goes through stopping.
                    send(SessionStatus::Stopping, Report::default());
                }
                send(
                    SessionStatus::Stopped,
                    Report {
                        exit_code: exit_code(last_exit),
                        reason,
                        restart_count: None,
                    },
                );
            }
            _ => {}
        }
    }
}

/// Session counts for the heartbeat: the total, running, and a count per other state.
/// What the host tells the processor after the publisher reconnects: it is online, and where
/// each of its live sessions is (a status sent while the broker was away may be lost).
pub fn current_state(server_id: i64, manager: &Manager) -> Vec<OutgoingMessage> {
    let mut state = vec![host_message(server_id, HostStatus::Online)];
    for s in manager.status_all("session-*") {
        let status = match s.state {
            ProcessState::Running => SessionStatus::Running,
            ProcessState::Starting | ProcessState::Backoff => SessionStatus::Starting,
            ProcessState::Stopping => SessionStatus::Stopping,
            _ => continue,
        };
        if let Some(id) = session_of(&s.name) {
            state.push(status_message(server_id, id, status, Report::default()));
        }
    }
    state
}

pub fn session_stats(manager: &Manager) -> SessionStats {
    let mut by_state: BTreeMap<&'static str, u32> = BTreeMap::new();
    let all = manager.status_all("session-*");
    for s in &all {
        *by_state.entry(state_name(s.state)).or_default() += 1;
    }
    SessionStats {
        total: all.len() as u32,
        running: by_state.remove("running").unwrap_or(0),
        other: by_state
            .into_iter()
            .map(|(state, n)| (state.to_string(), serde_json::json!(n)))
            .collect(),
    }
}

fn state_name(state: ProcessState) -> &'static str {
    match state {
        ProcessState::Stopped => "stopped",
        ProcessState::Starting => "starting",
        ProcessState::Running => "running",
        ProcessState::Stopping => "stopping",
        ProcessState::Backoff => "backoff",
        ProcessState::Failed => "failed",
    }
}

/// `/metrics` of the host: managed processes by state, and their restarts.
pub fn process_metrics(statuses: &[crate::procman::Status]) -> String {
    use crate::procman::ProcessState as S;
    let mut out = String::new();
    let by_state: Vec<(&str, u64)> = [
        S::Stopped,
        S::Starting,
        S::Running,
        S::Stopping,
        S::Backoff,
        S::Failed,
    ]
    .iter()
    .map(|state| {
        let n = statuses.iter().filter(|s| s.state == *state).count() as u64;
        (state_name(*state), n)
    })
    .collect();
    crate::metrics::render_by_label(
        &mut out,
        "manman_host_processes",
        "gauge",
        "Managed game-server processes by state.",
        "state",
        &by_state,
    );
    let restarts: u64 = statuses.iter().map(|s| u64::from(s.restarts)).sum();
    crate::metrics::render_sample(
        &mut out,
        "manman_host_process_restarts_total",
        "counter",
        "Automatic restarts of managed processes (current processes).",
        &[("", restarts)],
    );
    out
}

/// `/metrics` of the host: console lines held back by the throttle or dropped (queue full).
pub fn console_metrics(console: &ConsoleLines) -> String {
    let mut out = String::new();
    crate::metrics::render_sample(
        &mut out,
        "manman_host_console_lines_dropped_total",
        "counter",
        "Console lines not published: over a session's rate (throttled) or the queue full while the broker was away.",
        &[
            (
                "reason=\"throttled\"",
                console.throttled.load(Ordering::Relaxed),
            ),
            ("reason=\"queue_full\"", console.dropped.load(Ordering::Relaxed)),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_decode_as_the_processor_reads_them() {
        let m = status_message(
            3,
            7,
            SessionStatus::Crashed,
            Report {
                exit_code: Some(137),
                reason: Some("killed".into()),
                restart_count: Some(2),
            },
        );
        assert_eq!(m.routing_key, "status.session.7");
        let read: SessionStatusUpdate = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(
            read,
            SessionStatusUpdate {
                session_id: 7,
                sgc_id: None,
                status: SessionStatus::Crashed,
                exit_code: Some(137),
                reason: Some("killed".into()),
                restart_count: Some(2),
            }
        );
        assert!(m.message_id.unwrap().starts_with("host-3-"));
        let h = host_message(3, HostStatus::Offline);
        let read: HostStatusUpdate = serde_json::from_slice(&h.body).unwrap();
        assert_eq!(
            read,
            HostStatusUpdate {
                server_id: 3,
                status: HostStatus::Offline
            }
        );
    }
}
