//! `manman status`: hosts and live sessions at a glance.

use serde_json::json;

use super::hosts::{host_row, hosts, live_sessions, HOST_HEADERS};
use super::output::{table, when};
use super::shared::{Ctx, Outcome};
use crate::views::{host_json, session_json};

/// Hosts and live sessions at a glance.
pub fn status(ctx: &Ctx) -> Outcome {
    let servers = hosts(ctx)?;
    let live = live_sessions(ctx, 0)?;
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "hosts": servers.iter().map(host_json).collect::<Vec<_>>(),
                "live_sessions": live.sessions.iter().map(session_json).collect::<Vec<_>>(),
            }))
            .expect("serialisable")
        );
        return Ok(());
    }
    let online = servers.iter().filter(|h| h.status == "online").count();
    println!(
        "hosts: {} ({} online)   live sessions: {}",
        servers.len(),
        online,
        live.total
    );
    if !servers.is_empty() {
        let rows: Vec<Vec<String>> = servers.iter().map(host_row).collect();
        print!("\n{}", table(&HOST_HEADERS, &rows));
    }
    if !live.sessions.is_empty() {
        // What each live game is doing, from its host's latest heartbeat.
        let rows: Vec<Vec<String>> = live
            .sessions
            .iter()
            .map(|s| {
                let (cpu, memory) = match s.sampled_at_ms {
                    0 => ("-".into(), "-".into()),
                    _ => (
                        format!("{:.1}%", s.cpu_percent),
                        format!("{:.1} MiB", s.rss_bytes as f64 / (1024.0 * 1024.0)),
                    ),
                };
                vec![
                    s.session_id.to_string(),
                    s.status.clone(),
                    s.host.clone(),
                    format!("{}/{}", s.game, s.config),
                    when(s.started_at_ms),
                    s.restart_count.to_string(),
                    cpu,
                    memory,
                    match s.players_online {
                        None => "?".into(),
                        Some(n) => s.players_max.map_or(n.to_string(), |m| format!("{n}/{m}")),
                    },
                ]
            })
            .collect();
        let headers = [
            "SESSION",
            "STATUS",
            "HOST",
            "GAME/CONFIG",
            "STARTED",
            "RESTARTS",
            "CPU",
            "MEMORY",
            "PLAYERS",
        ];
        print!("\n{}", table(&headers, &rows));
    }
    Ok(())
}
