//! `manman session history` and `manman host history`: usage over time, one row a minute.

use clap::Args;
use serde_json::json;

use super::output::{json_list, table, when};
use super::shared::{Ctx, Exit, Failure, Outcome};
use super::spans::parse_span_ms;
use crate::proto::v1 as pb;
use crate::views::json_time;
use crate::wire::game_process::human_bytes;

/// The window shown.
#[derive(Args, Debug, Clone)]
pub struct WindowArgs {
    /// From this long ago (90s, 30m, 2h, 1d).
    #[arg(long, default_value = "1h")]
    pub since: String,
}

impl WindowArgs {
    fn since_ms(&self) -> Result<i64, Failure> {
        let ago = parse_span_ms(&self.since).map_err(|e| Failure::new(Exit::InvalidArgument, e))?;
        Ok((chrono::Utc::now().timestamp_millis() - ago).max(1))
    }
}

pub fn session_history(ctx: &Ctx, session_id: i64, window: &WindowArgs) -> Outcome {
    let r = ctx.client.get_session_history_opt(
        &pb::GetSessionHistoryRequest {
            session_id,
            since_ms: window.since_ms()?,
            until_ms: 0,
        },
        ctx.opt(),
    )?;
    print_points(ctx, &r.points);
    Ok(())
}

pub fn host_history(ctx: &Ctx, server_id: i64, window: &WindowArgs) -> Outcome {
    let r = ctx.client.get_server_history_opt(
        &pb::GetServerHistoryRequest {
            server_id,
            since_ms: window.since_ms()?,
            until_ms: 0,
        },
        ctx.opt(),
    )?;
    print_points(ctx, &r.points);
    Ok(())
}

fn print_points(ctx: &Ctx, points: &[pb::HistoryPoint]) {
    if ctx.json {
        let items = points
            .iter()
            .map(|p| {
                json!({"at": json_time(p.at_ms), "cpu_percent": p.cpu_percent,
                    "rss_bytes": p.rss_bytes,
                    "players_online": if p.players_known { json!(p.players_online) } else { json!(null) }})
            })
            .collect();
        println!("{}", json_list(items, points.len()));
        return;
    }
    if points.is_empty() {
        println!("no samples in this window");
        return;
    }
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            vec![
                when(p.at_ms),
                format!("{:.1}%", p.cpu_percent),
                human_bytes(p.rss_bytes.max(0) as u64),
                if p.players_known {
                    p.players_online.to_string()
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    print!("{}", table(&["TIME", "CPU", "MEMORY", "PLAYERS"], &rows));
}
