//! The dashboard's session routes: one session, stopping or killing it, a console line,
//! starting a deployment's session.

use grpcio::CallOption;
use serde_json::{json, Value};

use super::forms::console_line;
use super::transport::{Answer, Call};
use crate::proto::v1 as pb;
use crate::views::{maintenance_json, session_json};

type Api = pb::ManManApiClient;

fn session(s: Option<&pb::Session>) -> Answer {
    Ok(s.map(session_json).unwrap_or(Value::Null).into())
}

/// `GET /api/sessions/{id}`, with its newest maintenance (`--when-empty`) if it has one.
pub(super) fn show(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let session_id = call.id(2)?;
    let r = api.get_session_opt(&pb::GetSessionRequest { session_id }, opt())?;
    let m = api.get_maintenance_opt(&pb::GetMaintenanceRequest { session_id }, opt())?;
    let mut shown = r.session.as_ref().map(session_json).unwrap_or(Value::Null);
    if shown.is_object() {
        shown["maintenance"] = m
            .maintenance
            .as_ref()
            .map(maintenance_json)
            .unwrap_or(Value::Null);
    }
    Ok(shown.into())
}

/// `POST /api/sessions/{id}/stop` (console stop command first) or `…/kill`.
pub(super) fn stop(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.stop_session_opt(
        &pb::StopSessionRequest {
            session_id: call.id(2)?,
            kill: call.segments.get(3) == Some(&"kill"),
            force: false,
        },
        opt(),
    )?;
    session(r.session.as_ref())
}

/// `POST /api/sessions/{id}/input {"input"}`: one console line.
pub(super) fn input(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let input = console_line(&call.body)?;
    api.send_input_opt(
        &pb::SendInputRequest {
            session_id: call.id(2)?,
            input,
        },
        opt(),
    )?;
    Ok(json!({"sent": true}).into())
}

/// `POST /api/deployments/{id}/start`.
pub(super) fn start(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.start_session_opt(
        &pb::StartSessionRequest {
            sgc_id: call.id(2)?,
            force: false,
        },
        opt(),
    )?;
    session(r.session.as_ref())
}
