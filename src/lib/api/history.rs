//! Archived console lines of a session from S3, located through `log_references`: read one
//! archived minute at a time, so neither a page (`GetHistoricalLogs`, capped in lines and
//! bytes) nor a stream (`StreamHistoricalLogs`) ever holds more than one minute and one reply.

use std::collections::VecDeque;

use super::error::ApiError;
use crate::db::log_references::{self, LogReference};
use crate::db::DbPool;
use crate::logstore::{decode_object, ArchivedLine, ObjectStore};
use crate::proto::v1 as pb;

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
/// A page's text stays under this, well inside gRPC's 4 MiB message limit.
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// The archived lines of a range, oldest first, one minute at a time.
pub struct ArchivedLines<'a> {
    store: &'a ObjectStore,
    session_id: i64,
    since: Option<i64>,
    until: Option<i64>,
    minutes: VecDeque<LogReference>,
    /// Lines still to skip (the request's offset).
    skip: usize,
    /// Lines handed out so far (numbering: the line's position in the whole range).
    position: i64,
}

impl<'a> ArchivedLines<'a> {
    /// Checks the request and finds the archived minutes in its range.
    pub fn open(
        pool: &DbPool,
        store: Option<&'a ObjectStore>,
        req: &pb::GetHistoricalLogsRequest,
    ) -> Result<Self, ApiError> {
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
        let minutes = log_references::in_range(&mut *conn, req.session_id, since, until)?;
        Ok(ArchivedLines {
            store,
            session_id: req.session_id,
            since,
            until,
            minutes: minutes.into(),
            skip: req.offset as usize,
            position: req.offset,
        })
    }

    fn whole_minute_in_range(&self, r: &LogReference) -> bool {
        self.since.is_none_or(|s| r.minute_ms >= s)
            && self.until.is_none_or(|u| r.minute_ms + 60_000 <= u)
    }

    /// The next archived minute's lines in range (after the offset), numbered; `None` at the
    /// end. A minute may come back empty (all of it outside the range).
    pub fn next_minute(&mut self) -> Result<Option<Vec<pb::LogMessage>>, ApiError> {
        loop {
            let Some(reference) = self.minutes.pop_front() else {
                return Ok(None);
            };
            // Whole minutes inside the range are skipped by their committed count, unread.
            let count = reference.line_count.max(0) as usize;
            if self.whole_minute_in_range(&reference) && self.skip >= count {
                self.skip -= count;
                continue;
            }
            let lines = self.read(&reference)?;
            let (since, until) = (self.since, self.until);
            let in_range = |l: &ArchivedLine| {
                since.is_none_or(|s| l.timestamp >= s) && until.is_none_or(|u| l.timestamp < u)
            };
            let mut out = Vec::new();
            // Only what the row committed: a half-finished append is not shown twice later.
            for line in lines.into_iter().take(count).filter(in_range) {
                if self.skip > 0 {
                    self.skip -= 1;
                    continue;
                }
                self.position += 1;
                out.push(pb::LogMessage {
                    session_id: self.session_id,
                    timestamp: line.timestamp,
                    source: line.source,
                    message: line.message,
                    sequence_number: self.position,
                });
            }
            return Ok(Some(out));
        }
    }

    fn read(&self, reference: &LogReference) -> Result<Vec<ArchivedLine>, ApiError> {
        let bytes = self
            .store
            .get(&reference.file_path)
            .map_err(|e| {
                ApiError::Unavailable(format!(
                    "log archive unavailable: {}",
                    crate::errors::chain(&e)
                ))
            })?
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "archived object {} is missing",
                    reference.file_path
                ))
            })?;
        decode_object(&bytes)
            .map_err(|e| ApiError::Internal(format!("cannot read {}: {e}", reference.file_path)))
    }

    /// Whether any archived minute is left to read.
    fn exhausted(&self) -> bool {
        self.minutes.is_empty()
    }
}

/// The text a message carries, what a page's byte cap counts.
pub fn message_bytes(m: &pb::LogMessage) -> usize {
    m.message.len() + m.source.len() + 32
}

