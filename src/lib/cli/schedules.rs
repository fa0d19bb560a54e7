//! `manman schedule create|list|show|pause|resume|delete|run-now`: a deployment's chores on a
//! cron expression, kept and run by the API.

use clap::Subcommand;
use serde_json::{json, Value};

use super::context::{Ctx, Exit, Failure, Outcome};
use super::output::{print, printable, table, when};
use super::spans::parse_span_seconds;
use crate::proto::v1 as pb;
use crate::views::{run_json, schedule_json};

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// Create a schedule: one --action, or several --step run in order (e.g. --step 'command:say
    /// Restarting in 10 minutes' --step wait:9m --step 'command:say 1 minute' --step wait:1m
    /// --step restart).
    Create {
        #[arg(long)]
        deployment: i64,
        /// Five fields: minute hour day-of-month month day-of-week ('0 4 * * *'), or @daily.
        #[arg(long)]
        cron: String,
        /// An IANA time zone (Europe/Berlin); its DST changes are followed.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// One step: restart, backup, command, stop or start.
        #[arg(long, conflicts_with = "step")]
        action: Option<String>,
        /// With --action command: the console line.
        #[arg(long, requires = "action")]
        command: Option<String>,
        /// KIND[:ARG]: command:LINE, wait:SPAN (90s, 9m), restart, stop, start, backup.
        #[arg(long)]
        step: Vec<String>,
        /// Step numbers (from 1) whose failure does not end the run: 1,3.
        #[arg(long, value_delimiter = ',')]
        continue_on_failure: Vec<usize>,
        /// Skip (and record) a firing when the deployment has no running session.
        #[arg(long)]
        only_when_running: bool,
        #[arg(long)]
        name: Option<String>,
    },
    /// List schedules (of one deployment with --deployment).
    List {
        #[arg(long)]
        deployment: Option<i64>,
    },
    /// One schedule, its steps and its newest runs with each step's result.
    Show {
        id: i64,
    },
    /// Stop firing until resumed.
    Pause {
        id: i64,
    },
    /// Fire again, from the next time the cron names (missed firings are not made up).
    Resume {
        id: i64,
    },
    Delete {
        id: i64,
    },
    /// Run it now, beside its cron.
    RunNow {
        id: i64,
    },
}

/// `KIND[:ARG]` as a step.
fn step(text: &str) -> Result<pb::ScheduleStep, Failure> {
    let bad = |m: String| Failure::new(Exit::InvalidArgument, m);
    let (kind, arg) = match text.split_once(':') {
        Some((k, a)) => (k.trim(), Some(a)),
        None => (text.trim(), None),
    };
    let mut s = pb::ScheduleStep {
        action: kind.into(),
        ..Default::default()
    };
    match (kind, arg) {
        ("command", Some(line)) => s.command = line.into(),
        ("wait", Some(span)) => {
            s.seconds = i32::try_from(parse_span_seconds(span).map_err(bad)?)
                .map_err(|_| bad(format!("step {text:?}: too long a wait")))?
        }
        ("restart" | "stop" | "start" | "backup", None) => {}
        _ => {
            return Err(bad(format!(
                "step {text:?}: command:LINE, wait:SPAN, restart, stop, start or backup"
            )))
        }
    }
    Ok(s)
}

