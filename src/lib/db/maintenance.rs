//! Maintenance rows: a session's restart or stop waiting for its players, claimed a row at a
//! time (`FOR UPDATE SKIP LOCKED`) so that two API replicas never act on one twice.

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Row};

#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceRow {
    pub maintenance_id: i64,
    pub session_id: i64,
    pub action: String,
    pub status: String,
    pub deadline: DateTime<Utc>,
    pub warn_command: Option<String>,
    pub warn_at_seconds: Vec<i32>,
    pub warned_seconds: Vec<i32>,
    pub players_seen: Option<i32>,
    pub reason: Option<String>,
    pub new_session_id: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub acted_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "m.maintenance_id, m.session_id, m.action, m.status, m.deadline, \
     m.warn_command, m.warn_at_seconds, m.warned_seconds, m.players_seen, m.reason, \
     m.new_session_id, m.created_by, m.created_at, m.acted_at, m.ended_at";

fn maintenance(r: &Row) -> MaintenanceRow {
    MaintenanceRow {
        maintenance_id: r.get(0),
        session_id: r.get(1),
        action: r.get(2),
        status: r.get(3),
        deadline: r.get(4),
        warn_command: r.get(5),
        warn_at_seconds: r.get(6),
        warned_seconds: r.get(7),
        players_seen: r.get(8),
        reason: r.get(9),
        new_session_id: r.get(10),
        created_by: r.get(11),
        created_at: r.get(12),
        acted_at: r.get(13),
        ended_at: r.get(14),
    }
}

/// What a new maintenance asks for.
#[derive(Debug, Clone)]
pub struct NewMaintenance<'a> {
    pub session_id: i64,
    pub action: &'a str,
    pub deadline: DateTime<Utc>,
    pub warn_command: Option<&'a str>,
    pub warn_at_seconds: &'a [i32],
    pub created_by: &'a str,
}

/// Records a waiting maintenance, or names the session's one still active (`Err(id)`).
pub fn create(
    c: &mut impl GenericClient,
    new: &NewMaintenance,
) -> Result<Result<MaintenanceRow, i64>, postgres::Error> {
    let created = c.query_opt(
        &format!(
            "INSERT INTO maintenance AS m (session_id, action, deadline, warn_command,
                                           warn_at_seconds, created_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (session_id) WHERE status IN ('waiting', 'stopping') DO NOTHING
             RETURNING {COLUMNS}"
        ),
        &[
            &new.session_id,
            &new.action,
            &new.deadline,
            &new.warn_command,
            &new.warn_at_seconds,
            &new.created_by,
        ],
    )?;
    if let Some(row) = created {
        return Ok(Ok(maintenance(&row)));
    }
    let active = active_of(c, new.session_id)?;
    Ok(Err(active.map(|m| m.maintenance_id).unwrap_or(0)))
}

fn active_of(
    c: &mut impl GenericClient,
    session_id: i64,
) -> Result<Option<MaintenanceRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM maintenance m
              WHERE session_id = $1 AND status IN ('waiting', 'stopping')"
        ),
        &[&session_id],
    )?
    .map(|r| maintenance(&r)))
}

/// The session's newest maintenance, whatever its status.
pub fn latest_of(
    c: &mut impl GenericClient,
    session_id: i64,
) -> Result<Option<MaintenanceRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM maintenance m WHERE session_id = $1
              ORDER BY maintenance_id DESC LIMIT 1"
        ),
        &[&session_id],
    )?
    .map(|r| maintenance(&r)))
}

/// Cancels the session's active maintenance; `None` if it had none.
pub fn cancel(
    c: &mut impl GenericClient,
    session_id: i64,
    by: &str,
) -> Result<Option<MaintenanceRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "UPDATE maintenance m SET status = 'cancelled', ended_at = now(),
                    reason = 'cancelled by ' || $2
              WHERE session_id = $1 AND status IN ('waiting', 'stopping')
              RETURNING {COLUMNS}"
        ),
        &[&session_id, &by],
    )?
    .map(|r| maintenance(&r)))
}

/// An active maintenance with what its tick needs: the session's status and deployment, and
/// its last player count (None: unknown).
#[derive(Debug, Clone)]
pub struct Due {
    pub row: MaintenanceRow,
    pub session_status: String,
    pub sgc_id: i64,
    pub players_online: Option<i32>,
}

/// Locks up to `limit` active maintenances no other replica holds, until `c`'s transaction
/// ends.
pub fn claim_active(c: &mut impl GenericClient, limit: i64) -> Result<Vec<Due>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {COLUMNS}, s.status, s.sgc_id, smp.players_online
               FROM maintenance m
               JOIN sessions s ON s.session_id = m.session_id
               LEFT JOIN session_samples smp ON smp.session_id = m.session_id
              WHERE m.status IN ('waiting', 'stopping')
              ORDER BY m.maintenance_id
              LIMIT $1
                FOR UPDATE OF m SKIP LOCKED"
        ),
        &[&limit],
    )?
    .iter()
    .map(|r| Due {
        row: maintenance(r),
        session_status: r.get(15),
        sgc_id: r.get(16),
        players_online: r.get(17),
    })
    .collect())
}

/// Records warnings sent and the count seen.
pub fn note_tick(
    c: &mut impl GenericClient,
    maintenance_id: i64,
    warned_seconds: &[i32],
    players_seen: Option<i32>,
) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE maintenance SET warned_seconds = $2, players_seen = $3 WHERE maintenance_id = $1",
        &[&maintenance_id, &warned_seconds, &players_seen],
    )?;
    Ok(())
}

/// Moves a maintenance on: to `stopping` (acted, waiting for the session to end) or to an end
/// (`done`, `failed`, `cancelled`), with the reason and the session started after, if any.
pub fn advance(
    c: &mut impl GenericClient,
    maintenance_id: i64,
    status: &str,
    reason: &str,
    new_session_id: Option<i64>,
) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE maintenance
            SET status = $2, reason = $3, new_session_id = $4,
                acted_at = CASE WHEN acted_at IS NULL AND $2 IN ('stopping', 'done')
                                THEN now() ELSE acted_at END,
                ended_at = CASE WHEN $2 = 'stopping' THEN NULL ELSE now() END
          WHERE maintenance_id = $1",
        &[&maintenance_id, &status, &reason, &new_session_id],
    )?;
    Ok(())
}

pub fn get(
    c: &mut impl GenericClient,
    maintenance_id: i64,
) -> Result<Option<MaintenanceRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!("SELECT {COLUMNS} FROM maintenance m WHERE maintenance_id = $1"),
        &[&maintenance_id],
    )?
    .map(|r| maintenance(&r)))
}
