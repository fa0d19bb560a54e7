//! The sessions this instance buffers: each one's ring. A ring is made when a session starts
//! (events), when its first line arrives, or when a client asks; it is closed a short grace
//! after the session ends (trailing lines still land), and forgotten once no client reads it
//! and `LOG_BUFFER_TTL` has passed. No thread per session: an idle session is one small ring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::archiver::ArchiveItem;
use super::metrics::LogMetrics;
use super::ring::SessionLog;

struct Entry {
    log: Arc<SessionLog>,
    ended_at: Option<Instant>,
    clients: usize,
}

pub struct RegistrySettings {
    /// Lines kept per session (`LOG_BUFFER_MAX_MESSAGES`).
    pub capacity: usize,
    /// Bytes kept per session, about (`LOG_BUFFER_MAX_BYTES`).
    pub max_bytes: usize,
    /// After a session ends, how long its ring still takes trailing lines.
    pub end_grace: Duration,
    /// After a session ends, how long its ring stays for late clients (`LOG_BUFFER_TTL`).
    pub keep_after_end: Duration,
}

pub struct Registry {
    entries: Mutex<HashMap<i64, Entry>>,
    settings: RegistrySettings,
    archive: Option<Sender<ArchiveItem>>,
    metrics: Arc<LogMetrics>,
}

impl Registry {
    pub fn new(
        settings: RegistrySettings,
        archive: Option<Sender<ArchiveItem>>,
        metrics: Arc<LogMetrics>,
    ) -> Self {
        Registry {
            entries: Mutex::new(HashMap::new()),
            settings,
            archive,
            metrics,
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<i64, Entry>> {
        crate::sync::lock(&self.entries)
    }

    /// The session's ring, made if it has none (a live session, or a client asking).
    pub fn session_started(&self, session_id: i64) -> Arc<SessionLog> {
        self.rings_for(&[session_id]).remove(0)
    }

    /// The rings for lines of these sessions (one lock for a whole delivery burst).
    pub fn rings_for(&self, session_ids: &[i64]) -> Vec<Arc<SessionLog>> {
        let mut entries = self.entries();
        let rings = session_ids
            .iter()
            .map(|&id| {
                entries
                    .entry(id)
                    .or_insert_with(|| Entry {
                        log: Arc::new(SessionLog::new(
                            id,
                            self.settings.capacity,
                            self.settings.max_bytes,
                        )),
                        ended_at: None,
                        clients: 0,
                    })
                    .log
                    .clone()
            })
            .collect();
        self.metrics.sessions.set(entries.len() as u64);
        rings
    }

    /// The session is over; its ring closes after the grace period.
    pub fn session_ended(&self, session_id: i64) {
        let mut entries = self.entries();
        match entries.get_mut(&session_id) {
            Some(e) if e.ended_at.is_none() => e.ended_at = Some(Instant::now()),
            Some(_) => {}
            None => {
                drop(entries);
                self.archive_ended(session_id);
            }
        }
    }

    fn archive_ended(&self, session_id: i64) {
        if let Some(archive) = &self.archive {
            let _ = archive.try_send(ArchiveItem::SessionEnded(session_id));
        }
    }

    /// A client starts reading the session's ring, if it is buffered.
    pub fn attach(&self, session_id: i64) -> Option<Arc<SessionLog>> {
        let mut entries = self.entries();
        let e = entries.get_mut(&session_id)?;
        e.clients += 1;
        Some(e.log.clone())
    }

    /// Counts a client in on the session's ring, making the ring if it has none.
    pub fn attach_started(&self, session_id: i64) -> Arc<SessionLog> {
        self.session_started(session_id);
        self.attach(session_id)
            .expect("a session just started is registered")
    }

    pub fn detach(&self, session_id: i64) {
        if let Some(e) = self.entries().get_mut(&session_id) {
            e.clients = e.clients.saturating_sub(1);
        }
    }

    /// Whether the session's ring still takes lines (it exists and has not been closed).
    pub fn is_open(&self, session_id: i64) -> bool {
        self.entries()
            .get(&session_id)
            .is_some_and(|e| !e.log.is_closed())
    }

    /// Closes the rings of sessions ended more than the grace ago and forgets rings nobody
    /// reads any more. Run every second or so.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut closing = Vec::new();
        {
            let mut entries = self.entries();
            for (id, e) in entries.iter() {
                if e.ended_at
                    .is_some_and(|t| now >= t + self.settings.end_grace && !e.log.is_closed())
                {
                    closing.push((*id, e.log.clone()));
                }
            }
            let keep = self.settings.keep_after_end;
            entries.retain(|_, e| e.clients > 0 || e.ended_at.is_none_or(|t| now < t + keep));
            self.metrics.sessions.set(entries.len() as u64);
        }
        for (id, log) in closing {
            log.close();
            self.archive_ended(id);
            log::info!(session_id = id; "session ended: its console buffer is closed");
        }
    }

    /// Sessions whose rings are open and not known to have ended (for reconciling with the
    /// database).
    pub fn open_sessions(&self) -> Vec<i64> {
        self.entries()
            .iter()
            .filter(|(_, e)| e.ended_at.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Shutdown: every ring closes (clients finish what is buffered); lines published
    /// meanwhile wait in this instance's queue.
    pub fn close_all(&self) {
        for e in self.entries().values() {
            e.log.close();
        }
    }
}