/// Whether a line of `size` bytes must start a new page (or stream message) after `count`
/// lines of `bytes`: at most `max_lines` lines and [`MAX_PAGE_BYTES`], and never an empty one
/// (a single longer line still goes out, alone).
fn page_full(count: usize, bytes: usize, size: usize, max_lines: usize) -> bool {
    count == max_lines || (count > 0 && bytes + size > MAX_PAGE_BYTES)
}

/// `GetHistoricalLogs`: one page of at most `limit` lines and [`MAX_PAGE_BYTES`]; the next
/// page starts at `offset + lines.len()`.
pub fn historical_logs(
    pool: &DbPool,
    store: Option<&ObjectStore>,
    req: pb::GetHistoricalLogsRequest,
) -> Result<pb::GetHistoricalLogsResponse, ApiError> {
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
    let mut archived = ArchivedLines::open(pool, store, &req)?;
    let mut lines = Vec::new();
    let mut bytes = 0;
    while let Some(minute) = archived.next_minute()? {
        for m in minute {
            let size = message_bytes(&m);
            if page_full(lines.len(), bytes, size, limit) {
                return Ok(pb::GetHistoricalLogsResponse {
                    lines,
                    has_more: true,
                });
            }
            bytes += size;
            lines.push(m);
        }
        if lines.len() == limit && !archived.exhausted() {
            // More minutes remain; whether they hold lines in range is for the next page.
            return Ok(pb::GetHistoricalLogsResponse {
                lines,
                has_more: true,
            });
        }
    }
    Ok(pb::GetHistoricalLogsResponse {
        lines,
        has_more: false,
    })
}

/// Lines per message of a history stream (and at most [`MAX_PAGE_BYTES`] of text).
const STREAM_CHUNK: usize = 1000;

/// `StreamHistoricalLogs`: every line of the range after `offset` (at most `limit`, 0 = all),
/// sent as each archived minute is read; ends early if the client goes away.
pub(crate) fn stream(
    inner: &super::service::Inner,
    req: pb::GetHistoricalLogsRequest,
    mut sink: grpcio::ServerStreamingSink<pb::LogBatch>,
    still_allowed: &dyn Fn() -> bool,
) {
    use futures::SinkExt;
    let result = (|| -> Result<(), ApiError> {
        let mut archived = ArchivedLines::open(&inner.pool, inner.archive.as_ref(), &req)?;
        let mut left = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        let mut checked = std::time::Instant::now();
        while let Some(mut minute) = archived.next_minute()? {
            // A revoked or expired token ends the stream within 10 s.
            if checked.elapsed() >= crate::auth::STREAM_RECHECK {
                checked = std::time::Instant::now();
                if !still_allowed() {
                    return Err(ApiError::Unauthenticated(
                        "the token was revoked or expired during the stream".into(),
                    ));
                }
            }
            minute.truncate(left);
            left -= minute.len();
            let mut chunk = Vec::new();
            let mut bytes = 0;
            for m in minute {
                let size = message_bytes(&m);
                if page_full(chunk.len(), bytes, size, STREAM_CHUNK) {
                    let lines = std::mem::take(&mut chunk);
                    if crate::grpc::send_batch(&mut sink, vec![pb::LogBatch { lines }]).is_err() {
                        return Ok(()); // the client went away
                    }
                    bytes = 0;
                }
                bytes += size;
                chunk.push(m);
            }
            if !chunk.is_empty()
                && crate::grpc::send_batch(&mut sink, vec![pb::LogBatch { lines: chunk }]).is_err()
            {
                return Ok(());
            }
            if left == 0 {
                break;
            }
        }
        Ok(())
    })();
    let finish = match result {
        Ok(()) => futures::executor::block_on(sink.close()),
        Err(e) => {
            if matches!(e, ApiError::Internal(_) | ApiError::Unavailable(_)) {
                log::warn!("history stream failed: {e}");
            }
            futures::executor::block_on(sink.fail(e.status()))
        }
    };
    if let Err(e) = finish {
        log::debug!("history stream not finished cleanly: {e}");
    }
}
