//! The dashboard's schedule routes: a deployment's schedules with their newest run, creating
//! one (a single action), running one now, pausing and resuming.

use grpcio::CallOption;
use serde_json::{json, Value};

use super::transport::{bad, Answer, Call};
use crate::proto::v1 as pb;
use crate::views::{run_json, schedule_json};

type Api = pb::ManManApiClient;

/// `GET /api/deployments/{id}/schedules`: each with its newest run (`last_run`).
pub(super) fn list(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.list_schedules_opt(
        &pb::ListSchedulesRequest {
            sgc_id: call.id(2)?,
        },
        opt(),
    )?;
    let items: Vec<Value> = r.schedules.iter().map(schedule_json).collect();
    Ok(json!({ "items": items }).into())
}

/// `POST /api/deployments/{id}/schedules {"cron", "timezone"?, "action", "command"?}`.
pub(super) fn create(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let action = call.text("action");
    if action.is_empty() {
        return Err(bad("action: restart, backup, command, stop or start"));
    }
    let r = api.create_schedule_opt(
        &pb::CreateScheduleRequest {
            sgc_id: call.id(2)?,
            name: call.text("name"),
            cron: call.text("cron"),
            timezone: call.text("timezone"),
            steps: vec![pb::ScheduleStep {
                action,
                command: call.text("command"),
                ..Default::default()
            }],
            only_when_running: call.body["only_when_running"] == true,
        },
        opt(),
    )?;
    Ok(r.schedule
        .as_ref()
        .map(schedule_json)
        .unwrap_or(Value::Null)
        .into())
}

/// `POST /api/schedules/{id}/run`.
pub(super) fn run_now(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.run_schedule_now_opt(
        &pb::RunScheduleNowRequest {
            schedule_id: call.id(2)?,
        },
        opt(),
    )?;
    Ok(r.run.as_ref().map(run_json).unwrap_or(Value::Null).into())
}

/// `POST /api/schedules/{id}/pause` or `…/resume`.
pub(super) fn pause(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.pause_schedule_opt(
        &pb::PauseScheduleRequest {
            schedule_id: call.id(2)?,
            paused: call.segments.get(3) == Some(&"pause"),
        },
        opt(),
    )?;
    Ok(r.schedule
        .as_ref()
        .map(schedule_json)
        .unwrap_or(Value::Null)
        .into())
}
