//! Archival: lines grouped per session per UTC minute, written as gzip objects to S3 with a
//! `log_references` row each. One archiver thread; one archiving instance at a time (a
//! PostgreSQL advisory lock held on a dedicated connection).
//!
//! A minute is flushed once it is over plus a grace period, when its session ends, and at
//! shutdown. A failed flush (S3 or PostgreSQL down) keeps the lines and is retried with
//! backoff. Late lines for an archived minute become a new gzip member appended to its object.
//! Flushes are idempotent: the object is the truth for what was written, the row's
//! `line_count` for what was committed, and a retry skips lines an earlier attempt already
//! put in the object.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::metrics::LogMetrics;
use crate::db::{log_references, DbPool};
use crate::lifecycle::ShutdownSignal;
use crate::logstore::{
    decode_object, encode_lines, minute_of, object_key, ArchivedLine, ObjectStore,
};
use crate::retry::Backoff;

/// The advisory lock key of the archiving instance ("manman-log-archiver").
pub const ARCHIVER_LOCK_KEY: i64 = 0x6d61_6e6d_616e_4c41;

pub enum ArchiveItem {
    /// A session's lines, in order (one console batch).
    Lines(i64, Vec<ArchivedLine>),
    /// The session is over: flush its minutes now.
    SessionEnded(i64),
}

#[derive(Debug, Clone)]
pub struct ArchiverSettings {
    /// How long after a minute ends its late lines are still waited for.
    pub grace: Duration,
    /// Lines held in memory at most; beyond, the feeds' channel fills and lines are dropped
    /// from the archive (counted and logged), never from the live stream.
    pub max_pending_lines: usize,
    /// How long shutdown keeps trying to flush what is left.
    pub final_flush: Duration,
}

impl Default for ArchiverSettings {
    fn default() -> Self {
        ArchiverSettings {
            grace: Duration::from_secs(10),
            max_pending_lines: 500_000,
            final_flush: Duration::from_secs(20),
        }
    }
}

#[derive(Debug)]
enum FlushError {
    /// Another instance holds the archiver lock.
    NotLeader,
    /// The session is not in the database: nothing can ever reference its lines.
    UnknownSession,
    Retry(String),
}

impl From<postgres::Error> for FlushError {
    fn from(e: postgres::Error) -> Self {
        FlushError::Retry(format!("database: {e}"))
    }
}

impl From<r2d2::Error> for FlushError {
    fn from(e: r2d2::Error) -> Self {
        FlushError::Retry(format!("database: {e}"))
    }
}

impl From<crate::logstore::StoreError> for FlushError {
    fn from(e: crate::logstore::StoreError) -> Self {
        FlushError::Retry(crate::errors::chain(&e))
    }
}

pub struct Archiver {
    settings: ArchiverSettings,
    store: ObjectStore,
    pool: DbPool,
    database: postgres::Config,
    metrics: Arc<LogMetrics>,
    /// (session, minute start ms) → lines in arrival order.
    pending: BTreeMap<(i64, i64), Vec<ArchivedLine>>,
    pending_lines: usize,
    ended: HashSet<i64>,
    sgc_of: HashMap<i64, i64>,
    leader: Option<postgres::Client>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Another instance archives: do not ask again before this.
    standby_until: Option<Instant>,
}

impl Archiver {
    pub fn new(
        settings: ArchiverSettings,
        store: ObjectStore,
        pool: DbPool,
        database: postgres::Config,
        metrics: Arc<LogMetrics>,
    ) -> Self {
        Archiver {
            settings,
            store,
            pool,
            database,
            metrics,
            pending: BTreeMap::new(),
            pending_lines: 0,
            ended: HashSet::new(),
            sgc_of: HashMap::new(),
            leader: None,
            failures: 0,
            retry_at: None,
            standby_until: None,
        }
    }

