//! `manman schedule create|list|show|pause|resume|delete|run-now`: a deployment's chores on a
//! cron expression, kept and run by the API.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::output::{print, printable, table, when};
use super::shared::{Ctx, Exit, Failure, Outcome};
use super::spans::{parse_span_list, parse_span_seconds};
use crate::proto::v1 as pb;
use crate::views::{run_json, schedule_json};

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// Create a schedule: one --action, or several --step run in order (e.g. --step 'command:say
    /// Restarting in 10 minutes' --step wait:9m --step 'command:say 1 minute' --step wait:1m
    /// --step restart).
    Create(Box<CreateArgs>),
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

/// `manman schedule create`'s flags.
#[derive(Args)]
pub struct CreateArgs {
    /// Deployment id (see `manman deploy list`).
    #[arg(long)]
    pub deployment: i64,
    /// Five fields: minute hour day-of-month month day-of-week ('0 4 * * *'), or @daily.
    #[arg(long)]
    pub cron: String,
    /// An IANA time zone (Europe/Berlin); its DST changes are followed.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// One step: restart, backup, command, stop or start.
    #[arg(long, conflicts_with = "step")]
    pub action: Option<String>,
    /// With --action command: the console line.
    #[arg(long, requires = "action")]
    pub command: Option<String>,
    /// KIND[:ARG]: command:LINE, wait:SPAN (90s, 9m), restart, stop, start, backup, or
    /// restart-when-empty:DEADLINE / stop-when-empty:DEADLINE (wait for the players, as
    /// `session restart --when-empty`).
    #[arg(long)]
    pub step: Vec<String>,
    /// For the -when-empty steps: a console line warning the players ({minutes} left).
    #[arg(long)]
    pub warn: Option<String>,
    /// For the -when-empty steps: when to warn before the deadline (10m,5m,1m).
    #[arg(long, requires = "warn")]
    pub warn_at: Option<String>,
    /// Step numbers (from 1) whose failure does not end the run: 1,3.
    #[arg(long, value_delimiter = ',')]
    pub continue_on_failure: Vec<usize>,
    /// Skip (and record) a firing when the deployment has no running session.
    #[arg(long)]
    pub only_when_running: bool,
    #[arg(long)]
    pub name: Option<String>,
}

/// `KIND[:ARG]` as a step; `warn` goes with the -when-empty kinds.
fn step(text: &str, warn: &(String, Option<Vec<i32>>)) -> Result<pb::ScheduleStep, Failure> {
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
        ("restart-when-empty" | "stop-when-empty", Some(span)) => {
            s.action = kind.trim_end_matches("-when-empty").into();
            s.when_empty = true;
            s.deadline_seconds = parse_span_seconds(span).map_err(bad)?;
            s.warn_command = warn.0.clone();
            s.warn_at_seconds = match &warn.1 {
                Some(marks) => marks.clone(),
                // The default marks that fall within this step's deadline.
                None if !warn.0.is_empty() => [600, 300, 60]
                    .into_iter()
                    .filter(|m| i64::from(*m) <= s.deadline_seconds)
                    .collect(),
                None => Vec::new(),
            };
        }
        _ => {
            return Err(bad(format!(
                "step {text:?}: command:LINE, wait:SPAN, restart, stop, start, backup, \
                 restart-when-empty:DEADLINE or stop-when-empty:DEADLINE"
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
            other if st.when_empty => format!("{other} when empty (≤ {} s)", st.deadline_seconds),
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
        ScheduleCmd::Create(args) => {
            let CreateArgs {
                deployment,
                cron,
                timezone,
                action,
                command,
                step: steps,
                warn,
                warn_at,
                continue_on_failure,
                only_when_running,
                name,
            } = *args;
            let marks = match warn_at {
                Some(list) => Some(
                    parse_span_list(&list).map_err(|e| Failure::new(Exit::InvalidArgument, e))?,
                ),
                None => None,
            };
            let warn = (warn.unwrap_or_default(), marks);
            let mut steps: Vec<pb::ScheduleStep> = match action {
                Some(a) => vec![step(
                    &match command {
                        Some(c) => format!("{a}:{c}"),
                        None => a,
                    },
                    &warn,
                )?],
                None => steps
                    .iter()
                    .map(|s| step(s, &warn))
                    .collect::<Result<_, _>>()?,
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
