//! Backups and restores: the rows the API keeps while a host makes or restores an archive,
//! and what retention may prune (decided by `retention`, a pure function).

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Row};

use crate::wire::backup::BackupStatus;

#[derive(Debug, Clone, PartialEq)]
pub struct BackupRow {
    pub backup_id: i64,
    pub sgc_id: i64,
    pub server_id: i64,
    pub status: BackupStatus,
    pub note: Option<String>,
    pub pinned: bool,
    pub s3_key: String,
    pub manifest_key: String,
    pub upload_id: Option<String>,
    pub part_size: i64,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub size_bytes: Option<i64>,
    pub file_count: Option<i32>,
    pub sha256: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub paused_ms: Option<i64>,
    pub snapshot: bool,
}

const COLUMNS: &str = "backup_id, sgc_id, server_id, status, note, pinned, s3_key, manifest_key, \
     upload_id, part_size, bytes_done, bytes_total, size_bytes, file_count, sha256, reason, \
     created_at, started_at, ended_at, paused_ms, snapshot";

fn backup(r: &Row) -> BackupRow {
    BackupRow {
        backup_id: r.get(0),
        sgc_id: r.get(1),
        server_id: r.get(2),
        // The CHECK constraint keeps the column to the known statuses.
        status: r
            .get::<_, String>(3)
            .parse()
            .unwrap_or(BackupStatus::Failed),
        note: r.get(4),
        pinned: r.get(5),
        s3_key: r.get(6),
        manifest_key: r.get(7),
        upload_id: r.get(8),
        part_size: r.get(9),
        bytes_done: r.get(10),
        bytes_total: r.get(11),
        size_bytes: r.get(12),
        file_count: r.get(13),
        sha256: r.get(14),
        reason: r.get(15),
        created_at: r.get(16),
        started_at: r.get(17),
        ended_at: r.get(18),
        paused_ms: r.get(19),
        snapshot: r.get(20),
    }
}

/// Records a new pending backup, or names the deployment's backup that is still active
/// (`Err(id)`): two backups of one deployment never run at once (a unique index says so).
pub fn create(
    c: &mut impl GenericClient,
    sgc_id: i64,
    server_id: i64,
    note: Option<&str>,
    pinned: bool,
    part_size: i64,
    finish_by: DateTime<Utc>,
) -> Result<Result<BackupRow, i64>, postgres::Error> {
    let created = c.query_opt(
        &format!(
            "WITH id AS (SELECT nextval('backups_backup_id_seq') AS id)
             INSERT INTO backups (backup_id, sgc_id, server_id, note, pinned, part_size,
                                  finish_by, s3_key, manifest_key)
             SELECT id, $1, $2, $3, $4, $5, $6,
                    format('backups/sgc-%s/backup-%s.tar.zst', $1::bigint, id),
                    format('backups/sgc-%s/backup-%s.manifest.json', $1::bigint, id)
               FROM id
             ON CONFLICT (sgc_id) WHERE status IN ('pending', 'running') DO NOTHING
             RETURNING {COLUMNS}"
        ),
        &[&sgc_id, &server_id, &note, &pinned, &part_size, &finish_by],
    )?;
    if let Some(row) = created {
        return Ok(Ok(backup(&row)));
    }
    let active = c.query_opt(
        "SELECT backup_id FROM backups WHERE sgc_id = $1 AND status IN ('pending', 'running')",
        &[&sgc_id],
    )?;
    // Gone in between: the caller may simply try again; report it as the conflict it was.
    Ok(Err(active.map(|r| r.get(0)).unwrap_or(0)))
}

pub fn get(
    c: &mut impl GenericClient,
    backup_id: i64,
) -> Result<Option<BackupRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!("SELECT {COLUMNS} FROM backups WHERE backup_id = $1"),
        &[&backup_id],
    )?
    .map(|r| backup(&r)))
}

/// Newest first; ids below `before` (0: from the newest).
pub fn list(
    c: &mut impl GenericClient,
    sgc_id: Option<i64>,
    before: i64,
    limit: i64,
) -> Result<Vec<BackupRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {COLUMNS} FROM backups
              WHERE ($1::bigint IS NULL OR sgc_id = $1) AND ($2::bigint = 0 OR backup_id < $2)
              ORDER BY backup_id DESC LIMIT $3"
        ),
        &[&sgc_id, &before, &limit],
    )?
    .iter()
    .map(backup)
    .collect())
}

/// The upload the API opened for it (kept so that a failed backup's upload is aborted).
pub fn set_upload(
    c: &mut impl GenericClient,
    backup_id: i64,
    upload_id: &str,
) -> Result<bool, postgres::Error> {
    Ok(c.execute(
        "UPDATE backups SET upload_id = $2 WHERE backup_id = $1 AND status = 'pending'",
        &[&backup_id, &upload_id],
    )? == 1)
}

