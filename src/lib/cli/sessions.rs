//! `manman session start|stop|restart|input|list|show`: running a deployment's game.

use std::time::Duration;

use serde_json::json;

use super::output::{print_page, printable, table, when};
use super::shared::{Ctx, Exit, Failure, Outcome};
use crate::proto::v1 as pb;
use crate::views::session_json;
use crate::wire::game_process::human_bytes;

pub(super) const SESSION_HEADERS: [&str; 8] = [
    "SESSION",
    "STATUS",
    "HOST",
    "GAME/CONFIG",
    "DEPLOYMENT",
    "STARTED",
    "ENDED",
    "EXIT",
];

pub(super) fn session_row(s: &pb::Session) -> Vec<String> {
    vec![
        s.session_id.to_string(),
        s.status.clone(),
        s.host.clone(),
        format!("{}/{}", s.game, s.config),
        s.sgc_id.to_string(),
        when(s.started_at_ms),
        when(s.ended_at_ms),
        if s.has_exit_code {
            s.exit_code.to_string()
        } else {
            "-".into()
        },
    ]
}

fn show_session(ctx: &Ctx, verb: &str, s: &pb::Session) {
    if ctx.json {
        println!("{}", session_json(s));
    } else {
        println!(
            "{verb} session {} ({} on {}): {}",
            s.session_id, s.game, s.host, s.status
        );
    }
}

pub fn session_start(ctx: &Ctx, sgc: i64, force: bool) -> Outcome {
    let r = ctx
        .client
        .start_session_opt(&pb::StartSessionRequest { sgc_id: sgc, force }, ctx.opt())?;
    show_session(ctx, "started", &r.session.unwrap_or_default());
    Ok(())
}

pub fn session_stop(ctx: &Ctx, id: i64, kill: bool, force: bool) -> Outcome {
    let r = ctx.client.stop_session_opt(
        &pb::StopSessionRequest {
            session_id: id,
            kill,
            force,
        },
        ctx.opt(),
    )?;
    let verb = match (force, kill) {
        (true, _) => "ended",
        (false, true) => "killing",
        (false, false) => "stopping",
    };
    show_session(ctx, verb, &r.session.unwrap_or_default());
    Ok(())
}

