//! Usage history: a session's (or a host's) CPU, memory and players, one point a minute, for
//! the charts and `manman session history`.

use chrono::{DateTime, TimeDelta, Utc};

use super::error::ApiError;
use super::validate::positive_id;
use super::ApiService;
use crate::db::sessions::{self, HistoryPoint};
use crate::proto::v1 as pb;

/// A week of minutes: the most points one answer holds.
const MAX_POINTS: i64 = 10_080;

/// `[since, until)` from a request's milliseconds (0: an hour before until; 0: now).
fn window(since_ms: i64, until_ms: i64) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let at = |ms: i64, what: &str| {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| ApiError::InvalidArgument(format!("{what} is not a time")))
    };
    if since_ms < 0 || until_ms < 0 {
        return Err(ApiError::InvalidArgument(
            "since_ms and until_ms must not be negative".into(),
        ));
    }
    let until = match until_ms {
        0 => Utc::now(),
        ms => at(ms, "until_ms")?,
    };
    let since = match since_ms {
        0 => until - TimeDelta::hours(1),
        ms => at(ms, "since_ms")?,
    };
    if since >= until {
        return Err(ApiError::InvalidArgument(
            "since_ms must be before until_ms".into(),
        ));
    }
    Ok((since, until))
}

fn point_pb(p: HistoryPoint) -> pb::HistoryPoint {
    pb::HistoryPoint {
        at_ms: p.at.timestamp_millis(),
        cpu_percent: p.cpu_percent,
        rss_bytes: p.rss_bytes,
        players_online: p.players_online.unwrap_or(0),
        players_known: p.players_online.is_some(),
    }
}

impl ApiService {
    pub fn get_session_history(
        &self,
        req: pb::GetSessionHistoryRequest,
    ) -> Result<pb::GetSessionHistoryResponse, ApiError> {
        let (since, until) = window(req.since_ms, req.until_ms)?;
        let s = self.session(req.session_id)?;
        let points =
            sessions::session_history(&mut *self.db()?, s.session_id, since, until, MAX_POINTS)?;
        Ok(pb::GetSessionHistoryResponse {
            points: points.into_iter().map(point_pb).collect(),
        })
    }

    pub fn get_server_history(
        &self,
        req: pb::GetServerHistoryRequest,
    ) -> Result<pb::GetServerHistoryResponse, ApiError> {
        let server_id = positive_id("server_id", req.server_id)?;
        let (since, until) = window(req.since_ms, req.until_ms)?;
        let mut db = self.db()?;
        if crate::db::catalog::get_host(&mut *db, server_id)?.is_none() {
            return Err(ApiError::NotFound(format!("no server with id {server_id}")));
        }
        let points = sessions::server_history(&mut *db, server_id, since, until, MAX_POINTS)?;
        Ok(pb::GetServerHistoryResponse {
            points: points.into_iter().map(point_pb).collect(),
        })
    }
}