/// The host accepted the command: `running`.
pub fn mark_running(c: &mut impl GenericClient, backup_id: i64) -> Result<bool, postgres::Error> {
    Ok(c.execute(
        "UPDATE backups SET status = 'running', started_at = now()
          WHERE backup_id = $1 AND status = 'pending'",
        &[&backup_id],
    )? == 1)
}

/// The host's progress; false if the backup is no longer running (the host should stop).
pub fn progress(
    c: &mut impl GenericClient,
    backup_id: i64,
    done: i64,
    total: i64,
) -> Result<bool, postgres::Error> {
    Ok(c.execute(
        "UPDATE backups SET bytes_done = $2, bytes_total = $3
          WHERE backup_id = $1 AND status IN ('pending', 'running')",
        &[&backup_id, &done, &total],
    )? == 1)
}

/// What the host reported at the end.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub size_bytes: i64,
    pub file_count: i32,
    pub sha256: String,
    pub bytes_total: i64,
    pub paused_ms: i64,
    pub snapshot: bool,
}

/// Ends an active backup `completed` with the host's figures; `None` if it was no longer
/// active (failed meanwhile by its deadline, or a second report).
pub fn complete(
    c: &mut impl GenericClient,
    backup_id: i64,
    outcome: &Outcome,
) -> Result<Option<BackupRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "UPDATE backups SET status = 'completed', ended_at = now(), upload_id = NULL,
                    size_bytes = $2, file_count = $3, sha256 = $4, bytes_total = $5,
                    bytes_done = $5, paused_ms = $6, snapshot = $7
              WHERE backup_id = $1 AND status IN ('pending', 'running')
              RETURNING {COLUMNS}"
        ),
        &[
            &backup_id,
            &outcome.size_bytes,
            &outcome.file_count,
            &outcome.sha256,
            &outcome.bytes_total,
            &outcome.paused_ms,
            &outcome.snapshot,
        ],
    )?
    .map(|r| backup(&r)))
}

/// Ends an active backup `failed` with the reason; `None` if it was no longer active. The
/// returned row still names its upload (for the caller to abort).
pub fn fail(
    c: &mut impl GenericClient,
    backup_id: i64,
    reason: &str,
) -> Result<Option<BackupRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "WITH old AS (SELECT upload_id FROM backups WHERE backup_id = $1 FOR UPDATE)
             UPDATE backups b SET status = 'failed', ended_at = now(), reason = $2, upload_id = NULL
               FROM old
              WHERE b.backup_id = $1 AND b.status IN ('pending', 'running')
              RETURNING {}",
            qualified("b", "old")
        ),
        &[&backup_id, &reason],
    )?
    .map(|r| backup(&r)))
}

/// Fails every active backup past its deadline (the agent died, the host lost touch) and
/// returns them with their uploads, for the caller to abort.
pub fn fail_overdue(c: &mut impl GenericClient) -> Result<Vec<BackupRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "WITH old AS (SELECT backup_id, upload_id FROM backups
                           WHERE status IN ('pending', 'running') AND finish_by < now()
                           FOR UPDATE SKIP LOCKED)
             UPDATE backups b SET status = 'failed', ended_at = now(), upload_id = NULL,
                    reason = 'not finished by its deadline: the host agent stopped or lost touch'
               FROM old
              WHERE b.backup_id = old.backup_id
              RETURNING {}",
            qualified("b", "old")
        ),
        &[],
    )?
    .iter()
    .map(backup)
    .collect())
}

/// The columns with `upload_id` read from the row as it was before the update.
fn qualified(table: &str, old: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| {
            if c == "upload_id" {
                format!("{old}.upload_id")
            } else {
                format!("{table}.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn set_pinned(
    c: &mut impl GenericClient,
    backup_id: i64,
    pinned: bool,
) -> Result<Option<BackupRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!("UPDATE backups SET pinned = $2 WHERE backup_id = $1 RETURNING {COLUMNS}"),
        &[&backup_id, &pinned],
    )?
    .map(|r| backup(&r)))
}

/// Marks ended backups `pruned` or `deleted` (their objects are gone or going); one still
/// active is left alone.
pub fn mark_gone(
    c: &mut impl GenericClient,
    ids: &[i64],
    status: BackupStatus,
) -> Result<u64, postgres::Error> {
    c.execute(
        "UPDATE backups SET status = $2
          WHERE backup_id = ANY($1) AND status IN ('completed', 'failed')",
        &[&ids, &status.as_str()],
    )
}

