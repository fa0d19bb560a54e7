//! `GetHistoricalLogs`: archived lines of a session from S3, located through `log_references`.

use super::error::ApiError;
use crate::db::{log_references, DbPool};
use crate::logstore::{decode_object, ObjectStore};
use crate::proto::v1 as pb;

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;

pub fn historical_logs(
    pool: &DbPool,
    store: Option<&ObjectStore>,
    req: pb::GetHistoricalLogsRequest,
) -> Result<pb::GetHistoricalLogsResponse, ApiError> {
    if req.session_id <= 0 {
        return Err(ApiError::InvalidArgument(
            "session_id must be positive".into(),
        ));
    }
    if req.since_ms < 0 || req.until_ms < 0 || req.offset < 0 || req.limit < 0 {
        return Err(ApiError::InvalidArgument(
            "since_ms, until_ms, offset and limit must not be negative".into(),
        ));
    }
    if req.until_ms > 0 && req.until_ms <= req.since_ms {
        return Err(ApiError::InvalidArgument(
            "until_ms must be after since_ms".into(),
        ));
    }
    if req.limit > MAX_LIMIT {
        return Err(ApiError::InvalidArgument(format!(
            "limit must be at most {MAX_LIMIT}"
        )));
    }
    let limit = if req.limit == 0 {
        DEFAULT_LIMIT
    } else {
        req.limit
    } as usize;
    let store = store.ok_or_else(|| {
        ApiError::FailedPrecondition(
            "log archival is not configured on this API (S3_BUCKET)".into(),
        )
    })?;
    let mut conn = pool.get()?;
    if crate::db::sessions::get_view(&mut *conn, req.session_id)?.is_none() {
        return Err(ApiError::NotFound(format!(
            "no session with id {}",
            req.session_id
        )));
    }
    let since = (req.since_ms > 0).then_some(req.since_ms);
    let until = (req.until_ms > 0).then_some(req.until_ms);
    let references = log_references::in_range(&mut *conn, req.session_id, since, until)?;
    drop(conn);

    let in_range = |ts: i64| since.is_none_or(|s| ts >= s) && until.is_none_or(|u| ts < u);
    let mut skip = req.offset as usize;
    let mut lines = Vec::new();
    let mut has_more = false;
    for reference in references {
        // Whole minutes inside the range can be skipped by their committed count.
        let whole = since.is_none_or(|s| reference.minute_ms >= s)
            && until.is_none_or(|u| reference.minute_ms + 60_000 <= u);
        if whole && skip >= reference.line_count as usize {
            skip -= reference.line_count as usize;
            continue;
        }
        if lines.len() == limit {
            has_more = true;
            break;
        }
        let bytes = store
            .get(&reference.file_path)
            .map_err(|e| ApiError::Unavailable(format!("log archive unavailable: {e}")))?
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "archived object {} is missing",
                    reference.file_path
                ))
            })?;
        let decoded = decode_object(&bytes)
            .map_err(|e| ApiError::Internal(format!("cannot read {}: {e}", reference.file_path)))?;
        // Only what the row committed: a half-finished append is not shown twice later.
        for line in decoded.into_iter().take(reference.line_count as usize) {
            if !in_range(line.timestamp) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if lines.len() == limit {
                has_more = true;
                break;
            }
            let sequence_number = req.offset + lines.len() as i64 + 1;
            lines.push(pb::LogMessage {
                session_id: req.session_id,
                timestamp: line.timestamp,
                source: line.source,
                message: line.message,
                sequence_number,
            });
        }
        if has_more {
            break;
        }
    }
    Ok(pb::GetHistoricalLogsResponse { lines, has_more })
}
