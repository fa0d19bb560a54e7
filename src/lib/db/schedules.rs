//! Schedules and their runs. Firing is claimed a schedule at a time (`FOR UPDATE SKIP LOCKED`)
//! and each firing is a row unique per schedule and time, so however many API replicas tend
//! them, a firing runs once; a run's steps are claimed the same way.

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Row};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub schedule_id: i64,
    pub sgc_id: i64,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub steps: Value,
    pub only_when_running: bool,
    pub paused: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "schedule_id, sgc_id, name, cron, timezone, steps, only_when_running, \
     paused, next_run_at, created_by, created_at";

fn schedule(r: &Row) -> ScheduleRow {
    schedule_at(r, 0)
}

/// A schedule whose columns start at `at` (after a run's, in [`claim_due_runs`]).
fn schedule_at(r: &Row, at: usize) -> ScheduleRow {
    ScheduleRow {
        schedule_id: r.get(at),
        sgc_id: r.get(at + 1),
        name: r.get(at + 2),
        cron: r.get(at + 3),
        timezone: r.get(at + 4),
        steps: r.get(at + 5),
        only_when_running: r.get(at + 6),
        paused: r.get(at + 7),
        next_run_at: r.get(at + 8),
        created_by: r.get(at + 9),
        created_at: r.get(at + 10),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run_id: i64,
    pub schedule_id: i64,
    pub scheduled_for: DateTime<Utc>,
    pub status: String,
    pub step: i32,
    pub next_step_at: Option<DateTime<Utc>>,
    pub waiting_on: Option<i64>,
    pub results: Value,
    pub reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "run_id, schedule_id, scheduled_for, status, step, next_step_at, \
     waiting_on, results, reason, started_at, ended_at";

fn run(r: &Row) -> RunRow {
    RunRow {
        run_id: r.get(0),
        schedule_id: r.get(1),
        scheduled_for: r.get(2),
        status: r.get(3),
        step: r.get(4),
        next_step_at: r.get(5),
        waiting_on: r.get(6),
        results: r.get(7),
        reason: r.get(8),
        started_at: r.get(9),
        ended_at: r.get(10),
    }
}

pub struct NewSchedule<'a> {
    pub sgc_id: i64,
    pub name: &'a str,
    pub cron: &'a str,
    pub timezone: &'a str,
    pub steps: &'a Value,
    pub only_when_running: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_by: &'a str,
}

pub fn create(
    c: &mut impl GenericClient,
    new: &NewSchedule,
) -> Result<ScheduleRow, postgres::Error> {
    let r = c.query_one(
        &format!(
            "INSERT INTO schedules (sgc_id, name, cron, timezone, steps, only_when_running,
                                    next_run_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        ),
        &[
            &new.sgc_id,
            &new.name,
            &new.cron,
            &new.timezone,
            new.steps,
            &new.only_when_running,
            &new.next_run_at,
            &new.created_by,
        ],
    )?;
    Ok(schedule(&r))
}

pub fn get(
    c: &mut impl GenericClient,
    schedule_id: i64,
) -> Result<Option<ScheduleRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!("SELECT {COLUMNS} FROM schedules WHERE schedule_id = $1"),
        &[&schedule_id],
    )?
    .map(|r| schedule(&r)))
}

/// Every schedule (of one deployment when `sgc_id` is set), by id.
pub fn list(
    c: &mut impl GenericClient,
    sgc_id: Option<i64>,
) -> Result<Vec<ScheduleRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {COLUMNS} FROM schedules WHERE $1::bigint IS NULL OR sgc_id = $1
              ORDER BY schedule_id"
        ),
        &[&sgc_id],
    )?
    .iter()
    .map(schedule)
    .collect())
}

/// Pauses (no next run) or resumes (from `next_run_at`).
pub fn set_paused(
    c: &mut impl GenericClient,
    schedule_id: i64,
    paused: bool,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<Option<ScheduleRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "UPDATE schedules SET paused = $2, next_run_at = $3 WHERE schedule_id = $1
             RETURNING {COLUMNS}"
        ),
        &[&schedule_id, &paused, &next_run_at],
    )?
    .map(|r| schedule(&r)))
}

pub fn delete(c: &mut impl GenericClient, schedule_id: i64) -> Result<bool, postgres::Error> {
    Ok(c.execute(
        "DELETE FROM schedules WHERE schedule_id = $1",
        &[&schedule_id],
    )? == 1)
}

