//! `manman session stop|restart --when-empty` and `session cancel-maintenance`: maintenance
//! that waits for the players, kept and carried out by the API (so it survives the CLI).

use clap::Args;

use super::output::{printable, when};
use super::shared::{Ctx, Exit, Failure, Outcome};
use super::spans::{parse_span_list, parse_span_seconds};
use crate::proto::v1 as pb;
use crate::views::maintenance_json;

/// Warning marks when `--warn` comes without `--warn-at` (those within the deadline).
const DEFAULT_MARKS: [i32; 3] = [600, 300, 60];

/// `--when-empty` and its plan.
#[derive(Args, Debug, Clone)]
pub struct WhenEmptyArgs {
    /// Wait until nobody is playing (the config's player count says 0), or the deadline,
    /// then act. The API carries it out; `session show` tells how it goes.
    #[arg(long)]
    pub when_empty: bool,
    /// With --when-empty: act this long from now whatever the count (90s, 30m, 2h).
    #[arg(long, default_value = "30m", requires = "when_empty")]
    pub deadline: String,
    /// With --when-empty: a console line that warns the players, {minutes} (rounded up) and
    /// {seconds} filled in with the time left (e.g. 'say Restarting in {minutes} minutes').
    #[arg(long, requires = "when_empty")]
    pub warn: Option<String>,
    /// With --warn: when to warn, before the deadline [default: 10m,5m,1m within it].
    #[arg(long, requires = "warn")]
    pub warn_at: Option<String>,
}

impl WhenEmptyArgs {
    fn request(
        &self,
        session_id: i64,
        action: &str,
    ) -> Result<pb::ScheduleMaintenanceRequest, Failure> {
        let usage = |e: String| Failure::new(Exit::InvalidArgument, e);
        let wait = parse_span_seconds(&self.deadline).map_err(usage)?;
        let marks = match (&self.warn, &self.warn_at) {
            (_, Some(list)) => parse_span_list(list).map_err(usage)?,
            (Some(_), None) => DEFAULT_MARKS
                .into_iter()
                .filter(|m| i64::from(*m) <= wait)
                .collect(),
            (None, None) => Vec::new(),
        };
        Ok(pb::ScheduleMaintenanceRequest {
            session_id,
            action: action.into(),
            deadline_seconds: wait,
            warn_command: self.warn.clone().unwrap_or_default(),
            warn_at_seconds: marks,
        })
    }
}

pub fn schedule(ctx: &Ctx, session_id: i64, action: &str, args: &WhenEmptyArgs) -> Outcome {
    let req = args.request(session_id, action)?;
    let m = ctx
        .client
        .schedule_maintenance_opt(&req, ctx.opt())?
        .maintenance
        .unwrap_or_default();
    if ctx.json {
        println!("{}", maintenance_json(&m));
    } else {
        println!("session {session_id}: {}", describe(&m));
    }
    Ok(())
}

pub fn cancel(ctx: &Ctx, session_id: i64) -> Outcome {
    let m = ctx
        .client
        .cancel_maintenance_opt(&pb::CancelMaintenanceRequest { session_id }, ctx.opt())?
        .maintenance
        .unwrap_or_default();
    if ctx.json {
        println!("{}", maintenance_json(&m));
    } else {
        println!("session {session_id}: {} cancelled", m.action);
    }
    Ok(())
}

/// The session's newest maintenance, for `session show` (None: it never had one).
pub fn latest(ctx: &Ctx, session_id: i64) -> Result<Option<pb::Maintenance>, Failure> {
    Ok(ctx
        .client
        .get_maintenance_opt(&pb::GetMaintenanceRequest { session_id }, ctx.opt())?
        .maintenance)
}

/// One line: "restart pending: waiting for 3 players, deadline 2026-12-05 04:30:00 (warned
/// at 10m)", or how it ended.
pub fn describe(m: &pb::Maintenance) -> String {
    match m.status.as_str() {
        "waiting" => {
            let players = if m.players_known {
                format!(
                    "{} player{}",
                    m.players_seen,
                    if m.players_seen == 1 { "" } else { "s" }
                )
            } else {
                "the first player count".into()
            };
            let warned = if m.warned_seconds.is_empty() {
                String::new()
            } else {
                let marks: Vec<String> = m.warned_seconds.iter().map(|s| mark(*s)).collect();
                format!(" (warned at {})", marks.join(", "))
            };
            format!(
                "{} pending: waiting for {players}, deadline {}{warned}",
                m.action,
                when(m.deadline_ms)
            )
        }
        "stopping" => format!(
            "{} under way: {}; the session is stopping",
            m.action,
            printable(&m.reason)
        ),
        status => format!(
            "last maintenance ({}) {status}: {}",
            m.action,
            printable(&m.reason)
        ),
    }
}

fn mark(seconds: i32) -> String {
    if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}
