//! The sessions this instance buffers: each one's ring and, while lines may still come, its
//! feed. Feeds start when a session starts (events) or when a client asks (on demand); they
//! stop a short grace after the session ends, and the ring is forgotten once no client reads
//! it and `LOG_BUFFER_TTL` has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::archiver::ArchiveItem;
use super::feed::{spawn_feed, FeedContext, FeedHandle, FeedStop};
use super::ring::SessionLog;
use crate::lifecycle::ShutdownSignal;

struct Entry {
    log: Arc<SessionLog>,
    feed: Option<FeedHandle>,
    ended_at: Option<Instant>,
    clients: usize,
}

pub struct RegistrySettings {
    /// Lines kept per session (`LOG_BUFFER_MAX_MESSAGES`).
    pub capacity: usize,
    /// After a session ends, how long its feed still waits for trailing lines.
    pub end_grace: Duration,
    /// After a session ends, how long its ring stays for late clients (`LOG_BUFFER_TTL`).
    pub keep_after_end: Duration,
}

pub struct Registry {
    entries: Mutex<HashMap<i64, Entry>>,
    feeds: Arc<FeedContext>,
    settings: RegistrySettings,
    archive: Option<Sender<ArchiveItem>>,
    shutdown: ShutdownSignal,
}

impl Registry {
    pub fn new(
        feeds: Arc<FeedContext>,
        settings: RegistrySettings,
        archive: Option<Sender<ArchiveItem>>,
        shutdown: ShutdownSignal,
    ) -> Self {
        Registry {
            entries: Mutex::new(HashMap::new()),
            feeds,
            settings,
            archive,
            shutdown,
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<i64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts buffering a live session (idempotent).
    pub fn session_started(&self, session_id: i64) -> std::io::Result<Arc<SessionLog>> {
        let mut entries = self.entries();
        if let Some(e) = entries.get(&session_id) {
            return Ok(e.log.clone());
        }
        let log = Arc::new(SessionLog::new(session_id, self.settings.capacity));
        let feed = spawn_feed(self.feeds.clone(), log.clone(), self.shutdown.clone())?;
        entries.insert(
            session_id,
            Entry {
                log: log.clone(),
                feed: Some(feed),
                ended_at: None,
                clients: 0,
            },
        );
        self.feeds.metrics.sessions.set(entries.len() as u64);
        log::info!(session_id = session_id; "buffering session logs");
        Ok(log)
    }

    /// The session is over; its feed stops after the grace period.
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

    /// Counts a client in on a ring just created by `session_started`.
    pub fn attach_started(&self, session_id: i64) -> std::io::Result<Arc<SessionLog>> {
        self.session_started(session_id)?;
        Ok(self
            .attach(session_id)
            .expect("a session just started is registered"))
    }

    pub fn detach(&self, session_id: i64) {
        if let Some(e) = self.entries().get_mut(&session_id) {
            e.clients = e.clients.saturating_sub(1);
        }
    }

    pub fn has_feed(&self, session_id: i64) -> bool {
        self.entries()
            .get(&session_id)
            .is_some_and(|e| e.feed.is_some())
    }

    /// Stops the feeds of sessions ended more than the grace ago (deleting their queues) and
    /// forgets rings nobody reads any more. Run every second or so.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut stopping = Vec::new();
        {
            let mut entries = self.entries();
            for (id, e) in entries.iter_mut() {
                if let Some(ended) = e.ended_at {
                    if now >= ended + self.settings.end_grace {
                        if let Some(feed) = e.feed.take() {
                            stopping.push((*id, feed, e.log.clone()));
                        }
                    }
                }
            }
            let keep = self.settings.keep_after_end;
            entries.retain(|_, e| {
                e.clients > 0 || e.feed.is_some() || e.ended_at.is_none_or(|t| now < t + keep)
            });
            self.feeds.metrics.sessions.set(entries.len() as u64);
        }
        // Joining feeds happens outside the lock: clients keep attaching meanwhile.
        for (id, feed, log) in stopping {
            feed.stop(FeedStop::SessionEnded);
            log.close();
            self.archive_ended(id);
            log::info!(session_id = id; "session ended: stopped its log feed");
        }
    }

    /// Sessions with a feed (for reconciling with the database).
    pub fn fed_sessions(&self) -> Vec<i64> {
        self.entries()
            .iter()
            .filter(|(_, e)| e.feed.is_some() && e.ended_at.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Shutdown: every feed stops, keeping its queue so lines published while we restart
    /// wait there (bounded by the queue's TTL and length).
    pub fn stop_all(&self) {
        let feeds: Vec<FeedHandle> = self
            .entries()
            .values_mut()
            .filter_map(|e| e.feed.take())
            .collect();
        for f in &feeds {
            f.request_stop(FeedStop::Shutdown);
        }
        for f in feeds {
            f.join();
        }
        for e in self.entries().values() {
            e.log.close();
        }
    }
}
