//! Ending the sessions a lost host (stale, revoked, deleted) can no longer report on.

use crate::wire::SessionStatus;

/// Which live sessions [`end_lost`] may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostScope {
    /// Only a session still `pending` (its host never took the start command).
    PendingOnly,
    /// Any live session (an operator's forced stop).
    AnyLive,
}

/// Ends a live session as `lost` with `reason`, frees its ports and queues
/// `manman.session.lost`, in one statement. Returns whether it did (false if it had already
/// ended, or was not pending with [`LostScope::PendingOnly`]).
pub fn end_lost(
    c: &mut impl postgres::GenericClient,
    session_id: i64,
    scope: LostScope,
    reason: &str,
) -> Result<bool, postgres::Error> {
    let statuses: Vec<&str> = match scope {
        LostScope::PendingOnly => vec!["pending"],
        LostScope::AnyLive => SessionStatus::LIVE.iter().map(|s| s.as_str()).collect(),
    };
    let n: i64 = c
        .query_one(
            &format!(
                "WITH old AS (
                 SELECT session_id, status FROM sessions
                  WHERE session_id = $1 AND status = ANY($2) FOR UPDATE
             ), {LOST_TAIL}"
            ),
            &[&session_id, &statuses, &reason],
        )?
        .get(0);
    Ok(n > 0)
}

/// The common end of the statements that end sessions `lost`: end them, free their ports,
/// queue their `manman.session.lost` events, count them. Expects a CTE `old(session_id,
/// status)` of the sessions to end (locked) and the reason as `$3`.
const LOST_TAIL: &str = "upd AS (
                 UPDATE sessions s SET status = 'lost', ended_at = now(), updated_at = now(),
                        reason = coalesce(s.reason, $3::text)
                   FROM old WHERE s.session_id = old.session_id
              RETURNING s.session_id, s.sgc_id, s.ended_at, old.status AS previous
             ), freed AS (
                 DELETE FROM server_ports p USING upd WHERE p.session_id = upd.session_id
             ), queued AS (
                 INSERT INTO event_outbox (routing_key, payload)
                 SELECT 'manman.session.lost',
                        jsonb_build_object('session_id', u.session_id, 'sgc_id', u.sgc_id,
                                           'server_id', g.server_id, 'status', 'lost',
                                           'previous_status', u.previous, 'ended_at', u.ended_at,
                                           'reason', $3::text)
                   FROM upd u JOIN server_game_configs g ON g.sgc_id = u.sgc_id
                 RETURNING event_id
             )
             SELECT count(*) FROM upd";

/// Ends, as `lost`, every live session of every host that has been offline for longer than
/// `grace_secs` (one statement; ports freed, events queued). Returns how many.
pub fn end_sessions_of_lost_hosts(
    c: &mut impl postgres::GenericClient,
    grace_secs: f64,
    reason: &str,
) -> Result<i64, postgres::Error> {
    let live: Vec<&str> = SessionStatus::LIVE.iter().map(|s| s.as_str()).collect();
    Ok(c.query_one(
        &format!(
            "WITH old AS (
             SELECT x.session_id, x.status FROM sessions x
               JOIN server_game_configs g ON g.sgc_id = x.sgc_id
               JOIN servers h ON h.server_id = g.server_id
              WHERE h.status = 'offline'
                AND h.offline_since < now() - make_interval(secs => $1)
                AND x.status = ANY($2)
                FOR UPDATE OF x
         ), {LOST_TAIL}"
        ),
        &[&grace_secs, &live, &reason],
    )?
    .get(0))
}
