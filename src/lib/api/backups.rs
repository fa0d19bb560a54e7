//! Backups: the API opens each multipart upload and pre-signs its URLs (a host never holds the
//! bucket's keys), asks the deployment's host to stream the archive into it, takes the host's
//! progress and result, joins or aborts the upload, announces the outcome
//! (`manman.backup.completed|failed`) and applies the config's retention. A backup still
//! active past its deadline is failed and its upload aborted by [`BackupDeadlines`].

use std::time::Duration;

use super::convert::millis;
use super::error::ApiError;
use super::validate::{page, positive_id};
use super::ApiService;
use crate::config::{ConfigError, Env};
use crate::db::backups::{self, BackupRow, Outcome};
use crate::db::catalog;
use crate::db::outbox::{self, OutboxEvent};
use crate::db::sessions;
use crate::lifecycle::ShutdownSignal;
use crate::logstore::ObjectStore;
use crate::proto::v1 as pb;
use crate::wire::backup::{BackupPolicy, BackupStatus, CreateBackup, Kept};
use crate::wire::commands::CommandKind;
use crate::wire::external::BackupEnded;

/// S3 takes at most 10,000 parts per upload.
const MAX_PARTS: i32 = 10_000;
/// Part URLs one `PresignBackupParts` call may ask for.
const MAX_PRESIGN: i32 = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// `BACKUP_PART_SIZE_MB` (default 8, at least S3's 5; doubled every 1,000 parts): the
    /// host's memory holds four parts.
    pub part_size: u64,
    /// `BACKUP_TIMEOUT_SECONDS` (default 6 h): a backup or restore not finished by then failed.
    pub timeout: Duration,
    /// How often overdue backups are looked for.
    pub sweep_every: Duration,
    /// Part URLs in the command (16); the host asks for more as it goes.
    pub first_part_urls: u32,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            part_size: 8 << 20,
            timeout: Duration::from_secs(6 * 3600),
            sweep_every: Duration::from_secs(15),
            first_part_urls: 16,
        }
    }
}

impl BackupSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = BackupSettings::default();
        let mb: u64 = env.parse("BACKUP_PART_SIZE_MB", d.part_size >> 20)?;
        if !(5..=512).contains(&mb) {
            return Err(ConfigError::new("BACKUP_PART_SIZE_MB", "must be 5 .. 512"));
        }
        let timeout = env.seconds("BACKUP_TIMEOUT_SECONDS", d.timeout.as_secs())?;
        if timeout < Duration::from_secs(10) || timeout > Duration::from_secs(7 * 86_400) {
            return Err(ConfigError::new(
                "BACKUP_TIMEOUT_SECONDS",
                "must be 10 s .. 7 days (a pre-signed URL lives at most 7 days)",
            ));
        }
        Ok(BackupSettings {
            part_size: mb << 20,
            timeout,
            sweep_every: d.sweep_every,
            first_part_urls: d.first_part_urls,
        })
    }
}

pub fn backup_pb(b: BackupRow) -> pb::Backup {
    pb::Backup {
        backup_id: b.backup_id,
        sgc_id: b.sgc_id,
        server_id: b.server_id,
        status: b.status.as_str().into(),
        note: b.note.unwrap_or_default(),
        pinned: b.pinned,
        bytes_done: b.bytes_done,
        bytes_total: b.bytes_total.unwrap_or(0),
        size_bytes: b.size_bytes.unwrap_or(0),
        file_count: b.file_count.unwrap_or(0),
        sha256: b.sha256.unwrap_or_default(),
        reason: b.reason.unwrap_or_default(),
        created_at_ms: b.created_at.timestamp_millis(),
        started_at_ms: millis(b.started_at),
        ended_at_ms: millis(b.ended_at),
        s3_key: b.s3_key,
        paused_ms: b.paused_ms.unwrap_or(0),
        snapshot: b.snapshot,
    }
}

fn ended_event(b: &BackupRow) -> OutboxEvent {
    let payload = BackupEnded {
        backup_id: b.backup_id,
        sgc_id: b.sgc_id,
        server_id: b.server_id,
        status: b.status.as_str().into(),
        size_bytes: b.size_bytes,
        file_count: b.file_count,
        reason: b.reason.clone(),
        ended_at: b.ended_at,
    };
    OutboxEvent {
        routing_key: format!("manman.backup.{}", b.status.as_str()),
        payload: serde_json::to_value(payload).expect("serialisable"),
    }
}