/// Stops the session (console stop command first), waits until it has ended, and starts the
/// same deployment again.
pub fn session_restart(ctx: &Ctx, id: i64, timeout: Duration) -> Outcome {
    let get = |id| -> Result<pb::Session, Failure> {
        Ok(ctx
            .client
            .get_session_opt(&pb::GetSessionRequest { session_id: id }, ctx.opt())?
            .session
            .unwrap_or_default())
    };
    let mut old = get(id)?;
    if is_live(&old.status) {
        ctx.client.stop_session_opt(
            &pb::StopSessionRequest {
                session_id: id,
                kill: false,
                force: false,
            },
            ctx.opt(),
        )?;
        if !ctx.json {
            eprintln!("stopping session {id} ({} on {})…", old.game, old.host);
        }
        let until = std::time::Instant::now() + timeout;
        while is_live(&old.status) {
            if std::time::Instant::now() >= until {
                return Err(Failure::new(
                    Exit::Failed,
                    format!(
                        "session {id} is still {} after {} s; not started again",
                        old.status,
                        timeout.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
            old = get(id)?;
        }
    }
    let new = ctx
        .client
        .start_session_opt(
            &pb::StartSessionRequest {
                sgc_id: old.sgc_id,
                force: false,
            },
            ctx.opt(),
        )?
        .session
        .unwrap_or_default();
    if ctx.json {
        println!(
            "{}",
            json!({"stopped": session_json(&old), "started": session_json(&new)})
        );
    } else {
        println!(
            "session {id} {} (exit {}); started session {} of deployment {}: {}",
            old.status,
            if old.has_exit_code {
                old.exit_code.to_string()
            } else {
                "-".into()
            },
            new.session_id,
            new.sgc_id,
            new.status
        );
    }
    Ok(())
}

fn is_live(status: &str) -> bool {
    status
        .parse::<crate::wire::SessionStatus>()
        .is_ok_and(|s| !s.is_terminal())
}

pub fn session_input(ctx: &Ctx, id: i64, input: &str) -> Outcome {
    ctx.client.send_input_opt(
        &pb::SendInputRequest {
            session_id: id,
            input: input.into(),
        },
        ctx.opt(),
    )?;
    if !ctx.json {
        println!("sent to session {id}");
    }
    Ok(())
}

pub fn session_show(ctx: &Ctx, id: i64) -> Outcome {
    let r = ctx
        .client
        .get_session_opt(&pb::GetSessionRequest { session_id: id }, ctx.opt())?;
    let s = r.session.unwrap_or_default();
    let maintenance = super::maintenance::latest(ctx, id)?;
    if ctx.json {
        let mut shown = session_json(&s);
        shown["maintenance"] = maintenance
            .as_ref()
            .map(crate::views::maintenance_json)
            .unwrap_or_default();
        println!("{shown}");
        return Ok(());
    }
    print!("{}", table(&SESSION_HEADERS, &[session_row(&s)]));
    let last_exit = if s.has_last_exit_code {
        let why = Some(&s.last_exit_reason)
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({})", printable(r)))
            .unwrap_or_default();
        format!("{} at {}{why}", s.last_exit_code, when(s.last_exit_at_ms))
    } else {
        "-".into()
    };
    println!("\nrestarts: {}   last exit: {last_exit}", s.restart_count);
    if !s.reason.is_empty() {
        println!("reason: {}", printable(&s.reason));
    }
    if let Some(m) = &maintenance {
        println!("{}", super::maintenance::describe(m));
    }
    if s.sampled_at_ms > 0 {
        println!(
            "cpu {:.1}%   memory {:.1} MiB   threads {}   open files {}   processes {}   (sampled {})",
            s.cpu_percent,
            s.rss_bytes as f64 / (1024.0 * 1024.0),
            s.threads,
            s.open_files,
            s.processes,
            when(s.sampled_at_ms)
        );
        println!("players {}", players_text(&s));
        let extra: Vec<String> = [
            ("memory peak", s.memory_peak_bytes),
            ("read from disk", s.io_read_bytes),
            ("deployment on disk", s.disk_bytes),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(what, v)| format!("{what} {}", human_bytes(v as u64)))
        .collect();
        if !extra.is_empty() {
            println!("{}", extra.join("   "));
        }
    }
    Ok(())
}

pub fn session_list(ctx: &Ctx, req: pb::ListSessionsRequest) -> Outcome {
    let r = ctx.client.list_sessions_opt(&req, ctx.opt())?;
    let rows = r.sessions.iter().map(session_row).collect();
    print_page(
        ctx,
        r.sessions.iter().map(session_json).collect(),
        r.total.max(0) as usize,
        &SESSION_HEADERS,
        rows,
    );
    if !ctx.json && r.next_page_after > 0 {
        println!(
            "({} of {} shown; the next page: --after {})",
            r.sessions.len(),
            r.total,
            r.next_page_after
        );
    }
    Ok(())
}

/// "3/20 (alice, bob, carol)", "3", or "unknown" (no query, or it failed): never 0 for a
/// server that did not answer.
pub fn players_text(s: &pb::Session) -> String {
    let Some(online) = s.players_online else {
        return "unknown".into();
    };
    let mut text = match s.players_max {
        Some(max) => format!("{online}/{max}"),
        None => online.to_string(),
    };
    if !s.player_names.is_empty() {
        let names: Vec<String> = s
            .player_names
            .iter()
            .map(|n| printable(n).into_owned())
            .collect();
        text.push_str(&format!(" ({})", names.join(", ")));
    }
    text
}
