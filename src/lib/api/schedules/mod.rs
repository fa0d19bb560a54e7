//! Schedules: a deployment's chores on a cron expression in a time zone (`manman schedule …`).
//! The API stores them; every replica's runner (runner.rs) fires the due ones and runs their
//! steps, each claim a row lock no other replica can take, each firing a row of its own.

mod runner;

use chrono::Utc;

use super::convert::millis;
use super::error::ApiError;
use super::maintenance::caller_name;
use super::validate::positive_id;
use super::ApiService;
use crate::auth::Caller;
use crate::db::schedules::{self, NewSchedule, RunRow, ScheduleRow};
use crate::proto::v1 as pb;
use crate::wire::schedule::{kind, validate_steps, Step, StepAction, When, WhenEmpty};

pub use runner::{ScheduleRunner, SCHEDULE_TICK};

/// Runs `GetSchedule` shows.
const SHOWN_RUNS: i64 = 20;

fn step_of(s: &pb::ScheduleStep) -> Result<Step, ApiError> {
    let action = match s.action.as_str() {
        "command" => StepAction::Command {
            command: s.command.clone(),
        },
        "restart" => StepAction::Restart,
        "stop" => StepAction::Stop,
        "start" => StepAction::Start,
        "backup" => StepAction::Backup,
        "wait" => StepAction::Wait {
            seconds: u32::try_from(s.seconds).map_err(|_| {
                ApiError::InvalidArgument("a wait's seconds must be positive".into())
            })?,
        },
        other => {
            return Err(ApiError::InvalidArgument(format!(
                "unknown step action {other:?}: command, restart, stop, start, backup or wait"
            )))
        }
    };
    let when_empty = if s.when_empty {
        super::maintenance::policy::validate(
            s.deadline_seconds,
            &s.warn_command,
            &s.warn_at_seconds,
        )
        .map_err(ApiError::InvalidArgument)?;
        let warn = s.warn_command.trim();
        let mut marks = s.warn_at_seconds.clone();
        marks.sort_unstable_by(|a, b| b.cmp(a));
        marks.dedup();
        Some(WhenEmpty {
            deadline_seconds: s.deadline_seconds,
            warn_command: (!warn.is_empty()).then(|| warn.to_string()),
            warn_at_seconds: marks,
        })
    } else {
        None
    };
    Ok(Step {
        action,
        continue_on_failure: s.continue_on_failure,
        when_empty,
    })
}

fn step_pb(s: &Step) -> pb::ScheduleStep {
    let (command, seconds) = match &s.action {
        StepAction::Command { command } => (command.clone(), 0),
        StepAction::Wait { seconds } => (String::new(), *seconds as i32),
        _ => (String::new(), 0),
    };
    let w = s.when_empty.clone();
    pb::ScheduleStep {
        action: kind(&s.action).into(),
        command,
        seconds,
        continue_on_failure: s.continue_on_failure,
        when_empty: w.is_some(),
        deadline_seconds: w.as_ref().map(|w| w.deadline_seconds).unwrap_or(0),
        warn_command: w
            .as_ref()
            .and_then(|w| w.warn_command.clone())
            .unwrap_or_default(),
        warn_at_seconds: w.map(|w| w.warn_at_seconds).unwrap_or_default(),
    }
}

/// A stored schedule's steps (written by this API after validation).
pub(crate) fn steps_of(row: &ScheduleRow) -> Vec<Step> {
    serde_json::from_value(row.steps.clone()).unwrap_or_default()
}

pub fn schedule_pb(row: ScheduleRow) -> pb::Schedule {
    let steps = steps_of(&row).iter().map(step_pb).collect();
    pb::Schedule {
        schedule_id: row.schedule_id,
        sgc_id: row.sgc_id,
        name: row.name,
        cron: row.cron,
        timezone: row.timezone,
        steps,
        only_when_running: row.only_when_running,
        paused: row.paused,
        next_run_at_ms: millis(row.next_run_at),
        created_by: row.created_by,
        created_at_ms: row.created_at.timestamp_millis(),
        last_run: None,
    }
}

pub fn run_pb(r: RunRow) -> pb::ScheduleRun {
    pb::ScheduleRun {
        run_id: r.run_id,
        schedule_id: r.schedule_id,
        scheduled_for_ms: r.scheduled_for.timestamp_millis(),
        status: r.status,
        step: r.step,
        results_json: r.results.to_string(),
        reason: r.reason.unwrap_or_default(),
        started_at_ms: r.started_at.timestamp_millis(),
        ended_at_ms: millis(r.ended_at),
    }
}