impl ApiService {
    pub(crate) fn store(&self) -> Result<&ObjectStore, ApiError> {
        self.inner.archive.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition(
                "backups need S3: this API has no S3_BUCKET configured".into(),
            )
        })
    }

    pub(crate) fn backup(&self, id: i64) -> Result<BackupRow, ApiError> {
        let id = positive_id("backup_id", id)?;
        backups::get(&mut *self.db()?, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no backup with id {id}")))
    }

    pub fn create_backup(
        &self,
        req: pb::CreateBackupRequest,
    ) -> Result<pb::CreateBackupResponse, ApiError> {
        let sgc_id = positive_id("sgc_id", req.sgc_id)?;
        if req.note.len() > 500 || req.note.chars().any(char::is_control) {
            return Err(ApiError::InvalidArgument(
                "note must be one line of at most 500 bytes".into(),
            ));
        }
        let store = self.store()?;
        let settings = &self.inner.backups;
        let mut db = self.db()?;
        let d = catalog::get_deployment(&mut *db, sgc_id)?
            .ok_or_else(|| ApiError::NotFound(format!("no deployment with id {sgc_id}")))?;
        if d.status == "retired" {
            return Err(ApiError::FailedPrecondition(format!(
                "deployment {sgc_id} was deleted"
            )));
        }
        let config = catalog::get_config(&mut *db, d.config_id)?
            .ok_or_else(|| ApiError::NotFound(format!("deployment {sgc_id} has no config")))?;
        config.backup.validate().map_err(|e| {
            ApiError::InvalidArgument(format!("config {}: backup: {e}", config.config_id))
        })?;
        // The live session's console gets the pre and post actions.
        let session_id = sessions::live_of_deployment(&mut *db, sgc_id)?
            .into_iter()
            .next();
        let finish_by = chrono::Utc::now() + settings.timeout;
        let note = Some(req.note.as_str()).filter(|n| !n.is_empty());
        let row = backups::create(
            &mut *db,
            sgc_id,
            d.server_id,
            note,
            req.pinned,
            settings.part_size as i64,
            finish_by,
        )?
        .map_err(|active| {
            ApiError::AlreadyExists(format!(
                "deployment {sgc_id} already has backup {active} under way; one at a time"
            ))
        })?;
        drop(db);
        let id = row.backup_id;
        let opened = self.open_upload(store, &row, config.backup, session_id, finish_by);
        let started = opened.and_then(|command| {
            backups::set_upload(&mut *self.db()?, id, &command.1)?;
            self.command(d.server_id, CommandKind::Backup, &command.0)
        });
        if let Err(e) = started {
            self.fail_backup(id, &format!("not started: {e}"))?;
            return Err(e);
        }
        backups::mark_running(&mut *self.db()?, id)?;
        log::info!(backup_id = id, sgc_id = sgc_id, server_id = d.server_id; "backup started");
        Ok(pb::CreateBackupResponse {
            backup: Some(backup_pb(self.backup(id)?)),
        })
    }

    /// Opens the multipart upload and builds the host's command with its first URLs.
    fn open_upload(
        &self,
        store: &ObjectStore,
        row: &BackupRow,
        policy: BackupPolicy,
        session_id: Option<i64>,
        finish_by: chrono::DateTime<chrono::Utc>,
    ) -> Result<(CreateBackup, String), ApiError> {
        let settings = &self.inner.backups;
        let upload_id = store.start_multipart(&row.s3_key, "application/zstd")?;
        let part_urls = (1..=settings.first_part_urls.max(1))
            .map(|n| store.presign_part(&row.s3_key, &upload_id, n, settings.timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let command = CreateBackup {
            backup_id: row.backup_id,
            sgc_id: row.sgc_id,
            session_id,
            policy,
            part_size: settings.part_size,
            part_urls,
            manifest_url: store.presign_put(&row.manifest_key, settings.timeout)?,
            finish_by_ms: finish_by.timestamp_millis(),
        };
        Ok((command, upload_id))
    }

    pub fn list_backups(
        &self,
        req: pb::ListBackupsRequest,
    ) -> Result<pb::ListBackupsResponse, ApiError> {
        if req.sgc_id < 0 {
            return Err(ApiError::InvalidArgument(
                "sgc_id must not be negative".into(),
            ));
        }
        let p = page(0, req.page_size)?;
        if req.page_after < 0 {
            return Err(ApiError::InvalidArgument(
                "page_after must not be negative".into(),
            ));
        }
        let rows = backups::list(
            &mut *self.db()?,
            Some(req.sgc_id).filter(|s| *s > 0),
            req.page_after,
            p.limit,
        )?;
        let next_page_after = match rows.last() {
            Some(last) if rows.len() as i64 == p.limit => last.backup_id,
            _ => 0,
        };
        Ok(pb::ListBackupsResponse {
            backups: rows.into_iter().map(backup_pb).collect(),
            next_page_after,
        })
    }

    pub fn get_backup(&self, req: pb::GetBackupRequest) -> Result<pb::GetBackupResponse, ApiError> {
        Ok(pb::GetBackupResponse {
            backup: Some(backup_pb(self.backup(req.backup_id)?)),
        })
    }

    pub fn pin_backup(&self, req: pb::PinBackupRequest) -> Result<pb::PinBackupResponse, ApiError> {
        let id = positive_id("backup_id", req.backup_id)?;
        let row = backups::set_pinned(&mut *self.db()?, id, req.pinned)?
            .ok_or_else(|| ApiError::NotFound(format!("no backup with id {id}")))?;
        Ok(pb::PinBackupResponse {
            backup: Some(backup_pb(row)),
        })
    }

    /// Deletes a completed or failed backup's objects; the row stays (`deleted`). A running
    /// one is refused (it ends by itself, or by its deadline).
    pub fn delete_backup(
        &self,
        req: pb::DeleteBackupRequest,
    ) -> Result<pb::DeleteBackupResponse, ApiError> {
        let row = self.backup(req.backup_id)?;
        if row.status.is_active() {
            return Err(ApiError::FailedPrecondition(format!(
                "backup {} is {}; delete it once it has ended",
                row.backup_id,
                row.status.as_str()
            )));
        }
        if row.pinned {
            return Err(ApiError::FailedPrecondition(format!(
                "backup {} is pinned; unpin it first",
                row.backup_id
            )));
        }
        self.remove_objects(&row)?;
        backups::mark_gone(&mut *self.db()?, &[row.backup_id], BackupStatus::Deleted)?;
        Ok(pb::DeleteBackupResponse {
            backup: Some(backup_pb(self.backup(row.backup_id)?)),
        })
    }

    fn remove_objects(&self, row: &BackupRow) -> Result<(), ApiError> {
        let store = self.store()?;
        for key in [&row.s3_key, &row.manifest_key] {
            store.delete(key)?;
        }
        Ok(())
    }

    /// Host role: more part URLs for the backup it is running.
    pub fn presign_backup_parts(
        &self,
        req: pb::PresignBackupPartsRequest,
        caller: Option<crate::auth::Caller>,
    ) -> Result<pb::PresignBackupPartsResponse, ApiError> {
        let row = self.own_backup(req.backup_id, caller)?;
        if !row.status.is_active() {
            return Err(ApiError::FailedPrecondition(format!(
                "backup {} is {}: stop",
                row.backup_id,
                row.status.as_str()
            )));
        }
        if req.first_part < 1
            || !(1..=MAX_PRESIGN).contains(&req.count)
            || req.first_part + req.count - 1 > MAX_PARTS
        {
            return Err(ApiError::InvalidArgument(format!(
                "parts must lie in 1 .. {MAX_PARTS}, at most {MAX_PRESIGN} at a time"
            )));
        }
        let upload_id = row.upload_id.clone().ok_or_else(|| {
            ApiError::FailedPrecondition(format!("backup {} has no open upload", row.backup_id))
        })?;
        let store = self.store()?;
        let urls = (req.first_part..req.first_part + req.count)
            .map(|n| {
                store.presign_part(
                    &row.s3_key,
                    &upload_id,
                    n as u32,
                    self.inner.backups.timeout,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pb::PresignBackupPartsResponse { urls })
    }

    /// Host role: progress. FAILED_PRECONDITION once the backup has ended (failed by its
    /// deadline, say): the host stops.
    pub fn report_backup_progress(
        &self,
        req: pb::ReportBackupProgressRequest,
        caller: Option<crate::auth::Caller>,
    ) -> Result<pb::ReportBackupProgressResponse, ApiError> {
        let row = self.own_backup(req.backup_id, caller)?;
        if !backups::progress(
            &mut *self.db()?,
            row.backup_id,
            req.bytes_done,
            req.bytes_total,
        )? {
            return Err(ApiError::FailedPrecondition(format!(
                "backup {} is no longer running: stop",
                row.backup_id
            )));
        }
        Ok(pb::ReportBackupProgressResponse {})
    }

    /// Host role: the result. Success joins the parts (S3 checks each ETag) and applies
    /// retention; failure aborts the upload. Either way the outcome is announced.
    pub fn finish_backup(
        &self,
        req: pb::FinishBackupRequest,
        caller: Option<crate::auth::Caller>,
    ) -> Result<pb::FinishBackupResponse, ApiError> {
        let row = self.own_backup(req.backup_id, caller)?;
        if !row.status.is_active() {
            return Err(ApiError::FailedPrecondition(format!(
                "backup {} already ended {}",
                row.backup_id,
                row.status.as_str()
            )));
        }
        if !req.ok {
            let reason = if req.reason.is_empty() {
                "the host gave no reason"
            } else {
                &req.reason
            };
            let row = self.fail_backup(row.backup_id, reason)?;
            return Ok(pb::FinishBackupResponse {
                backup: row.map(backup_pb),
            });
        }
        let store = self.store()?;
        let mut parts: Vec<(u32, String)> = Vec::with_capacity(req.parts.len());
        for p in &req.parts {
            if !(1..=MAX_PARTS).contains(&p.number) || p.etag.is_empty() {
                return Err(ApiError::InvalidArgument(format!(
                    "part {} has no ETag or a number outside 1 .. {MAX_PARTS}",
                    p.number
                )));
            }
            parts.push((p.number as u32, p.etag.clone()));
        }
        parts.sort();
        let joined = match &row.upload_id {
            Some(upload) if !parts.is_empty() => store
                .complete_multipart(&row.s3_key, upload, parts)
                .map_err(|e| format!("S3 did not join the parts: {}", crate::errors::chain(&e))),
            _ => Err("no parts were uploaded".to_string()),
        };
        if let Err(reason) = joined {
            self.fail_backup(row.backup_id, &reason)?;
            return Err(ApiError::FailedPrecondition(reason));
        }
        let outcome = Outcome {
            size_bytes: req.size_bytes,
            file_count: req.file_count,
            sha256: req.sha256,
            bytes_total: req.bytes_total,
            paused_ms: req.paused_ms.max(0),
            snapshot: req.snapshot,
        };
        let mut db = self.db()?;
        let mut tx = db.transaction()?;
        let done = backups::complete(&mut tx, row.backup_id, &outcome)?;
        if let Some(done) = &done {
            outbox::enqueue_in(&mut tx, &[ended_event(done)])?;
        }
        tx.commit()?;
        drop(db);
        let Some(done) = done else {
            // Failed by its deadline while the parts were joined: the object goes too.
            let _ = self.remove_objects(&row);
            return Err(ApiError::FailedPrecondition(format!(
                "backup {} ended before the host finished",
                row.backup_id
            )));
        };
        log::info!(backup_id = done.backup_id, size = done.size_bytes.unwrap_or(0); "backup completed");
        self.inner.metrics.backup_ended(true);
        if let Err(e) = self.apply_retention(done.sgc_id) {
            log::warn!(sgc_id = done.sgc_id; "retention not applied: {e}");
        }
        Ok(pb::FinishBackupResponse {
            backup: Some(backup_pb(done)),
        })
    }

    fn own_backup(
        &self,
        id: i64,
        caller: Option<crate::auth::Caller>,
    ) -> Result<BackupRow, ApiError> {
        let row = self.backup(id)?;
        match caller {
            Some(c) if c.role == crate::auth::Role::Host && c.server_id != Some(row.server_id) => {
                Err(ApiError::PermissionDenied(format!(
                    "backup {id} belongs to another host"
                )))
            }
            _ => Ok(row),
        }
    }

    /// Ends an active backup `failed`, announces it, and aborts its upload; `None` if it had
    /// ended already.
    pub(crate) fn fail_backup(&self, id: i64, reason: &str) -> Result<Option<BackupRow>, ApiError> {
        let mut db = self.db()?;
        let mut tx = db.transaction()?;
        let failed = backups::fail(&mut tx, id, reason)?;
        if let Some(f) = &failed {
            outbox::enqueue_in(&mut tx, &[ended_event(f)])?;
        }
        tx.commit()?;
        drop(db);
        if let Some(f) = &failed {
            log::warn!(backup_id = id; "backup failed: {reason}");
            self.inner.metrics.backup_ended(false);
            self.abort_upload(f);
        }
        Ok(failed)
    }

    fn abort_upload(&self, row: &BackupRow) {
        if let (Some(upload), Ok(store)) = (&row.upload_id, self.store()) {
            if let Err(e) = store.abort_multipart(&row.s3_key, upload) {
                log::warn!(backup_id = row.backup_id; "upload not aborted: {}", crate::errors::chain(&e));
            }
        }
    }

    /// Prunes the deployment's completed backups its config's retention no longer keeps.
    pub(crate) fn apply_retention(&self, sgc_id: i64) -> Result<usize, ApiError> {
        let mut db = self.db()?;
        let Some(d) = catalog::get_deployment(&mut *db, sgc_id)? else {
            return Ok(0);
        };
        let Some(config) = catalog::get_config(&mut *db, d.config_id)? else {
            return Ok(0);
        };
        let completed = backups::completed_of(&mut *db, sgc_id)?;
        drop(db);
        let kept: Vec<Kept> = completed
            .iter()
            .map(|b| Kept {
                backup_id: b.backup_id,
                ended_at_s: b.ended_at.map(|t| t.timestamp()).unwrap_or(0),
                pinned: b.pinned,
            })
            .collect();
        let prune = config
            .backup
            .to_prune(&kept, chrono::Utc::now().timestamp());
        let mut pruned = Vec::new();
        for b in completed.iter().filter(|b| prune.contains(&b.backup_id)) {
            match self.remove_objects(b) {
                Ok(()) => pruned.push(b.backup_id),
                Err(e) => log::warn!(backup_id = b.backup_id; "not pruned: {e}"),
            }
        }
        backups::mark_gone(&mut *self.db()?, &pruned, BackupStatus::Pruned)?;
        if !pruned.is_empty() {
            log::info!(sgc_id = sgc_id, pruned = format!("{pruned:?}").as_str(); "backups pruned by retention");
        }
        Ok(pruned.len())
    }

    /// Fails what is past its deadline: backups (their uploads aborted) and restores.
    pub fn sweep_overdue(&self) -> Result<usize, ApiError> {
        let overdue = {
            let mut db = self.db()?;
            let mut tx = db.transaction()?;
            let failed = backups::fail_overdue(&mut tx)?;
            let events: Vec<OutboxEvent> = failed.iter().map(ended_event).collect();
            if !events.is_empty() {
                outbox::enqueue_in(&mut tx, &events)?;
            }
            tx.commit()?;
            failed
        };
        for b in &overdue {
            log::warn!(backup_id = b.backup_id; "backup failed: not finished by its deadline");
            self.inner.metrics.backup_ended(false);
            self.abort_upload(b);
        }
        let restores = backups::fail_overdue_restores(&mut *self.db()?)?;
        Ok(overdue.len() + restores as usize)
    }
}

/// The API's thread that fails overdue backups and restores.
pub struct BackupDeadlines {
    pub service: ApiService,
    pub every: Duration,
}

impl BackupDeadlines {
    pub fn run(&self, shutdown: &ShutdownSignal) -> Result<(), String> {
        while !shutdown.wait(self.every) {
            if let Err(e) = self.service.sweep_overdue() {
                log::warn!("overdue backups not checked: {e}");
            }
        }
        Ok(())
    }
}
