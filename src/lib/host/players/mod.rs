//! Who is playing: each running session whose config says how (`players`: A2S, the Minecraft
//! ping, or a console command and reply) is asked on its interval by the `players` thread;
//! the last answer goes into the heartbeat sample and `/metrics`. A failed query makes the
//! count unknown (never 0): an empty server and a server that does not answer are different.

pub mod a2s;
pub mod minecraft;

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::line_watch::LineWatchers;
use super::sessions::process_name;
use crate::lifecycle::ShutdownSignal;
use crate::procman::{Manager, ProcessState};
use crate::wire::players::{from_console, reply_regex, PlayerCount, PlayerQuery, Players};

/// The spec label holding a session's query (ports already mapped to the host's).
pub const LABEL: &str = "players";
/// How long one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Queries run side by side (each on a short-lived scoped thread).
pub const QUERIES_AT_ONCE: usize = 16;

/// Runs one query now.
pub fn ask(
    count: &PlayerCount,
    session_id: i64,
    manager: &Manager,
    watchers: &Arc<LineWatchers>,
) -> Result<Players, String> {
    match &count.query {
        PlayerQuery::A2s { port } => a2s::query(*port, QUERY_TIMEOUT),
        PlayerQuery::Minecraft { port } => minecraft::query(*port, QUERY_TIMEOUT),
        PlayerQuery::Console {
            command,
            reply_pattern,
        } => {
            let re = reply_regex(reply_pattern).map_err(|e| e.to_string())?;
            // Watching before the command is sent: a fast reply is not missed.
            let watch = watchers.watch(session_id, re.clone());
            manager
                .send_input(&process_name(session_id), format!("{command}\n").as_bytes())
                .map_err(|e| format!("cannot send {command:?}: {e}"))?;
            let line = watch
                .wait(QUERY_TIMEOUT)
                .ok_or_else(|| format!("no reply to {command:?} within {QUERY_TIMEOUT:?}"))?;
            from_console(&re, &line).ok_or_else(|| format!("no count in {line:?}"))
        }
    }
}

struct Entry {
    /// `None`: the last query failed (unknown).
    players: Option<Players>,
    asked_at: Instant,
}

/// The last answer of each running session with a query.
#[derive(Default)]
pub struct PlayerCounts {
    entries: Mutex<HashMap<i64, Entry>>,
}

impl PlayerCounts {
    /// The last known players of each session (absent: unknown).
    pub fn known(&self) -> HashMap<i64, Players> {
        crate::sync::lock(&self.entries)
            .iter()
            .filter_map(|(id, e)| Some((*id, e.players.clone()?)))
            .collect()
    }

    /// Asks every running session whose interval has passed; forgets ended sessions.
    pub fn ask_due(&self, manager: &Manager, watchers: &Arc<LineWatchers>) {
        let mut running = Vec::new();
        for status in manager.status_all("session-*") {
            let Some(id) = super::sessions::session_of(&status.name) else {
                continue;
            };
            if status.state != ProcessState::Running {
                continue;
            }
            let Ok(spec) = manager.spec(&status.name) else {
                continue;
            };
            let Some(count) = spec
                .labels
                .get(LABEL)
                .and_then(|j| serde_json::from_str::<PlayerCount>(j).ok())
            else {
                continue;
            };
            running.push((id, count));
        }
        crate::sync::lock(&self.entries).retain(|id, _| running.iter().any(|(r, _)| r == id));
        let due: Vec<(i64, PlayerCount)> = running
            .into_iter()
            .filter(|(id, count)| {
                crate::sync::lock(&self.entries).get(id).is_none_or(|e| {
                    e.asked_at.elapsed() >= Duration::from_secs(count.interval_seconds.into())
                })
            })
            .collect();
        // A few at a time: a server that does not answer costs its timeout, and one by one
        // a host with many silent servers would ask the others late.
        for batch in due.chunks(QUERIES_AT_ONCE) {
            std::thread::scope(|scope| {
                for (id, count) in batch {
                    scope.spawn(move || {
                        let players = match ask(count, *id, manager, watchers) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                log::debug!(session_id = *id; "player count unknown: {e}");
                                None
                            }
                        };
                        crate::sync::lock(&self.entries).insert(
                            *id,
                            Entry {
                                players,
                                asked_at: Instant::now(),
                            },
                        );
                    });
                }
            });
        }
    }

    /// `/metrics`: players per session with a known count.
    pub fn metrics(&self) -> String {
        let mut out = String::from(
            "# HELP manman_host_session_players Players on the session's server (absent: unknown).\n\
             # TYPE manman_host_session_players gauge\n",
        );
        for (id, p) in self.known() {
            let _ = writeln!(
                out,
                "manman_host_session_players{{session_id=\"{id}\"}} {}",
                p.online
            );
        }
        out
    }
}

/// The `players` thread: asks whichever sessions are due, every second, until shutdown.
pub(super) fn run(
    counts: Arc<PlayerCounts>,
    manager: Arc<Manager>,
    watchers: Arc<LineWatchers>,
    shutdown: &ShutdownSignal,
) -> Result<(), String> {
    loop {
        counts.ask_due(&manager, &watchers);
        if shutdown.wait(Duration::from_secs(1)) {
            return Ok(());
        }
    }
}
