//! Restores: a completed backup put back into a deployment (its own, or another on any host:
//! how a server moves). The deployment's live session is stopped first (its stop plan, as
//! `session stop`), its host replaces the directory with the verified archive (the old one kept
//! as `….previous`), and the session is started again if one was running, also when the
//! restore failed (the old directory is then untouched).

use std::time::{Duration, Instant};

use super::convert::millis;
use super::error::ApiError;
use super::validate::positive_id;
use super::ApiService;
use crate::db::backups::{self, RestoreRow};
use crate::db::{catalog, sessions};
use crate::proto::v1 as pb;
use crate::wire::backup::{BackupStatus, RestoreBackup};
use crate::wire::commands::CommandKind;
use crate::wire::SessionStatus;

/// Beyond the config's stop timeout, how long a restore waits for the session to end.
const STOP_GRACE: Duration = Duration::from_secs(30);

pub fn restore_pb(r: RestoreRow) -> pb::Restore {
    pb::Restore {
        restore_id: r.restore_id,
        backup_id: r.backup_id,
        sgc_id: r.sgc_id,
        status: r.status,
        reason: r.reason.unwrap_or_default(),
        stopped_session_id: r.stopped_session_id.unwrap_or(0),
        started_session_id: r.started_session_id.unwrap_or(0),
        created_at_ms: r.created_at.timestamp_millis(),
        ended_at_ms: millis(r.ended_at),
    }
}