impl ApiService {
    pub fn create_schedule(
        &self,
        req: pb::CreateScheduleRequest,
        caller: Option<Caller>,
    ) -> Result<pb::CreateScheduleResponse, ApiError> {
        let sgc_id = positive_id("sgc_id", req.sgc_id)?;
        let timezone = match req.timezone.trim() {
            "" => "UTC",
            tz => tz,
        };
        let when = When::parse(req.cron.trim(), timezone).map_err(ApiError::InvalidArgument)?;
        let steps = req
            .steps
            .iter()
            .map(step_of)
            .collect::<Result<Vec<_>, _>>()?;
        validate_steps(&steps).map_err(ApiError::InvalidArgument)?;
        let name = req.name.trim();
        if name.len() > 100 || name.chars().any(char::is_control) {
            return Err(ApiError::InvalidArgument(
                "a name is at most 100 characters on one line".into(),
            ));
        }
        let mut db = self.db()?;
        match crate::db::catalog::get_deployment(&mut *db, sgc_id)? {
            Some(d) if d.status != "retired" => {}
            _ => {
                return Err(ApiError::NotFound(format!(
                    "no deployment with id {sgc_id}"
                )))
            }
        }
        let steps_json = serde_json::to_value(&steps).expect("steps serialise");
        let row = schedules::create(
            &mut *db,
            &NewSchedule {
                sgc_id,
                name: if name.is_empty() {
                    req.cron.trim()
                } else {
                    name
                },
                cron: req.cron.trim(),
                timezone,
                steps: &steps_json,
                only_when_running: req.only_when_running,
                next_run_at: when.next_after(Utc::now()),
                created_by: &caller_name(caller),
            },
        )?;
        log::info!(schedule_id = row.schedule_id, sgc_id = sgc_id, cron = row.cron.as_str(),
            timezone = row.timezone.as_str(); "schedule created");
        Ok(pb::CreateScheduleResponse {
            schedule: Some(schedule_pb(row)),
        })
    }

    pub fn list_schedules(
        &self,
        req: pb::ListSchedulesRequest,
    ) -> Result<pb::ListSchedulesResponse, ApiError> {
        if req.sgc_id < 0 {
            return Err(ApiError::InvalidArgument(
                "sgc_id must not be negative".into(),
            ));
        }
        let mut db = self.db()?;
        let rows = schedules::list(&mut *db, (req.sgc_id > 0).then_some(req.sgc_id))?;
        let ids: Vec<i64> = rows.iter().map(|r| r.schedule_id).collect();
        let mut last = schedules::latest_runs(&mut *db, &ids)?;
        Ok(pb::ListSchedulesResponse {
            schedules: rows
                .into_iter()
                .map(|row| {
                    let id = row.schedule_id;
                    let mut s = schedule_pb(row);
                    s.last_run = last
                        .iter()
                        .position(|r| r.schedule_id == id)
                        .map(|i| run_pb(last.swap_remove(i)));
                    s
                })
                .collect(),
        })
    }

    fn schedule(&self, id: i64) -> Result<ScheduleRow, ApiError> {
        let id = positive_id("schedule_id", id)?;
        schedules::get(&mut *self.db()?, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no schedule with id {id}")))
    }

    pub fn get_schedule(
        &self,
        req: pb::GetScheduleRequest,
    ) -> Result<pb::GetScheduleResponse, ApiError> {
        let row = self.schedule(req.schedule_id)?;
        let runs = schedules::runs_of(&mut *self.db()?, row.schedule_id, SHOWN_RUNS)?;
        Ok(pb::GetScheduleResponse {
            schedule: Some(schedule_pb(row)),
            runs: runs.into_iter().map(run_pb).collect(),
        })
    }

    pub fn pause_schedule(
        &self,
        req: pb::PauseScheduleRequest,
    ) -> Result<pb::PauseScheduleResponse, ApiError> {
        let row = self.schedule(req.schedule_id)?;
        // Resumed: from now on, not the firings missed while paused.
        let next = if req.paused {
            None
        } else {
            When::parse(&row.cron, &row.timezone)
                .map_err(ApiError::Internal)?
                .next_after(Utc::now())
        };
        let row = schedules::set_paused(&mut *self.db()?, row.schedule_id, req.paused, next)?
            .ok_or_else(|| {
                ApiError::NotFound(format!("no schedule with id {}", req.schedule_id))
            })?;
        Ok(pb::PauseScheduleResponse {
            schedule: Some(schedule_pb(row)),
        })
    }

    pub fn delete_schedule(
        &self,
        req: pb::DeleteScheduleRequest,
    ) -> Result<pb::DeleteScheduleResponse, ApiError> {
        let id = positive_id("schedule_id", req.schedule_id)?;
        if !schedules::delete(&mut *self.db()?, id)? {
            return Err(ApiError::NotFound(format!("no schedule with id {id}")));
        }
        Ok(pb::DeleteScheduleResponse {})
    }

    /// A firing now, beside the cron's own (its steps start at the runner's next tick).
    pub fn run_schedule_now(
        &self,
        req: pb::RunScheduleNowRequest,
    ) -> Result<pb::RunScheduleNowResponse, ApiError> {
        let row = self.schedule(req.schedule_id)?;
        let now = Utc::now();
        let run = schedules::start_run(&mut *self.db()?, row.schedule_id, now, None)?.ok_or_else(
            || {
                ApiError::AlreadyExists(format!(
                    "schedule {} was just run; try again in a moment",
                    row.schedule_id
                ))
            },
        )?;
        Ok(pb::RunScheduleNowResponse {
            run: Some(run_pb(run)),
        })
    }
}
