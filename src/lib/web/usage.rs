//! The dashboard's usage history: a session's or a host's points of the last hour or day,
//! drawn as charts by the page.

use grpcio::CallOption;
use serde_json::{json, Value};

use super::transport::{bad, Answer, Call};
use crate::proto::v1 as pb;

type Api = pb::ManManApiClient;

/// `?window=hour` (the default) or `day`: since when, in Unix milliseconds.
fn since_ms(call: &Call<'_>) -> Result<i64, super::transport::Failure> {
    let hours = match call.param("window").unwrap_or("hour") {
        "hour" => 1,
        "day" => 24,
        other => return Err(bad(format!("window must be hour or day, not {other:?}"))),
    };
    Ok(chrono::Utc::now().timestamp_millis() - hours * 3_600_000)
}

fn points(points: &[pb::HistoryPoint]) -> Answer {
    let items: Vec<Value> = points
        .iter()
        .map(|p| {
            json!({"at_ms": p.at_ms, "cpu_percent": p.cpu_percent, "rss_bytes": p.rss_bytes,
                "players_online": if p.players_known { json!(p.players_online) } else { Value::Null }})
        })
        .collect();
    Ok(json!({ "items": items }).into())
}

/// `GET /api/sessions/{id}/history?window=hour|day`.
pub(super) fn session(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.get_session_history_opt(
        &pb::GetSessionHistoryRequest {
            session_id: call.id(2)?,
            since_ms: since_ms(call)?,
            until_ms: 0,
        },
        opt(),
    )?;
    points(&r.points)
}

/// `GET /api/hosts/{id}/history?window=hour|day`: summed over the host's sessions.
pub(super) fn host(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.get_server_history_opt(
        &pb::GetServerHistoryRequest {
            server_id: call.id(2)?,
            since_ms: since_ms(call)?,
            until_ms: 0,
        },
        opt(),
    )?;
    points(&r.points)
}