impl ApiService {
    fn restore_row(&self, id: i64) -> Result<RestoreRow, ApiError> {
        let id = positive_id("restore_id", id)?;
        backups::get_restore(&mut *self.db()?, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no restore with id {id}")))
    }

    pub fn get_restore(
        &self,
        req: pb::GetRestoreRequest,
    ) -> Result<pb::GetRestoreResponse, ApiError> {
        Ok(pb::GetRestoreResponse {
            restore: Some(restore_pb(self.restore_row(req.restore_id)?)),
        })
    }

    /// Records the restore and returns at once; a thread of its own stops the session and
    /// hands the archive to the host (`GetRestore` follows it).
    pub fn restore_backup(
        &self,
        req: pb::RestoreBackupRequest,
    ) -> Result<pb::RestoreBackupResponse, ApiError> {
        let backup = self.backup(req.backup_id)?;
        if backup.status != BackupStatus::Completed {
            return Err(ApiError::FailedPrecondition(format!(
                "backup {} is {}; only a completed backup can be restored",
                backup.backup_id,
                backup.status.as_str()
            )));
        }
        self.store()?;
        let sgc_id = match req.to_sgc_id {
            0 => backup.sgc_id,
            id => positive_id("to_sgc_id", id)?,
        };
        let mut db = self.db()?;
        let d = catalog::get_deployment(&mut *db, sgc_id)?
            .ok_or_else(|| ApiError::NotFound(format!("no deployment with id {sgc_id}")))?;
        if d.status == "retired" {
            return Err(ApiError::FailedPrecondition(format!(
                "deployment {sgc_id} was deleted"
            )));
        }
        let live = sessions::live_of_deployment(&mut *db, sgc_id)?
            .into_iter()
            .next();
        let finish_by = chrono::Utc::now() + self.inner.backups.timeout;
        let restore = backups::create_restore(&mut *db, backup.backup_id, sgc_id, live, finish_by)?
            .map_err(|active| {
                ApiError::AlreadyExists(format!(
                    "deployment {sgc_id} is being restored already (restore {active})"
                ))
            })?;
        drop(db);
        let service = self.clone();
        let id = restore.restore_id;
        std::thread::Builder::new()
            .name(format!("restore-{id}"))
            .spawn(move || {
                if let Err(e) = service.run_restore(id, d.server_id) {
                    log::warn!(restore_id = id; "restore failed: {e}");
                    let _ = service.end_restore(id, Err(e.to_string()));
                }
            })
            .map_err(|e| ApiError::Internal(format!("cannot start the restore: {e}")))?;
        log::info!(restore_id = id, backup_id = backup.backup_id, sgc_id = sgc_id; "restore started");
        Ok(pb::RestoreBackupResponse {
            restore: Some(restore_pb(restore)),
        })
    }

    /// Stops the live session and waits for its end, then sends the host the archive's URLs.
    fn run_restore(&self, id: i64, server_id: i64) -> Result<(), ApiError> {
        let restore = self.restore_row(id)?;
        let backup = self.backup(restore.backup_id)?;
        if let Some(session_id) = restore.stopped_session_id {
            self.stop_and_wait(session_id)?;
        }
        backups::advance_restore(&mut *self.db()?, id, "restoring", None, None)?
            .ok_or_else(|| ApiError::FailedPrecondition(format!("restore {id} ended meanwhile")))?;
        let store = self.store()?;
        let expiry = self.inner.backups.timeout;
        let command = RestoreBackup {
            restore_id: id,
            backup_id: backup.backup_id,
            sgc_id: restore.sgc_id,
            archive_url: store.presign_get(&backup.s3_key, expiry)?,
            manifest_url: store.presign_get(&backup.manifest_key, expiry)?,
        };
        self.command(server_id, CommandKind::Restore, &command)
    }

    fn stop_and_wait(&self, session_id: i64) -> Result<(), ApiError> {
        let view = sessions::get_view(&mut *self.db()?, session_id)?
            .ok_or_else(|| ApiError::NotFound(format!("no session {session_id}")))?;
        let stop_timeout = {
            let mut db = self.db()?;
            catalog::get_deployment(&mut *db, view.sgc_id)?
                .and_then(|d| catalog::get_config(&mut *db, d.config_id).ok().flatten())
                .map(|c| Duration::from_secs(c.process.stop_timeout_seconds.into()))
                .unwrap_or(Duration::from_secs(30))
        };
        match self.stop_session(pb::StopSessionRequest {
            session_id,
            kill: false,
            force: false,
        }) {
            Ok(_) | Err(ApiError::FailedPrecondition(_)) => {}
            Err(e) => return Err(e),
        }
        let until = Instant::now() + stop_timeout + STOP_GRACE;
        loop {
            let status: SessionStatus = sessions::get_view(&mut *self.db()?, session_id)?
                .map(|v| v.status)
                .unwrap_or_default()
                .parse()
                .unwrap_or(SessionStatus::Stopped);
            if status.is_terminal() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(ApiError::Unavailable(format!(
                    "session {session_id} did not stop within {:?}",
                    stop_timeout + STOP_GRACE
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ends a restore, then starts the session again if one was stopped for it (no session
    /// may start while a restore is under way).
    fn end_restore(&self, id: i64, result: Result<(), String>) -> Result<RestoreRow, ApiError> {
        let (status, reason) = match &result {
            Ok(()) => ("completed", None),
            Err(r) => ("failed", Some(r.as_str())),
        };
        let ended = backups::advance_restore(&mut *self.db()?, id, status, reason, None)?
            .ok_or_else(|| {
                ApiError::FailedPrecondition(format!("restore {id} had ended already"))
            })?;
        if ended.stopped_session_id.is_some() {
            let start = pb::StartSessionRequest {
                sgc_id: ended.sgc_id,
                force: false,
            };
            match self.start_session(start) {
                Ok(r) => {
                    if let Some(s) = r.session {
                        backups::set_restarted(&mut *self.db()?, id, s.session_id)?;
                    }
                }
                Err(e) => {
                    log::warn!(restore_id = id; "session not started again after the restore: {e}")
                }
            }
        }
        self.restore_row(id)
    }

    /// Host role: the restore's result.
    pub fn finish_restore(
        &self,
        req: pb::FinishRestoreRequest,
        caller: Option<crate::auth::Caller>,
    ) -> Result<pb::FinishRestoreResponse, ApiError> {
        let restore = self.restore_row(req.restore_id)?;
        let server_id = catalog::get_deployment(&mut *self.db()?, restore.sgc_id)?
            .map(|d| d.server_id)
            .unwrap_or(0);
        if let Some(c) = &caller {
            if c.role == crate::auth::Role::Host && c.server_id != Some(server_id) {
                return Err(ApiError::PermissionDenied(format!(
                    "restore {} belongs to another host",
                    restore.restore_id
                )));
            }
        }
        let result = if req.ok {
            Ok(())
        } else {
            Err(if req.reason.is_empty() {
                "the host gave no reason".to_string()
            } else {
                req.reason
            })
        };
        self.end_restore(restore.restore_id, result)?;
        Ok(pb::FinishRestoreResponse {})
    }
}