/// Locks up to `limit` schedules due at `now` that no other replica holds.
pub fn claim_due(
    c: &mut impl GenericClient,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ScheduleRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {COLUMNS} FROM schedules
              WHERE NOT paused AND next_run_at <= $1
              ORDER BY next_run_at LIMIT $2
                FOR UPDATE SKIP LOCKED"
        ),
        &[&now, &limit],
    )?
    .iter()
    .map(schedule)
    .collect())
}

pub fn set_next_run(
    c: &mut impl GenericClient,
    schedule_id: i64,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE schedules SET next_run_at = $2 WHERE schedule_id = $1",
        &[&schedule_id, &next_run_at],
    )?;
    Ok(())
}

/// Records a firing: `running` from its first step now, or ended (`skipped`) with the reason.
/// `None` if this firing was recorded already (it never runs twice).
pub fn start_run(
    c: &mut impl GenericClient,
    schedule_id: i64,
    scheduled_for: DateTime<Utc>,
    skipped: Option<&str>,
) -> Result<Option<RunRow>, postgres::Error> {
    let status = if skipped.is_some() {
        "skipped"
    } else {
        "running"
    };
    Ok(c.query_opt(
        &format!(
            "INSERT INTO schedule_runs (schedule_id, scheduled_for, status, reason, next_step_at,
                                        ended_at)
             VALUES ($1, $2, $3, $4,
                     CASE WHEN $3 = 'running' THEN now() END,
                     CASE WHEN $3 = 'running' THEN NULL ELSE now() END)
             ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
             RETURNING {RUN_COLUMNS}"
        ),
        &[&schedule_id, &scheduled_for, &status, &skipped],
    )?
    .map(|r| run(&r)))
}

/// A running run whose next step is due, with its schedule.
pub struct DueRun {
    pub run: RunRow,
    pub schedule: ScheduleRow,
}

/// Locks up to `limit` runs whose next step is due that no other replica holds.
pub fn claim_due_runs(
    c: &mut impl GenericClient,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueRun>, postgres::Error> {
    let prefixed = |cols: &str, p: &str| {
        cols.split(", ")
            .map(|c| format!("{p}.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(c.query(
        &format!(
            "SELECT {}, {} FROM schedule_runs r JOIN schedules s USING (schedule_id)
              WHERE r.status = 'running' AND r.next_step_at <= $1
              ORDER BY r.next_step_at LIMIT $2
                FOR UPDATE OF r SKIP LOCKED",
            prefixed(RUN_COLUMNS, "r"),
            prefixed(COLUMNS, "s")
        ),
        &[&now, &limit],
    )?
    .iter()
    .map(|r| DueRun {
        run: run(r),
        schedule: schedule_at(r, RUN_COLUMNS.split(", ").count()),
    })
    .collect())
}

/// Saves where a run is: its next step and when, what it waits on, its results, and (when it
/// has ended) its status and reason.
pub fn save_run(c: &mut impl GenericClient, r: &RunRow) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE schedule_runs
            SET status = $2, step = $3, next_step_at = $4, waiting_on = $5, results = $6,
                reason = $7, ended_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END
          WHERE run_id = $1",
        &[
            &r.run_id,
            &r.status,
            &r.step,
            &r.next_step_at,
            &r.waiting_on,
            &r.results,
            &r.reason,
        ],
    )?;
    Ok(())
}

/// The newest run of each of `schedule_ids`.
pub fn latest_runs(
    c: &mut impl GenericClient,
    schedule_ids: &[i64],
) -> Result<Vec<RunRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT DISTINCT ON (schedule_id) {RUN_COLUMNS} FROM schedule_runs
              WHERE schedule_id = ANY($1) ORDER BY schedule_id, scheduled_for DESC"
        ),
        &[&schedule_ids],
    )?
    .iter()
    .map(run)
    .collect())
}

/// A schedule's newest runs, newest first.
pub fn runs_of(
    c: &mut impl GenericClient,
    schedule_id: i64,
    limit: i64,
) -> Result<Vec<RunRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule_id = $1
              ORDER BY scheduled_for DESC LIMIT $2"
        ),
        &[&schedule_id, &limit],
    )?
    .iter()
    .map(run)
    .collect())
}