fn steps_text(s: &pb::Schedule) -> String {
    s.steps
        .iter()
        .map(|st| match st.action.as_str() {
            "command" => format!("command {:?}", st.command),
            "wait" => format!("wait {} s", st.seconds),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

fn row(s: &pb::Schedule) -> Vec<String> {
    vec![
        s.schedule_id.to_string(),
        s.sgc_id.to_string(),
        s.name.clone(),
        format!("{} {}", s.cron, s.timezone),
        if s.paused {
            "paused".into()
        } else {
            when(s.next_run_at_ms)
        },
        steps_text(s),
    ]
}

const HEADERS: [&str; 6] = ["SCHEDULE", "DEPLOYMENT", "NAME", "CRON", "NEXT", "STEPS"];

fn show_one(ctx: &Ctx, s: &pb::Schedule) {
    if ctx.json {
        println!("{}", schedule_json(s));
    } else {
        print!("{}", table(&HEADERS, &[row(s)]));
    }
}

pub fn run(ctx: &Ctx, cmd: ScheduleCmd) -> Outcome {
    match cmd {
        ScheduleCmd::Create {
            deployment,
            cron,
            timezone,
            action,
            command,
            step: steps,
            continue_on_failure,
            only_when_running,
            name,
        } => {
            let mut steps: Vec<pb::ScheduleStep> = match action {
                Some(a) => vec![step(&match command {
                    Some(c) => format!("{a}:{c}"),
                    None => a,
                })?],
                None => steps.iter().map(|s| step(s)).collect::<Result<_, _>>()?,
            };
            if steps.is_empty() {
                return Err(Failure::new(
                    Exit::InvalidArgument,
                    "give --action or at least one --step",
                ));
            }
            for n in continue_on_failure {
                match steps.get_mut(n.wrapping_sub(1)) {
                    Some(s) => s.continue_on_failure = true,
                    None => {
                        return Err(Failure::new(
                            Exit::InvalidArgument,
                            format!("--continue-on-failure {n}: there is no step {n}"),
                        ))
                    }
                }
            }
            let r = ctx.client.create_schedule_opt(
                &pb::CreateScheduleRequest {
                    sgc_id: deployment,
                    name: name.unwrap_or_default(),
                    cron,
                    timezone,
                    steps,
                    only_when_running,
                },
                ctx.opt(),
            )?;
            show_one(ctx, &r.schedule.unwrap_or_default());
        }
        ScheduleCmd::List { deployment } => {
            let r = ctx.client.list_schedules_opt(
                &pb::ListSchedulesRequest {
                    sgc_id: deployment.unwrap_or(0),
                },
                ctx.opt(),
            )?;
            print(
                ctx,
                r.schedules.iter().map(schedule_json).collect(),
                &HEADERS,
                r.schedules.iter().map(row).collect(),
            );
        }
        ScheduleCmd::Show { id } => {
            let r = ctx
                .client
                .get_schedule_opt(&pb::GetScheduleRequest { schedule_id: id }, ctx.opt())?;
            let s = r.schedule.unwrap_or_default();
            if ctx.json {
                let mut shown = schedule_json(&s);
                shown["runs"] = r.runs.iter().map(run_json).collect::<Vec<_>>().into();
                println!("{shown}");
                return Ok(());
            }
            print!("{}", table(&HEADERS, &[row(&s)]));
            if r.runs.is_empty() {
                println!("\nno runs yet");
            }
            for run in &r.runs {
                println!(
                    "\nrun {} for {}: {}{}",
                    run.run_id,
                    when(run.scheduled_for_ms),
                    run.status,
                    if run.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", printable(&run.reason))
                    }
                );
                let results: Value = serde_json::from_str(&run.results_json).unwrap_or_default();
                for r in results.as_array().into_iter().flatten() {
                    println!(
                        "  {} step {} {}: {}",
                        if r["ok"] == true { "ok  " } else { "FAIL" },
                        r["step"],
                        r["action"].as_str().unwrap_or_default(),
                        printable(r["detail"].as_str().unwrap_or_default())
                    );
                }
            }
        }
        ScheduleCmd::Pause { id } | ScheduleCmd::Resume { id } => {
            let paused = matches!(cmd, ScheduleCmd::Pause { .. });
            let r = ctx.client.pause_schedule_opt(
                &pb::PauseScheduleRequest {
                    schedule_id: id,
                    paused,
                },
                ctx.opt(),
            )?;
            show_one(ctx, &r.schedule.unwrap_or_default());
        }
        ScheduleCmd::Delete { id } => {
            ctx.client
                .delete_schedule_opt(&pb::DeleteScheduleRequest { schedule_id: id }, ctx.opt())?;
            if ctx.json {
                println!("{}", json!({"deleted": id}));
            } else {
                println!("schedule {id} deleted");
            }
        }
        ScheduleCmd::RunNow { id } => {
            let r = ctx
                .client
                .run_schedule_now_opt(&pb::RunScheduleNowRequest { schedule_id: id }, ctx.opt())?;
            let run = r.run.unwrap_or_default();
            if ctx.json {
                println!("{}", run_json(&run));
            } else {
                println!("schedule {id}: run {} started", run.run_id);
            }
        }
    }
    Ok(())
}
