//! The schedule runner, in every API replica: each tick fires the schedules that are due (a
//! `schedule_runs` row per firing, unique, so a firing never runs twice) and moves each running
//! run on by one step. A restart or stop step hands the session to maintenance (deadline now:
//! the usual stop, then for a restart a start) and waits for it; a backup step waits for its
//! backup. A firing missed by more than the grace (no replica was running) is recorded as
//! skipped, once; within it, it runs late, once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::steps_of;
use crate::api::error::ApiError;
use crate::api::ApiService;
use crate::db::maintenance::{self, NewMaintenance};
use crate::db::outbox::{self, OutboxEvent};
use crate::db::schedules::{self, DueRun, ScheduleRow};
use crate::db::sessions;
use crate::lifecycle::ShutdownSignal;
use crate::proto::v1 as pb;
use crate::wire::external::ScheduleFailed;
use crate::wire::schedule::{Step, StepAction, When};
use crate::wire::SessionStatus;

/// Schedules fired (or runs moved on) per transaction; a tick goes on batch after batch until
/// nothing is due.
const TICK_BATCH: i64 = 500;
/// How often each replica looks for due schedules: a firing starts within about this of its
/// minute.
pub const SCHEDULE_TICK: Duration = Duration::from_secs(1);
/// How often a step that waits (on a maintenance or a backup) looks again.
const POLL: TimeDelta = TimeDelta::seconds(2);

pub struct ScheduleRunner {
    pub service: ApiService,
    /// [`SCHEDULE_TICK`] (a benchmark may choose another).
    pub every: Duration,
    /// A firing later than this is skipped, not run (`SCHEDULE_GRACE_SECONDS`).
    pub grace: Duration,
}

