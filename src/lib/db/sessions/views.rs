//! Sessions as the API and CLI show them: one, or a filtered page, with the game's latest
//! sample.

use chrono::{DateTime, Utc};

use super::StoredSample;
use crate::wire::SessionStatus;

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

const VIEW: &str = "SELECT x.session_id, x.sgc_id, g.server_id, x.status, x.started_at, x.ended_at,
            x.exit_code, x.created_at, h.name, gm.name, gc.name, x.reason, x.restart_count,
            x.last_exit_code, x.last_exit_at, ss.sampled_at, ss.cpu_percent, ss.rss_bytes,
            ss.threads, ss.open_files, ss.processes, x.last_exit_reason, ss.memory_peak_bytes,
            ss.io_read_bytes, ss.disk_bytes, ss.players_online, ss.players_max, ss.player_names
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
                memory_peak_bytes: r.get(22),
                io_read_bytes: r.get(23),
                disk_bytes: r.get(24),
                players_online: r.get(25),
                players_max: r.get(26),
                player_names: r
                    .get::<_, Option<serde_json::Value>>(27)
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default(),
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
