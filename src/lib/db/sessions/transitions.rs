//! The processor's write path: locking a batch of sessions and applying their transitions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::db::Tx;
use crate::wire::SessionStatus;

#[derive(Debug, Clone, PartialEq)]
pub struct LockedSession {
    pub status: SessionStatus,
    pub sgc_id: i64,
    pub server_id: i64,
    pub restart_count: i32,
}

/// Locks the given sessions (in id order) until the transaction ends. Sessions that do not
/// exist are absent from the map.
pub fn lock_many(
    tx: &mut Tx<'_>,
    ids: &[i64],
) -> Result<HashMap<i64, LockedSession>, postgres::Error> {
    let rows = tx.query(
        "SELECT s.session_id, s.status, s.sgc_id, g.server_id, s.restart_count
           FROM sessions s JOIN server_game_configs g ON g.sgc_id = s.sgc_id
          WHERE s.session_id = ANY($1)
          ORDER BY s.session_id
            FOR UPDATE OF s",
        &[&ids],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let session = LockedSession {
                // The CHECK constraint keeps this column to the known statuses.
                status: r
                    .get::<_, String>(1)
                    .parse()
                    .expect("sessions.status holds a known status"),
                sgc_id: r.get(2),
                server_id: r.get(3),
                restart_count: r.get(4),
            };
            (r.get(0), session)
        })
        .collect())
}

/// A session's net change within one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionChange {
    pub session_id: i64,
    /// The status it ends in.
    pub status: SessionStatus,
    /// It entered `running` (sets `started_at` if unset).
    pub started: bool,
    /// It entered a terminal state (sets `ended_at`, `exit_code`, frees its ports).
    pub ended: bool,
    pub exit_code: Option<i32>,
    /// Why it ended (kept if already set).
    pub reason: Option<String>,
    /// A crash-restart was reported.
    pub restarted: Option<Restart>,
}

/// A crash-restart as reported by the host: the new count, and the exit that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    pub count: i32,
    pub exit_code: Option<i32>,
    /// Why the run ended, in words ("exited with code 1", "failed its liveness probe…").
    pub reason: Option<String>,
}

impl SessionChange {
    /// No change yet: the session stays in `status`.
    pub fn unchanged(session_id: i64, status: SessionStatus) -> SessionChange {
        SessionChange {
            session_id,
            status,
            started: false,
            ended: false,
            exit_code: None,
            reason: None,
            restarted: None,
        }
    }
}

/// What the database recorded for a changed session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedChange {
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ports_freed: i64,
}

/// Applies every change in two statements: the session rows, then the freed ports.
pub fn apply_changes(
    tx: &mut Tx<'_>,
    changes: &[SessionChange],
) -> Result<HashMap<i64, AppliedChange>, postgres::Error> {
    if changes.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<i64> = changes.iter().map(|c| c.session_id).collect();
    let statuses: Vec<&str> = changes.iter().map(|c| c.status.as_str()).collect();
    let started: Vec<bool> = changes.iter().map(|c| c.started).collect();
    let ended: Vec<bool> = changes.iter().map(|c| c.ended).collect();
    let exit_codes: Vec<Option<i32>> = changes.iter().map(|c| c.exit_code).collect();
    let reasons: Vec<Option<&str>> = changes.iter().map(|c| c.reason.as_deref()).collect();
    let restarts: Vec<Option<i32>> = changes
        .iter()
        .map(|c| c.restarted.as_ref().map(|r| r.count))
        .collect();
    let restart_exits: Vec<Option<i32>> = changes
        .iter()
        .map(|c| c.restarted.as_ref().and_then(|r| r.exit_code))
        .collect();
    let restart_reasons: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.restarted.as_ref().and_then(|r| r.reason.as_deref()))
        .collect();
    let rows = tx.query(
        "UPDATE sessions s
            SET status = u.status, updated_at = now(),
                started_at = CASE WHEN u.started THEN coalesce(s.started_at, now()) ELSE s.started_at END,
                ended_at   = CASE WHEN u.ended THEN now() ELSE s.ended_at END,
                exit_code  = CASE WHEN u.ended THEN u.exit_code ELSE s.exit_code END,
                reason     = coalesce(s.reason, u.reason),
                restart_count  = coalesce(u.restarts, s.restart_count),
                last_exit_code = CASE WHEN u.restarts IS NOT NULL THEN u.restart_exit
                                      WHEN u.ended THEN u.exit_code ELSE s.last_exit_code END,
                last_exit_at   = CASE WHEN u.restarts IS NOT NULL OR u.ended THEN now()
                                      ELSE s.last_exit_at END,
                last_exit_reason = CASE WHEN u.restarts IS NOT NULL THEN u.restart_reason
                                        WHEN u.ended THEN u.reason ELSE s.last_exit_reason END
           FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::bool[], $5::int4[], $6::text[],
                       $7::int4[], $8::int4[], $9::text[])
                AS u(session_id, status, started, ended, exit_code, reason, restarts, restart_exit,
                     restart_reason)
          WHERE s.session_id = u.session_id AND s.session_id = ANY($1)
      RETURNING s.session_id, s.started_at, s.ended_at",
        &[
            &ids,
            &statuses,
            &started,
            &ended,
            &exit_codes,
            &reasons,
            &restarts,
            &restart_exits,
            &restart_reasons,
        ],
    )?;
    let mut applied: HashMap<i64, AppliedChange> = rows
        .into_iter()
        .map(|r| {
            let change = AppliedChange {
                started_at: r.get(1),
                ended_at: r.get(2),
                ports_freed: 0,
            };
            (r.get(0), change)
        })
        .collect();
    let ended_ids: Vec<i64> = changes
        .iter()
        .filter(|c| c.ended)
        .map(|c| c.session_id)
        .collect();
    if !ended_ids.is_empty() {
        let freed = tx.query(
            "WITH freed AS (DELETE FROM server_ports WHERE session_id = ANY($1) RETURNING session_id)
             SELECT session_id, count(*) FROM freed GROUP BY session_id",
            &[&ended_ids],
        )?;
        for r in freed {
            if let Some(a) = applied.get_mut(&r.get::<_, i64>(0)) {
                a.ports_freed = r.get(1);
            }
        }
    }
    Ok(applied)
}