impl ScheduleRunner {
    pub fn run(&self, shutdown: &ShutdownSignal) -> Result<(), String> {
        while !shutdown.wait(self.every) {
            // Batch after batch while batches come full: 10,000 firings of one minute do not
            // wait for 20 ticks.
            loop {
                match self.service.fire_due(self.grace) {
                    Ok(n) if n as i64 == TICK_BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        log::warn!("schedules not fired: {e}");
                        break;
                    }
                }
            }
            loop {
                match self.service.step_runs() {
                    Ok(n) if n as i64 == TICK_BATCH && !shutdown.is_triggered() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        log::warn!("schedule runs not moved on: {e}");
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What one step did: done (with what to record) or still waiting.
enum Outcome {
    Done {
        ok: bool,
        detail: String,
    },
    /// Waiting on a maintenance or a backup (its id), or for a wait step's time.
    Waiting {
        on: Option<i64>,
        until: DateTime<Utc>,
    },
}

impl ApiService {
    /// Fires every due schedule no other replica holds: one transaction.
    pub fn fire_due(&self, grace: Duration) -> Result<usize, ApiError> {
        let now = Utc::now();
        let mut db = self.db()?;
        let mut tx = db.transaction()?;
        let due = schedules::claim_due(&mut tx, now, TICK_BATCH)?;
        for s in &due {
            let Some(scheduled_for) = s.next_run_at else {
                continue;
            };
            let late = (now - scheduled_for).to_std().unwrap_or_default();
            let skipped = if late > grace {
                Some(format!(
                    "missed: no API was running at {scheduled_for} (more than {} s ago)",
                    grace.as_secs()
                ))
            } else if s.only_when_running && !self.deployment_running(&mut tx, s.sgc_id)? {
                Some("only when running: the deployment had no running session".to_string())
            } else {
                None
            };
            if let Some(run) =
                schedules::start_run(&mut tx, s.schedule_id, scheduled_for, skipped.as_deref())?
            {
                log::info!(schedule_id = s.schedule_id, run_id = run.run_id, status = run.status.as_str();
                    "schedule fired ({})", skipped.as_deref().unwrap_or("running"));
            }
            // The next firing after this one, or after now if several were missed.
            let next = When::parse(&s.cron, &s.timezone)
                .ok()
                .and_then(|w| w.next_after(scheduled_for.max(now - TimeDelta::seconds(1))));
            schedules::set_next_run(&mut tx, s.schedule_id, next)?;
        }
        tx.commit()?;
        Ok(due.len())
    }

    fn deployment_running(
        &self,
        c: &mut impl postgres::GenericClient,
        sgc_id: i64,
    ) -> Result<bool, ApiError> {
        for id in sessions::live_of_deployment(&mut *c, sgc_id)? {
            if let Some(v) = sessions::get_view(&mut *c, id)? {
                if v.status == SessionStatus::Running.as_str() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Moves every running run whose step is due by one step: one transaction.
    pub fn step_runs(&self) -> Result<usize, ApiError> {
        let now = Utc::now();
        let mut db = self.db()?;
        let mut tx = db.transaction()?;
        let due = schedules::claim_due_runs(&mut tx, now, TICK_BATCH)?;
        let claimed = due.len();
        for DueRun { mut run, schedule } in due {
            let steps = steps_of(&schedule);
            let Some(step) = steps.get(run.step as usize) else {
                run.status = "completed".into();
                run.next_step_at = None;
                schedules::save_run(&mut tx, &run)?;
                continue;
            };
            match self.do_step(&mut tx, &schedule, step, run.waiting_on) {
                Outcome::Waiting { on, until } => {
                    run.waiting_on = on;
                    run.next_step_at = Some(until);
                }
                Outcome::Done { ok, detail } => {
                    let entry = json!({"step": run.step + 1, "action": step.describe(),
                        "ok": ok, "detail": detail, "at": Utc::now()});
                    if let Some(results) = run.results.as_array_mut() {
                        results.push(entry);
                    }
                    run.waiting_on = None;
                    if ok || step.continue_on_failure {
                        run.step += 1;
                        run.next_step_at = Some(Utc::now());
                        if run.step as usize >= steps.len() {
                            run.status = "completed".into();
                            run.next_step_at = None;
                        }
                    } else {
                        run.status = "failed".into();
                        run.next_step_at = None;
                        let reason =
                            format!("step {} ({}): {detail}", run.step + 1, step.describe());
                        run.reason = Some(reason.clone());
                        outbox::enqueue_in(
                            &mut tx,
                            &[failed_event(
                                &schedule,
                                run.run_id,
                                run.scheduled_for,
                                &reason,
                            )],
                        )?;
                    }
                }
            }
            schedules::save_run(&mut tx, &run)?;
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// One step of a run: done, or waiting (on what, until when to look again).
    fn do_step(
        &self,
        tx: &mut postgres::Transaction,
        schedule: &ScheduleRow,
        step: &Step,
        waiting_on: Option<i64>,
    ) -> Outcome {
        let sgc_id = schedule.sgc_id;
        let failed = |e: ApiError| Outcome::Done {
            ok: false,
            detail: e.to_string(),
        };
        let live = match sessions::live_of_deployment(&mut *tx, sgc_id) {
            Ok(ids) => ids.into_iter().next(),
            Err(e) => return failed(e.into()),
        };
        match &step.action {
            // `waiting_on` 0 marks a wait begun; the visit after it is the wait's end.
            StepAction::Wait { seconds } => match waiting_on {
                Some(_) => Outcome::Done {
                    ok: true,
                    detail: format!("waited {seconds} s"),
                },
                None => Outcome::Waiting {
                    on: Some(0),
                    until: Utc::now() + TimeDelta::seconds(i64::from(*seconds)),
                },
            },
            StepAction::Command { command } => match live {
                None => Outcome::Done {
                    ok: false,
                    detail: "no live session to send it to".into(),
                },
                Some(session_id) => match self.send_input(pb::SendInputRequest {
                    session_id,
                    input: command.clone(),
                }) {
                    Ok(_) => Outcome::Done {
                        ok: true,
                        detail: format!("sent to session {session_id}"),
                    },
                    Err(e) => failed(e),
                },
            },
            StepAction::Start => match live {
                Some(id) => Outcome::Done {
                    ok: true,
                    detail: format!("session {id} is running already"),
                },
                None => match self.start_session(pb::StartSessionRequest {
                    sgc_id,
                    force: false,
                }) {
                    Ok(r) => Outcome::Done {
                        ok: true,
                        detail: format!(
                            "started session {}",
                            r.session.map(|s| s.session_id).unwrap_or(0)
                        ),
                    },
                    Err(e) => failed(e),
                },
            },
            StepAction::Restart | StepAction::Stop => {
                let restart = matches!(step.action, StepAction::Restart);
                if let Some(id) = waiting_on {
                    return match maintenance::get(&mut *tx, id) {
                        Ok(Some(m)) if m.status == "done" => Outcome::Done {
                            ok: true,
                            detail: m.reason.unwrap_or_default(),
                        },
                        Ok(Some(m)) if m.status == "failed" || m.status == "cancelled" => {
                            Outcome::Done {
                                ok: false,
                                detail: format!(
                                    "maintenance {id} {}: {}",
                                    m.status,
                                    m.reason.unwrap_or_default()
                                ),
                            }
                        }
                        Ok(_) => Outcome::Waiting {
                            on: Some(id),
                            until: Utc::now() + POLL,
                        },
                        Err(e) => failed(e.into()),
                    };
                }
                let Some(session_id) = live else {
                    if !restart {
                        return Outcome::Done {
                            ok: true,
                            detail: "no live session: nothing to stop".into(),
                        };
                    }
                    return match self.start_session(pb::StartSessionRequest {
                        sgc_id,
                        force: false,
                    }) {
                        Ok(r) => Outcome::Done {
                            ok: true,
                            detail: format!(
                                "no live session; started session {}",
                                r.session.map(|s| s.session_id).unwrap_or(0)
                            ),
                        },
                        Err(e) => failed(e),
                    };
                };
                // Maintenance: due now (the usual stop at its next tick, then the start), or
                // waiting for the players up to its deadline.
                if step.when_empty.is_some() {
                    if let Err(e) = self.check_counted(&mut *tx, sgc_id) {
                        return failed(e);
                    }
                }
                let (wait, warn, marks) = match &step.when_empty {
                    Some(w) => (
                        w.deadline_seconds,
                        w.warn_command.as_deref(),
                        &w.warn_at_seconds[..],
                    ),
                    None => (0, None, &[][..]),
                };
                let by = format!("schedule {}", schedule.schedule_id);
                let created = maintenance::create(
                    &mut *tx,
                    &NewMaintenance {
                        session_id,
                        action: if restart { "restart" } else { "stop" },
                        deadline: Utc::now() + TimeDelta::seconds(wait),
                        warn_command: warn,
                        warn_at_seconds: marks,
                        created_by: &by,
                    },
                );
                match created {
                    Ok(Ok(m)) => Outcome::Waiting {
                        on: Some(m.maintenance_id),
                        until: Utc::now() + POLL,
                    },
                    // An operator's maintenance of the session is pending: this step ends
                    // with it.
                    Ok(Err(pending)) => Outcome::Waiting {
                        on: Some(pending),
                        until: Utc::now() + POLL,
                    },
                    Err(e) => failed(e.into()),
                }
            }
            StepAction::Backup => {
                if let Some(id) = waiting_on {
                    return match crate::db::backups::get(&mut *tx, id) {
                        Ok(Some(b)) if b.status.as_str() == "completed" => Outcome::Done {
                            ok: true,
                            detail: format!("backup {id} completed"),
                        },
                        Ok(Some(b)) if b.status.as_str() == "failed" => Outcome::Done {
                            ok: false,
                            detail: format!("backup {id} failed: {}", b.reason.unwrap_or_default()),
                        },
                        Ok(_) => Outcome::Waiting {
                            on: Some(id),
                            until: Utc::now() + POLL,
                        },
                        Err(e) => failed(e.into()),
                    };
                }
                match self.create_backup(pb::CreateBackupRequest {
                    sgc_id,
                    note: format!("schedule {}", schedule.name),
                    pinned: false,
                }) {
                    Ok(r) => Outcome::Waiting {
                        on: r.backup.map(|b| b.backup_id),
                        until: Utc::now() + POLL,
                    },
                    Err(e) => failed(e),
                }
            }
        }
    }
}

fn failed_event(
    s: &ScheduleRow,
    run_id: i64,
    scheduled_for: DateTime<Utc>,
    reason: &str,
) -> OutboxEvent {
    OutboxEvent {
        routing_key: "manman.schedule.failed".into(),
        payload: serde_json::to_value(ScheduleFailed {
            schedule_id: s.schedule_id,
            run_id,
            sgc_id: s.sgc_id,
            name: s.name.clone(),
            reason: reason.into(),
            scheduled_for,
        })
        .expect("serialisable"),
    }
}
