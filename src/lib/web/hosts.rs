//! The dashboard's overview (hosts, live sessions, counts by state) and host page.

use grpcio::CallOption;
use serde_json::{json, Value};

use super::transport::{Answer, Call};
use crate::proto::v1 as pb;
use crate::views::{host_json, session_json};

type Api = pb::ManManApiClient;

/// `GET /api/overview`.
pub(super) fn overview(api: &Api, _: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let hosts = api.list_servers_opt(&pb::ListServersRequest::default(), opt())?;
    let live = api.list_sessions_opt(
        &pb::ListSessionsRequest {
            live_only: true,
            limit: 500,
            ..Default::default()
        },
        opt(),
    )?;
    let mut counts = serde_json::Map::new();
    for s in &live.sessions {
        let n = counts.get(&s.status).and_then(Value::as_i64).unwrap_or(0);
        counts.insert(s.status.clone(), json!(n + 1));
    }
    Ok(json!({
        "hosts": hosts.servers.iter().map(host_json).collect::<Vec<_>>(),
        "sessions": live.sessions.iter().map(session_json).collect::<Vec<_>>(),
        "live_total": live.total,
        "counts": counts,
    })
    .into())
}

/// `GET /api/hosts/{id}`: the host and its latest 100 sessions.
pub(super) fn host(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let id = call.id(2)?;
    let host = api.get_server_opt(&pb::GetServerRequest { server_id: id }, opt())?;
    let sessions = api.list_sessions_opt(
        &pb::ListSessionsRequest {
            server_id: id,
            limit: 100,
            ..Default::default()
        },
        opt(),
    )?;
    Ok(json!({
        "host": host.server.as_ref().map(host_json),
        "sessions": sessions.sessions.iter().map(session_json).collect::<Vec<_>>(),
    })
    .into())
}
