//! Queries on `sessions`: reading a session's state under lock and applying a transition.

use chrono::{DateTime, Utc};

use super::Tx;
use crate::wire::SessionStatus;

#[derive(Debug, Clone, PartialEq)]
pub struct LockedSession {
    pub status: SessionStatus,
    pub sgc_id: i64,
    pub server_id: i64,
}

/// Reads a session and locks its row until the transaction ends. `None` if it does not exist.
pub fn lock(tx: &mut Tx<'_>, session_id: i64) -> Result<Option<LockedSession>, postgres::Error> {
    let row = tx.query_opt(
        "SELECT s.status, s.sgc_id, g.server_id
           FROM sessions s JOIN server_game_configs g ON g.sgc_id = s.sgc_id
          WHERE s.session_id = $1
            FOR UPDATE OF s",
        &[&session_id],
    )?;
    Ok(row.map(|r| LockedSession {
        // The CHECK constraint keeps this column to the known statuses.
        status: r
            .get::<_, String>(0)
            .parse()
            .expect("sessions.status holds a known status"),
        sgc_id: r.get(1),
        server_id: r.get(2),
    }))
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppliedTransition {
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ports_freed: i64,
}

/// Moves a session to `to`: `running` sets `started_at`; a terminal state sets `ended_at` and
/// `exit_code` and frees the session's ports, all in one statement.
pub fn apply_transition(
    tx: &mut Tx<'_>,
    session_id: i64,
    to: SessionStatus,
    exit_code: Option<i32>,
) -> Result<AppliedTransition, postgres::Error> {
    let terminal = to.is_terminal();
    let row = tx.query_opt(
        "WITH upd AS (
             UPDATE sessions
                SET status = $2, updated_at = now(),
                    started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now())
                                      ELSE started_at END,
                    ended_at   = CASE WHEN $4 THEN now() ELSE ended_at END,
                    exit_code  = CASE WHEN $4 THEN $3 ELSE exit_code END
              WHERE session_id = $1
          RETURNING session_id, started_at, ended_at
         ), freed AS (
             DELETE FROM server_ports p USING upd
              WHERE p.session_id = upd.session_id AND $4
          RETURNING p.port
         )
         SELECT started_at, ended_at, (SELECT count(*) FROM freed) FROM upd",
        &[&session_id, &to.as_str(), &exit_code, &terminal],
    )?;
    let row = row.expect("session row is locked by this transaction");
    Ok(AppliedTransition {
        started_at: row.get(0),
        ended_at: row.get(1),
        ports_freed: row.get(2),
    })
}
