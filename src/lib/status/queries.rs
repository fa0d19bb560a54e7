//! The read model: SQL → JSON for each status endpoint. Every query is bounded (paging, a
//! partial index on live sessions, aggregates over hosts only) so it stays fast with 1,000 hosts
//! and 100,000 sessions.

use crate::db::CachedConnection;
use serde_json::{json, Value};

use crate::wire::SessionStatus;

/// The columns of a session row, joined with its host, game and config; a macro so every
/// statement built from it is a `&'static str` (prepared once per connection).
macro_rules! session_select {
    () => {
        "SELECT x.session_id, x.sgc_id, x.status, x.started_at, x.ended_at, x.exit_code, x.created_at,
           h.server_id, h.name, gm.name, gc.config_id, gc.name,
           coalesce((SELECT json_agg(json_build_object('port', p.port, 'protocol', p.protocol)
                                     ORDER BY p.port)
                       FROM server_ports p WHERE p.session_id = x.session_id), '[]'::json),
           x.reason, x.restart_count, x.last_exit_code, x.last_exit_at,
           (SELECT json_build_object('sampled_at', ss.sampled_at, 'cpu_percent', ss.cpu_percent,
                   'rss_bytes', ss.rss_bytes, 'threads', ss.threads, 'open_files', ss.open_files,
                   'processes', ss.processes, 'players_online', ss.players_online,
                   'players_max', ss.players_max)
              FROM session_samples ss WHERE ss.session_id = x.session_id)
      FROM sessions x
      JOIN server_game_configs g ON g.sgc_id = x.sgc_id
      JOIN servers h ON h.server_id = g.server_id
      JOIN game_configs gc ON gc.config_id = g.game_config_id
      JOIN games gm ON gm.game_id = gc.game_id "
    };
}

/// The live statuses as an SQL list, written out so that the planner can use the partial
/// index `sessions_live_sgc_idx` (its predicate is this list; a test keeps it equal to
/// [`SessionStatus::LIVE`]).
macro_rules! live_statuses_sql {
    () => {
        "('pending', 'starting', 'running', 'stopping')"
    };
}

/// `pending, starting, running, stopping` as an SQL array literal's elements.
fn live_statuses() -> Vec<&'static str> {
    SessionStatus::LIVE.iter().map(|s| s.as_str()).collect()
}

/// A keyset page: rows after the cursor `after` (an id; 0 = from the start), `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: i64,
    pub limit: i64,
}

/// Where the next page starts: the last id of a full page, else `null` (this was the last).
fn next_after(ids: impl Iterator<Item = i64>, count: usize, limit: i64) -> Value {
    match ids.last() {
        Some(last) if count as i64 == limit => json!(last),
        _ => Value::Null,
    }
}

/// A page of hosts in id order, each with its count of live sessions (counted for the page's
/// hosts only, through the live-sessions index).
pub fn workers(
    c: &mut CachedConnection,
    stale_secs: f64,
    page: Page,
) -> Result<Value, postgres::Error> {
    let rows = c.query(
        concat!(
            "SELECT s.server_id, s.name, s.status, s.last_seen,
                extract(epoch FROM now() - s.last_seen)::float8,
                (SELECT count(*) FROM server_game_configs g
                   JOIN sessions x ON x.sgc_id = g.sgc_id
                  WHERE g.server_id = s.server_id AND x.status IN ",
            live_statuses_sql!(),
            ")
           FROM servers s
          WHERE s.server_id > $1
          ORDER BY s.server_id LIMIT $2",
        ),
        &[&page.after, &page.limit],
    )?;
    let workers: Vec<Value> = rows.iter().map(|r| worker_json(r, stale_secs)).collect();
    let next = next_after(rows.iter().map(|r| r.get(0)), rows.len(), page.limit);
    Ok(json!({ "count": workers.len(), "workers": workers, "next_after": next }))
}

fn worker_json(r: &postgres::Row, stale_secs: f64) -> Value {
    let status: String = r.get(2);
    let since: Option<f64> = r.get(4);
    json!({
        "server_id": r.get::<_, i64>(0),
        "name": r.get::<_, String>(1),
        "status": status,
        "last_seen": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3),
        "seconds_since_heartbeat": since.map(|s| (s * 10.0).round() / 10.0),
        "is_healthy": status == "online" && since.is_some_and(|s| s <= stale_secs),
        "live_sessions": r.get::<_, i64>(5),
    })
}

