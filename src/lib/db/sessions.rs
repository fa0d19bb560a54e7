//! Queries on `sessions`: locking a batch of sessions and applying their transitions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Tx;
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

/// Why a session could not be created.
#[derive(Debug, Clone, PartialEq)]
pub enum StartConflict {
    /// The deployment already has a live session.
    LiveSession(i64),
    /// Another live session on the host holds this port.
    PortTaken { port: i32, protocol: String },
}

/// Creates a `pending` session for a deployment and allocates its host ports, atomically: the
/// `server_ports` primary key guarantees two live sessions never share a port.
pub fn create_pending(
    c: &mut impl postgres::GenericClient,
    sgc_id: i64,
    server_id: i64,
    ports: &[crate::wire::commands::PortBinding],
) -> Result<Result<i64, StartConflict>, postgres::Error> {
    let mut tx = c.transaction()?;
    // Serialise starts of one deployment.
    tx.execute(
        "SELECT 1 FROM server_game_configs WHERE sgc_id = $1 FOR UPDATE",
        &[&sgc_id],
    )?;
    let live: Vec<&str> = SessionStatus::LIVE.iter().map(|s| s.as_str()).collect();
    if let Some(r) = tx.query_opt(
        "SELECT session_id FROM sessions WHERE sgc_id = $1 AND status = ANY($2) LIMIT 1",
        &[&sgc_id, &live],
    )? {
        return Ok(Err(StartConflict::LiveSession(r.get(0))));
    }
    let session_id: i64 = tx
        .query_one(
            "INSERT INTO sessions (sgc_id) VALUES ($1) RETURNING session_id",
            &[&sgc_id],
        )?
        .get(0);
    for p in ports {
        let inserted = tx.execute(
            "INSERT INTO server_ports (server_id, port, protocol, session_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&server_id, &p.host_port, &p.protocol, &session_id],
        )?;
        if inserted == 0 {
            return Ok(Err(StartConflict::PortTaken {
                port: p.host_port,
                protocol: p.protocol.clone(),
            }));
        }
    }
    tx.commit()?;
    Ok(Ok(session_id))
}

/// A session as the API and CLI show it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub session_id: i64,
    pub sgc_id: i64,
    pub server_id: i64,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub host: String,
    pub game: String,
    pub config: String,
    pub reason: Option<String>,
    pub restart_count: i32,
    pub last_exit_code: Option<i32>,
    pub last_exit_at: Option<DateTime<Utc>>,
    pub last_exit_reason: Option<String>,
    /// The latest heartbeat sample of its game, if any.
    pub sample: Option<StoredSample>,
}

/// A session's latest sample as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    pub sampled_at: DateTime<Utc>,
    pub cpu_percent: f32,
    pub rss_bytes: i64,
    pub threads: i32,
    pub open_files: i32,
    pub processes: i32,
}

const VIEW: &str = "SELECT x.session_id, x.sgc_id, g.server_id, x.status, x.started_at, x.ended_at,
            x.exit_code, x.created_at, h.name, gm.name, gc.name, x.reason, x.restart_count,
            x.last_exit_code, x.last_exit_at, ss.sampled_at, ss.cpu_percent, ss.rss_bytes,
            ss.threads, ss.open_files, ss.processes, x.last_exit_reason
       FROM sessions x
       LEFT JOIN session_samples ss ON ss.session_id = x.session_id
       JOIN server_game_configs g ON g.sgc_id = x.sgc_id
       JOIN servers h ON h.server_id = g.server_id
       JOIN game_configs gc ON gc.config_id = g.game_config_id
       JOIN games gm ON gm.game_id = gc.game_id";

fn view(r: &postgres::Row) -> SessionView {
    SessionView {
        session_id: r.get(0),
        sgc_id: r.get(1),
        server_id: r.get(2),
        status: r.get(3),
        started_at: r.get(4),
        ended_at: r.get(5),
        exit_code: r.get(6),
        created_at: r.get(7),
        host: r.get(8),
        game: r.get(9),
        config: r.get(10),
        reason: r.get(11),
        restart_count: r.get(12),
        last_exit_code: r.get(13),
        last_exit_at: r.get(14),
        last_exit_reason: r.get(21),
        sample: r
            .get::<_, Option<DateTime<Utc>>>(15)
            .map(|sampled_at| StoredSample {
                sampled_at,
                cpu_percent: r.get(16),
                rss_bytes: r.get(17),
                threads: r.get(18),
                open_files: r.get(19),
                processes: r.get(20),
            }),
    }
}

pub fn get_view(
    c: &mut impl postgres::GenericClient,
    session_id: i64,
) -> Result<Option<SessionView>, postgres::Error> {
    Ok(
        c.query_opt(&format!("{VIEW} WHERE x.session_id = $1"), &[&session_id])?
            .map(|r| view(&r)),
    )
}

