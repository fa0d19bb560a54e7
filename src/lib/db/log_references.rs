//! `log_references`: one row per archived object (session, UTC minute), with its line count.
//! The object in S3 is the truth for its content; `line_count` is how much of it is committed.

use chrono::{DateTime, TimeZone, Utc};
use postgres::GenericClient;

/// A row as the archiver and the API read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReference {
    pub session_id: i64,
    /// Start of the minute, unix milliseconds.
    pub minute_ms: i64,
    pub file_path: String,
    pub line_count: i32,
    pub state: String,
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The row for a minute, created `pending` with no lines if it did not exist. Returns it and
/// whether this call created it.
pub fn claim_minute(
    c: &mut impl GenericClient,
    session_id: i64,
    minute_ms: i64,
    file_path: &str,
) -> Result<(LogReference, bool), postgres::Error> {
    let row = c.query_one(
        "INSERT INTO log_references (session_id, minute_timestamp, file_path)
              VALUES ($1, $2, $3)
         ON CONFLICT (session_id, minute_timestamp) DO UPDATE SET updated_at = now()
         RETURNING file_path, line_count, state, (xmax = 0) AS inserted",
        &[&session_id, &at(minute_ms), &file_path],
    )?;
    Ok((
        LogReference {
            session_id,
            minute_ms,
            file_path: row.get(0),
            line_count: row.get(1),
            state: row.get(2),
        },
        row.get(3),
    ))
}

/// Records that the minute's object now holds `line_count` lines.
pub fn mark_archived(
    c: &mut impl GenericClient,
    session_id: i64,
    minute_ms: i64,
    line_count: i32,
) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE log_references SET line_count = $3, state = 'archived', updated_at = now()
          WHERE session_id = $1 AND minute_timestamp = $2",
        &[&session_id, &at(minute_ms), &line_count],
    )?;
    Ok(())
}

/// Archived minutes of a session overlapping `[since_ms, until_ms)`, oldest first.
pub fn in_range(
    c: &mut impl GenericClient,
    session_id: i64,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<Vec<LogReference>, postgres::Error> {
    // A minute overlaps the range when it ends after `since` and starts before `until`.
    let since = since_ms.map(|s| at(s - 59_999));
    let until = until_ms.map(at);
    let rows = c.query(
        "SELECT minute_timestamp, file_path, line_count, state FROM log_references
          WHERE session_id = $1 AND state = 'archived' AND line_count > 0
            AND ($2::timestamptz IS NULL OR minute_timestamp >= $2)
            AND ($3::timestamptz IS NULL OR minute_timestamp < $3)
          ORDER BY minute_timestamp",
        &[&session_id, &since, &until],
    )?;
    Ok(rows
        .iter()
        .map(|r| LogReference {
            session_id,
            minute_ms: r.get::<_, DateTime<Utc>>(0).timestamp_millis(),
            file_path: r.get(1),
            line_count: r.get(2),
            state: r.get(3),
        })
        .collect())
}