    /// Runs until shutdown, then flushes everything it can within `final_flush`.
    pub fn run(
        mut self,
        items: Receiver<ArchiveItem>,
        shutdown: ShutdownSignal,
    ) -> Result<(), String> {
        if let Err(e) = self.store.ensure_bucket() {
            log::warn!(bucket = self.store.bucket_name(); "cannot check or create the archive bucket yet: {}", crate::errors::chain(&e));
        }
        loop {
            if self.pending_lines < self.settings.max_pending_lines {
                select! {
                    recv(items) -> item => match item {
                        Ok(item) => self.ingest(item, &items),
                        Err(_) => break,
                    },
                    recv(shutdown.receiver()) -> _ => break,
                    default(Duration::from_secs(1)) => {}
                }
            } else if shutdown.wait(Duration::from_millis(200)) {
                break;
            }
            self.flush_due(now_ms(), false);
        }
        // Lines already handed over by the feeds are archived too.
        let until = Instant::now() + self.settings.final_flush;
        while let Ok(item) = items.try_recv() {
            self.ingest_one(item);
        }
        loop {
            self.retry_at = None;
            self.flush_due(now_ms(), true);
            if self.pending.is_empty() || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if self.pending_lines > 0 {
            log::error!(lines = self.pending_lines;
                "stopping with log lines not archived (S3 or PostgreSQL unreachable)");
        }
        Ok(())
    }

    fn ingest(&mut self, first: ArchiveItem, items: &Receiver<ArchiveItem>) {
        self.ingest_one(first);
        for _ in 0..10_000 {
            match items.try_recv() {
                Ok(item) => self.ingest_one(item),
                Err(_) => break,
            }
        }
    }

    fn ingest_one(&mut self, item: ArchiveItem) {
        match item {
            ArchiveItem::Lines(session_id, lines) => {
                self.pending_lines += lines.len();
                for l in lines {
                    self.pending
                        .entry((session_id, minute_of(l.timestamp)))
                        .or_default()
                        .push(l);
                }
            }
            ArchiveItem::SessionEnded(id) => {
                self.ended.insert(id);
            }
        }
        self.metrics
            .archive_pending_lines
            .set(self.pending_lines as u64);
    }

    /// Flushes every minute that is due (all of them with `everything`).
    fn flush_due(&mut self, now: i64, everything: bool) {
        if let Some(oldest) = self.pending.keys().map(|k| k.1).min() {
            self.metrics
                .archive_lag_seconds
                .set(((now - oldest).max(0) / 1000) as u64);
        } else {
            self.metrics.archive_lag_seconds.set(0);
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let grace = self.settings.grace.as_millis() as i64;
        let due: Vec<(i64, i64)> = self
            .pending
            .keys()
            .filter(|(session, minute)| {
                everything || self.ended.contains(session) || minute + 60_000 + grace <= now
            })
            .copied()
            .collect();
        for key in due {
            let lines = self.pending.remove(&key).unwrap_or_default();
            let started = Instant::now();
            match self.flush(key, &lines) {
                Ok(()) => {
                    self.metrics
                        .archive_flush_seconds
                        .observe(started.elapsed());
                    self.metrics.archived_lines.add(lines.len() as u64);
                    self.forget(lines.len());
                    if self.failures > 0 {
                        log::info!(failed_attempts = self.failures; "archiving works again");
                    }
                    self.failures = 0;
                }
                Err(FlushError::NotLeader) => {
                    // The archiving instance has its own copy of these lines.
                    self.forget(lines.len());
                }
                Err(FlushError::UnknownSession) => {
                    log::warn!(session_id = key.0, lines = lines.len();
                        "not archiving lines of a session the database does not know");
                    self.metrics.archive_dropped.add(lines.len() as u64);
                    self.forget(lines.len());
                }
                Err(FlushError::Retry(e)) => {
                    self.metrics.archive_failures.inc();
                    let delay =
                        Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 2.0)
                            .delay(self.failures);
                    log::warn!(session_id = key.0, lines = lines.len(), pending = self.pending_lines;
                        "archiving failed, keeping the lines and retrying in {delay:?}: {e}");
                    self.failures = self.failures.saturating_add(1);
                    self.retry_at = Some(Instant::now() + delay);
                    self.pending.insert(key, lines);
                    return;
                }
            }
        }
        // Ended sessions with nothing left pending need no more early flushing.
        let pending = &self.pending;
        self.ended.retain(|s| pending.keys().any(|k| k.0 == *s));
    }

    fn forget(&mut self, n: usize) {
        self.pending_lines = self.pending_lines.saturating_sub(n);
        self.metrics
            .archive_pending_lines
            .set(self.pending_lines as u64);
    }

    fn flush(
        &mut self,
        (session_id, minute): (i64, i64),
        lines: &[ArchivedLine],
    ) -> Result<(), FlushError> {
        self.ensure_leader()?;
        let sgc_id = self.sgc_of(session_id)?;
        let key = object_key(sgc_id, session_id, minute);
        let mut conn = self.pool.get()?;
        let (reference, created) =
            log_references::claim_minute(&mut *conn, session_id, minute, &key)?;
        let mut object = if created {
            Vec::new()
        } else {
            self.store.get(&reference.file_path)?.unwrap_or_default()
        };
        let in_object = if object.is_empty() {
            0
        } else {
            decode_object(&object)
                .map_err(|e| {
                    FlushError::Retry(format!("cannot read {}: {e}", reference.file_path))
                })?
                .len()
        };
        // Lines an earlier attempt put in the object without committing its row.
        let already = in_object
            .saturating_sub(reference.line_count.max(0) as usize)
            .min(lines.len());
        let fresh = &lines[already..];
        if !fresh.is_empty() {
            object.extend(encode_lines(fresh));
            self.store.put(&reference.file_path, &object)?;
        }
        let total = i32::try_from(in_object + fresh.len()).unwrap_or(i32::MAX);
        log_references::mark_archived(&mut *conn, session_id, minute, total)?;
        Ok(())
    }

    fn sgc_of(&mut self, session_id: i64) -> Result<i64, FlushError> {
        if let Some(sgc) = self.sgc_of.get(&session_id) {
            return Ok(*sgc);
        }
        let mut conn = self.pool.get()?;
        let row = conn.query_opt(
            "SELECT sgc_id FROM sessions WHERE session_id = $1",
            &[&session_id],
        )?;
        let sgc: i64 = row.ok_or(FlushError::UnknownSession)?.get(0);
        self.sgc_of.insert(session_id, sgc);
        Ok(sgc)
    }

    /// Holds the advisory lock on a dedicated connection; re-takes it after that connection
    /// dies (e.g. a PostgreSQL restart), when another instance may have taken over.
    fn ensure_leader(&mut self) -> Result<(), FlushError> {
        if let Some(client) = self.leader.as_mut() {
            if client.is_valid(Duration::from_secs(5)).is_ok() {
                return Ok(());
            }
            log::warn!("lost the archiver lock connection; taking the lock again");
            self.leader = None;
        }
        if self.standby_until.is_some_and(|t| Instant::now() < t) {
            return Err(FlushError::NotLeader);
        }
        let mut client = crate::db::connect_once(&self.database)
            .map_err(|e| FlushError::Retry(String::from(e)))?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ARCHIVER_LOCK_KEY])?
            .get(0);
        if !got {
            self.standby_until = Some(Instant::now() + Duration::from_secs(10));
            return Err(FlushError::NotLeader);
        }
        log::info!("this instance archives logs (holds the archiver lock)");
        self.leader = Some(client);
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