/// Filters for listing sessions; zero / empty means "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub server_id: Option<i64>,
    pub sgc_id: Option<i64>,
    pub statuses: Vec<SessionStatus>,
    pub limit: i64,
    pub offset: i64,
    /// Only sessions with a smaller id (a keyset cursor; newest first); 0: none.
    pub before: i64,
}

pub fn list_views(
    c: &mut impl postgres::GenericClient,
    f: &ListFilter,
) -> Result<(Vec<SessionView>, i64), postgres::Error> {
    let statuses: Vec<&str> = if f.statuses.is_empty() {
        SessionStatus::ALL.iter().map(|s| s.as_str()).collect()
    } else {
        f.statuses.iter().map(|s| s.as_str()).collect()
    };
    let filter = "WHERE x.status = ANY($1) AND ($2::bigint IS NULL OR g.server_id = $2)
                    AND ($3::bigint IS NULL OR x.sgc_id = $3)";
    let before = if f.before > 0 { f.before } else { i64::MAX };
    let rows = c.query(
        &format!(
            "{VIEW} {filter} AND x.session_id < $6 ORDER BY x.session_id DESC LIMIT $4 OFFSET $5"
        ),
        &[
            &statuses,
            &f.server_id,
            &f.sgc_id,
            &f.limit,
            &f.offset,
            &before,
        ],
    )?;
    let total: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM sessions x JOIN server_game_configs g ON g.sgc_id = x.sgc_id {filter}"
            ),
            &[&statuses, &f.server_id, &f.sgc_id],
        )?
        .get(0);
    Ok((rows.iter().map(view).collect(), total))
}

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

/// The live sessions of a deployment (for a forced start).
pub fn live_of_deployment(
    c: &mut impl postgres::GenericClient,
    sgc_id: i64,
) -> Result<Vec<i64>, postgres::Error> {
    let live: Vec<&str> = SessionStatus::LIVE.iter().map(|s| s.as_str()).collect();
    Ok(c.query(
        "SELECT session_id FROM sessions WHERE sgc_id = $1 AND status = ANY($2)",
        &[&sgc_id, &live],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Replaces the latest sample of each session, for sessions of the reporting host only (a
/// host cannot write another host's numbers; unknown sessions are skipped).
pub fn store_samples(
    c: &mut crate::db::Tx<'_>,
    samples: &[(i64, crate::wire::SessionSample)],
) -> Result<(), postgres::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    // The newest sample of each session only: one batch may hold several heartbeats of a
    // host (a backlog after a processor restart), and an upsert may not touch a row twice.
    let mut newest: HashMap<i64, usize> = HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        newest.insert(s.1.session_id, i);
    }
    let mut keep: Vec<usize> = newest.into_values().collect();
    keep.sort_unstable();
    let samples: Vec<&(i64, crate::wire::SessionSample)> =
        keep.iter().map(|&i| &samples[i]).collect();
    let col = |f: fn(&(i64, crate::wire::SessionSample)) -> i64| -> Vec<i64> {
        samples.iter().map(|s| f(s)).collect()
    };
    let hosts = col(|s| s.0);
    let ids = col(|s| s.1.session_id);
    let rss = col(|s| s.1.rss_bytes.min(i64::MAX as u64) as i64);
    let threads = col(|s| i64::from(s.1.threads));
    let files = col(|s| i64::from(s.1.open_files));
    let processes = col(|s| i64::from(s.1.processes));
    let cpu: Vec<f32> = samples.iter().map(|s| s.1.cpu_percent as f32).collect();
    c.execute(
        "INSERT INTO session_samples
              (session_id, sampled_at, cpu_percent, rss_bytes, threads, open_files, processes)
         SELECT s.id, now(), s.cpu, s.rss, s.threads, s.files, s.processes
           FROM unnest($1::bigint[], $2::bigint[], $3::real[], $4::bigint[], $5::bigint[],
                       $6::bigint[], $7::bigint[])
                AS s (host, id, cpu, rss, threads, files, processes)
           JOIN sessions x ON x.session_id = s.id
           JOIN server_game_configs g ON g.sgc_id = x.sgc_id AND g.server_id = s.host
         ON CONFLICT (session_id) DO UPDATE SET
              sampled_at = excluded.sampled_at, cpu_percent = excluded.cpu_percent,
              rss_bytes = excluded.rss_bytes, threads = excluded.threads,
              open_files = excluded.open_files, processes = excluded.processes",
        &[&hosts, &ids, &cpu, &rss, &threads, &files, &processes],
    )?;
    Ok(())
}