/// One host with its live sessions and its 20 most recent ended ones; `None` if unknown.
pub fn worker(
    c: &mut CachedConnection,
    server_id: i64,
    stale_secs: f64,
) -> Result<Option<Value>, postgres::Error> {
    let Some(host) = c.query_opt(
        "SELECT s.server_id, s.name, s.status, s.last_seen,
                extract(epoch FROM now() - s.last_seen)::float8,
                (SELECT count(*) FROM sessions x JOIN server_game_configs g ON g.sgc_id = x.sgc_id
                  WHERE g.server_id = s.server_id AND x.status = ANY($2))
           FROM servers s WHERE s.server_id = $1",
        &[&server_id, &live_statuses()],
    )?
    else {
        return Ok(None);
    };
    let mut out = worker_json(&host, stale_secs);
    let rows = c.query(
        concat!(
            session_select!(),
            "WHERE g.server_id = $1
               AND (x.status = ANY($2) OR x.session_id IN (
                    SELECT y.session_id FROM sessions y JOIN server_game_configs z ON z.sgc_id = y.sgc_id
                     WHERE z.server_id = $1 AND NOT (y.status = ANY($2))
                     ORDER BY y.session_id DESC LIMIT 20))
             ORDER BY x.session_id DESC"
        ),
        &[&server_id, &live_statuses()],
    )?;
    out["sessions"] = Value::Array(rows.iter().map(session_json).collect());
    Ok(Some(out))
}

fn session_json(r: &postgres::Row) -> Value {
    json!({
        "session_id": r.get::<_, i64>(0),
        "sgc_id": r.get::<_, i64>(1),
        "status": r.get::<_, String>(2),
        "started_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3),
        "ended_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4),
        "exit_code": r.get::<_, Option<i32>>(5),
        "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(6),
        "server_id": r.get::<_, i64>(7),
        "host": r.get::<_, String>(8),
        "game": r.get::<_, String>(9),
        "config_id": r.get::<_, i64>(10),
        "config": r.get::<_, String>(11),
        "ports": r.get::<_, Value>(12),
        "reason": r.get::<_, Option<String>>(13),
        "restart_count": r.get::<_, i32>(14),
        "last_exit_code": r.get::<_, Option<i32>>(15),
        "last_exit_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(16),
        // The latest heartbeat sample of its game (null before the first).
        "sample": r.get::<_, Option<Value>>(17),
    })
}

/// Filters for `/status/servers`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFilter {
    pub statuses: Vec<SessionStatus>,
    /// A host id (all digits) or name.
    pub host: Option<String>,
    pub limit: i64,
    /// Skip this many (the old way to page; `after` is the fast one).
    pub offset: i64,
    /// Sessions are newest first: the page holds those with a smaller id than this (0: none).
    pub after: i64,
}

impl SessionFilter {
    /// The host as an id (all digits) or else a name.
    fn host_filter(&self) -> (Option<i64>, Option<&str>) {
        let id = self.host.as_deref().and_then(|h| h.parse().ok());
        (id, self.host.as_deref().filter(|_| id.is_none()))
    }

    /// What the total depends on (the cache key of a count).
    pub fn count_key(&self) -> String {
        format!("{:?}/{:?}", self.statuses, self.host)
    }
}

/// A page of sessions, newest first, without the total (see [`session_count`]): keyset on
/// the primary key with `after`, one plain statement per filter shape (a generic plan over
/// `$x IS NULL OR …` conditions cannot use the indexes, these can).
pub fn sessions(c: &mut CachedConnection, f: &SessionFilter) -> Result<Value, postgres::Error> {
    let statuses = status_names(f);
    let (host_id, host_name) = f.host_filter();
    let before = if f.after > 0 { f.after } else { i64::MAX };
    let rows = match (host_id, host_name) {
        (None, None) => c.query(
            concat!(
                session_select!(),
                "WHERE x.status = ANY($1) AND x.session_id < $2
                 ORDER BY x.session_id DESC LIMIT $3 OFFSET $4"
            ),
            &[&statuses, &before, &f.limit, &f.offset],
        )?,
        (Some(id), _) => c.query(
            concat!(
                session_select!(),
                "WHERE x.status = ANY($1) AND g.server_id = $2 AND x.session_id < $3
                 ORDER BY x.session_id DESC LIMIT $4 OFFSET $5"
            ),
            &[&statuses, &id, &before, &f.limit, &f.offset],
        )?,
        (None, Some(name)) => c.query(
            concat!(
                session_select!(),
                "WHERE x.status = ANY($1) AND h.name = $2 AND x.session_id < $3
                 ORDER BY x.session_id DESC LIMIT $4 OFFSET $5"
            ),
            &[&statuses, &name, &before, &f.limit, &f.offset],
        )?,
    };
    Ok(json!({
        "limit": f.limit,
        "offset": f.offset,
        "servers": rows.iter().map(session_json).collect::<Vec<_>>(),
        "next_after": next_after(rows.iter().map(|r| r.get(0)), rows.len(), f.limit),
    }))
}

