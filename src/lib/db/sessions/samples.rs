//! The latest resource sample of each session, from its host's heartbeats, and the history
//! kept beside it: one point per session per bucket (a minute), pruned after some days.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// A session's latest sample as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    pub sampled_at: DateTime<Utc>,
    pub cpu_percent: f32,
    pub rss_bytes: i64,
    pub threads: i32,
    pub open_files: i32,
    pub processes: i32,
    pub memory_peak_bytes: Option<i64>,
    pub io_read_bytes: Option<i64>,
    pub disk_bytes: Option<i64>,
    /// NULL: unknown.
    pub players_online: Option<i32>,
    pub players_max: Option<i32>,
    pub player_names: Vec<String>,
}

/// Replaces the latest sample of each session, for sessions of the reporting host only (a
/// host cannot write another host's numbers; unknown sessions are skipped), and adds it to the
/// session's history if its bucket (`bucket_seconds` wide) has no point yet: one statement.
pub fn store_samples(
    c: &mut crate::db::Tx<'_>,
    samples: &[(i64, crate::wire::SessionSample)],
    bucket_seconds: i32,
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
    let optional = |f: fn(&crate::wire::SessionSample) -> Option<u64>| -> Vec<Option<i64>> {
        samples
            .iter()
            .map(|s| f(&s.1).map(|v| v.min(i64::MAX as u64) as i64))
            .collect()
    };
    let peak = optional(|s| s.memory_peak_bytes);
    let io_read = optional(|s| s.io_read_bytes);
    let disk = optional(|s| s.disk_bytes);
    let small = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let online: Vec<Option<i32>> = samples
        .iter()
        .map(|s| s.1.players.as_ref().map(|p| small(p.online)))
        .collect();
    let max: Vec<Option<i32>> = samples
        .iter()
        .map(|s| s.1.players.as_ref().and_then(|p| p.max).map(small))
        .collect();
    // At most 100 names of at most 64 characters each: a host cannot bloat the row.
    let names: Vec<Option<serde_json::Value>> = samples
        .iter()
        .map(|s| {
            s.1.players.as_ref().map(|p| {
                serde_json::json!(p
                    .names
                    .iter()
                    .take(100)
                    .map(|n| n.chars().take(64).collect::<String>())
                    .collect::<Vec<_>>())
            })
        })
        .collect();
    c.execute(
        "WITH latest AS (
         INSERT INTO session_samples
              (session_id, sampled_at, cpu_percent, rss_bytes, threads, open_files, processes,
               memory_peak_bytes, io_read_bytes, disk_bytes, players_online, players_max,
              player_names)
         SELECT s.id, now(), s.cpu, s.rss, s.threads, s.files, s.processes, s.peak, s.io_read,
                s.disk, s.online, s.max, s.names
           FROM unnest($1::bigint[], $2::bigint[], $3::real[], $4::bigint[], $5::bigint[],
                       $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                       $11::integer[], $12::integer[], $13::jsonb[])
                AS s (host, id, cpu, rss, threads, files, processes, peak, io_read, disk,
                      online, max, names)
           JOIN sessions x ON x.session_id = s.id
           JOIN server_game_configs g ON g.sgc_id = x.sgc_id AND g.server_id = s.host
         ON CONFLICT (session_id) DO UPDATE SET
              sampled_at = excluded.sampled_at, cpu_percent = excluded.cpu_percent,
              rss_bytes = excluded.rss_bytes, threads = excluded.threads,
              open_files = excluded.open_files, processes = excluded.processes,
              memory_peak_bytes = excluded.memory_peak_bytes,
              io_read_bytes = excluded.io_read_bytes, disk_bytes = excluded.disk_bytes,
              players_online = excluded.players_online, players_max = excluded.players_max,
              player_names = excluded.player_names
         RETURNING session_id, sampled_at, cpu_percent, rss_bytes, players_online)
         INSERT INTO session_history (session_id, bucket, cpu_percent, rss_bytes, players_online)
         SELECT session_id,
                to_timestamp(floor(extract(epoch FROM sampled_at)::float8 / $14::float8) * $14::float8),
                cpu_percent, rss_bytes, players_online
           FROM latest
         ON CONFLICT (session_id, bucket) DO NOTHING",
        &[
            &hosts, &ids, &cpu, &rss, &threads, &files, &processes, &peak, &io_read, &disk,
            &online, &max, &names, &f64::from(bucket_seconds.max(1)),
        ],
    )?;
    Ok(())
}

/// One point of a session's (or a host's, summed over its sessions) history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    pub at: DateTime<Utc>,
    pub cpu_percent: f64,
    pub rss_bytes: i64,
    /// None: unknown (for a host: no session of it had a count).
    pub players_online: Option<i64>,
}

fn point(r: &postgres::Row) -> HistoryPoint {
    HistoryPoint {
        at: r.get(0),
        cpu_percent: r.get(1),
        rss_bytes: r.get(2),
        players_online: r.get(3),
    }
}

/// A session's points in `[since, until)`, oldest first, at most `limit`.
pub fn session_history(
    c: &mut impl postgres::GenericClient,
    session_id: i64,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<HistoryPoint>, postgres::Error> {
    Ok(c.query(
        "SELECT bucket, cpu_percent::float8, rss_bytes, players_online::bigint
           FROM session_history
          WHERE session_id = $1 AND bucket >= $2 AND bucket < $3
          ORDER BY bucket LIMIT $4",
        &[&session_id, &since, &until, &limit],
    )?
    .iter()
    .map(point)
    .collect())
}

/// A host's points: each bucket summed over the host's sessions.
pub fn server_history(
    c: &mut impl postgres::GenericClient,
    server_id: i64,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<HistoryPoint>, postgres::Error> {
    Ok(c.query(
        "SELECT h.bucket, sum(h.cpu_percent)::float8, sum(h.rss_bytes)::bigint,
                sum(h.players_online)::bigint
           FROM session_history h
           JOIN sessions s ON s.session_id = h.session_id
           JOIN server_game_configs g ON g.sgc_id = s.sgc_id
          WHERE g.server_id = $1 AND h.bucket >= $2 AND h.bucket < $3
          GROUP BY h.bucket ORDER BY h.bucket LIMIT $4",
        &[&server_id, &since, &until, &limit],
    )?
    .iter()
    .map(point)
    .collect())
}

/// Deletes the points older than `keep`; how many.
pub fn prune_history(
    c: &mut impl postgres::GenericClient,
    keep: std::time::Duration,
) -> Result<u64, postgres::Error> {
    let keep_seconds = keep.as_secs_f64();
    c.execute(
        "DELETE FROM session_history WHERE bucket < now() - make_interval(secs => $1)",
        &[&keep_seconds],
    )
}
