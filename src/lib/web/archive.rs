//! A session's archived console as a download (or JSON with `?format=json`), for the
//! session page's "Download log" link.

use grpcio::CallOption;
use serde_json::{json, Value};

use super::transport::{bad, Answer, Call, Failure, Reply};
use crate::proto::v1 as pb;
use crate::views::json_time;

/// Lines one download holds at most.
const MAX_LINES: i64 = 10_000;

/// `GET /api/sessions/{id}/archive?since=&until=` (unix ms).
pub(super) fn archive(
    api: &pb::ManManApiClient,
    call: &Call<'_>,
    opt: &dyn Fn() -> CallOption,
) -> Answer {
    let ms = |key: &str| -> Result<i64, Failure> {
        call.param(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("{key}: unix milliseconds")))
            })
            .unwrap_or(Ok(0))
    };
    let session_id = call.id(2)?;
    let r = api.get_historical_logs_opt(
        &pb::GetHistoricalLogsRequest {
            session_id,
            since_ms: ms("since")?,
            until_ms: ms("until")?,
            offset: 0,
            limit: MAX_LINES,
        },
        opt(),
    )?;
    if call.param("format") == Some("json") {
        let lines: Vec<Value> = r
            .lines
            .iter()
            .map(|l| json!({"timestamp": json_time(l.timestamp), "source": l.source, "message": l.message}))
            .collect();
        return Ok(json!({ "lines": lines }).into());
    }
    let mut text = String::new();
    for l in &r.lines {
        let at = json_time(l.timestamp);
        text.push_str(&format!(
            "{} {} {}\n",
            at.as_str().unwrap_or("-"),
            l.source,
            l.message
        ));
    }
    Ok(Reply::Download {
        filename: format!("session-{session_id}.log"),
        text,
    })
}