fn status_names(f: &SessionFilter) -> Vec<&'static str> {
    let statuses = if f.statuses.is_empty() {
        &SessionStatus::ALL[..]
    } else {
        &f.statuses[..]
    };
    statuses.iter().map(|s| s.as_str()).collect()
}

/// How many sessions match `f` (all pages).
pub fn session_count(c: &mut CachedConnection, f: &SessionFilter) -> Result<i64, postgres::Error> {
    let statuses = status_names(f);
    let (host_id, host_name) = f.host_filter();
    let row = match (host_id, host_name) {
        (None, None) => c.query_one(
            "SELECT count(*) FROM sessions WHERE status = ANY($1)",
            &[&statuses],
        )?,
        (Some(id), _) => c.query_one(
            "SELECT count(*) FROM sessions x JOIN server_game_configs g ON g.sgc_id = x.sgc_id
              WHERE x.status = ANY($1) AND g.server_id = $2",
            &[&statuses, &id],
        )?,
        (None, Some(name)) => c.query_one(
            "SELECT count(*) FROM sessions x
               JOIN server_game_configs g ON g.sgc_id = x.sgc_id
               JOIN servers h ON h.server_id = g.server_id
              WHERE x.status = ANY($1) AND h.name = $2",
            &[&statuses, &name],
        )?,
    };
    Ok(row.get(0))
}

/// How far back a crashed or lost session makes the system `degraded`.
pub const RECENT_FAILURE_MINUTES: i32 = 15;

/// The overall summary. The rule for `overall`:
/// - `down`: no host is online with a heartbeat within the stale threshold (or no hosts);
/// - `degraded`: some host is online but silent past the threshold (stale), or a session
///   crashed or was lost in the last 15 minutes;
/// - `healthy`: otherwise.
pub fn system(c: &mut CachedConnection, stale_secs: f64) -> Result<Value, postgres::Error> {
    let hosts = c.query_one(
        "SELECT count(*) FILTER (WHERE status = 'online' AND last_seen >= now() - make_interval(secs => $1)),
                count(*) FILTER (WHERE status = 'online' AND (last_seen IS NULL OR last_seen < now() - make_interval(secs => $1))),
                count(*) FILTER (WHERE status = 'offline'),
                count(*),
                min(last_seen) FILTER (WHERE status = 'online')
           FROM servers",
        &[&stale_secs],
    )?;
    let (fresh, stale, offline, total): (i64, i64, i64, i64) =
        (hosts.get(0), hosts.get(1), hosts.get(2), hosts.get(3));
    let mut by_status = serde_json::Map::new();
    for s in SessionStatus::ALL {
        by_status.insert(s.as_str().into(), json!(0));
    }
    for r in c.query("SELECT status, count(*) FROM sessions GROUP BY status", &[])? {
        by_status.insert(r.get::<_, String>(0), json!(r.get::<_, i64>(1)));
    }
    let recent_failures: i64 = c
        .query_one(
            "SELECT count(*) FROM sessions WHERE status IN ('crashed', 'lost')
                AND ended_at >= now() - make_interval(mins => $1)",
            &[&RECENT_FAILURE_MINUTES],
        )?
        .get(0);
    let overall = if fresh == 0 {
        "down"
    } else if stale > 0 || recent_failures > 0 {
        "degraded"
    } else {
        "healthy"
    };
    Ok(json!({
        "overall": overall,
        "hosts": {"total": total, "online": fresh + stale, "offline": offline, "stale": stale},
        "sessions": by_status,
        "recent_failures": recent_failures,
        "oldest_heartbeat": hosts.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4),
        "stale_threshold_seconds": stale_secs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_out_live_statuses_are_the_live_ones() {
        let listed: Vec<String> = live_statuses_sql!()
            .trim_matches(['(', ')'])
            .split(", ")
            .map(|s| s.trim_matches('\'').to_string())
            .collect();
        assert_eq!(listed, live_statuses());
    }
}