/// A deployment's completed backups, newest first (what retention looks at).
pub fn completed_of(
    c: &mut impl GenericClient,
    sgc_id: i64,
) -> Result<Vec<BackupRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {COLUMNS} FROM backups WHERE sgc_id = $1 AND status = 'completed'
              ORDER BY backup_id DESC"
        ),
        &[&sgc_id],
    )?
    .iter()
    .map(backup)
    .collect())
}

/// When each deployment last completed a backup (unix seconds), for `/metrics`.
pub fn last_completed(c: &mut impl GenericClient) -> Result<Vec<(i64, i64)>, postgres::Error> {
    Ok(c.query(
        "SELECT sgc_id, floor(extract(epoch FROM max(ended_at)))::bigint FROM backups
          WHERE status IN ('completed') GROUP BY sgc_id ORDER BY sgc_id",
        &[],
    )?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreRow {
    pub restore_id: i64,
    pub backup_id: i64,
    pub sgc_id: i64,
    pub status: String,
    pub stopped_session_id: Option<i64>,
    pub started_session_id: Option<i64>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

const RESTORE_COLUMNS: &str = "restore_id, backup_id, sgc_id, status, stopped_session_id, \
     started_session_id, reason, created_at, ended_at";

fn restore(r: &Row) -> RestoreRow {
    RestoreRow {
        restore_id: r.get(0),
        backup_id: r.get(1),
        sgc_id: r.get(2),
        status: r.get(3),
        stopped_session_id: r.get(4),
        started_session_id: r.get(5),
        reason: r.get(6),
        created_at: r.get(7),
        ended_at: r.get(8),
    }
}

/// A new restore into `sgc_id` (`stopping` its live session first), or the id of the one
/// already under way there.
pub fn create_restore(
    c: &mut impl GenericClient,
    backup_id: i64,
    sgc_id: i64,
    stopped_session_id: Option<i64>,
    finish_by: DateTime<Utc>,
) -> Result<Result<RestoreRow, i64>, postgres::Error> {
    let created = c.query_opt(
        &format!(
            "INSERT INTO backup_restores (backup_id, sgc_id, stopped_session_id, finish_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (sgc_id) WHERE status IN ('stopping', 'restoring') DO NOTHING
             RETURNING {RESTORE_COLUMNS}"
        ),
        &[&backup_id, &sgc_id, &stopped_session_id, &finish_by],
    )?;
    if let Some(row) = created {
        return Ok(Ok(restore(&row)));
    }
    Ok(Err(active_restore(c, sgc_id)?.unwrap_or(0)))
}

pub fn get_restore(
    c: &mut impl GenericClient,
    restore_id: i64,
) -> Result<Option<RestoreRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!("SELECT {RESTORE_COLUMNS} FROM backup_restores WHERE restore_id = $1"),
        &[&restore_id],
    )?
    .map(|r| restore(&r)))
}

/// Moves an active restore on: to `restoring`, or to its end (`completed`/`failed`, with the
/// reason and the session started after it). `None` if it was no longer active.
pub fn advance_restore(
    c: &mut impl GenericClient,
    restore_id: i64,
    status: &str,
    reason: Option<&str>,
    started_session_id: Option<i64>,
) -> Result<Option<RestoreRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "UPDATE backup_restores
                SET status = $2, reason = coalesce($3, reason),
                    started_session_id = coalesce($4, started_session_id),
                    ended_at = CASE WHEN $2 IN ('completed', 'failed') THEN now() END
              WHERE restore_id = $1 AND status IN ('stopping', 'restoring')
              RETURNING {RESTORE_COLUMNS}"
        ),
        &[&restore_id, &status, &reason, &started_session_id],
    )?
    .map(|r| restore(&r)))
}

/// The session started again after a restore ended.
pub fn set_restarted(
    c: &mut impl GenericClient,
    restore_id: i64,
    session_id: i64,
) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE backup_restores SET started_session_id = $2 WHERE restore_id = $1",
        &[&restore_id, &session_id],
    )?;
    Ok(())
}

/// The restore under way into a deployment, if any (no session may start meanwhile).
pub fn active_restore(
    c: &mut impl GenericClient,
    sgc_id: i64,
) -> Result<Option<i64>, postgres::Error> {
    Ok(c.query_opt(
        "SELECT restore_id FROM backup_restores
              WHERE sgc_id = $1 AND status IN ('stopping', 'restoring')",
        &[&sgc_id],
    )?
    .map(|r| r.get(0)))
}

/// Fails every restore past its deadline.
pub fn fail_overdue_restores(c: &mut impl GenericClient) -> Result<u64, postgres::Error> {
    c.execute(
        "UPDATE backup_restores SET status = 'failed', ended_at = now(),
                reason = 'not finished by its deadline: the host agent stopped or lost touch'
          WHERE status IN ('stopping', 'restoring') AND finish_by < now()",
        &[],
    )
}
