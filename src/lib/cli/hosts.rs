//! `manman host list|show|drain`: the hosts, what is deployed on each, and emptying one.

use std::time::Duration;

use serde_json::json;

use super::deployments::{deployment_row, deployments, DEPLOYMENT_HEADERS};
use super::output::{print, table, when};
use super::sessions::{session_row, SESSION_HEADERS};
use super::shared::{all_pages, Ctx, Exit, Failure, Outcome};
use crate::proto::v1 as pb;
use crate::views::{deployment_json, host_json, session_json};

pub(super) const HOST_HEADERS: [&str; 4] = ["ID", "NAME", "STATUS", "LAST SEEN"];

pub(super) fn host_row(s: &pb::Server) -> Vec<String> {
    vec![
        s.server_id.to_string(),
        s.name.clone(),
        s.status.clone(),
        when(s.last_seen_ms),
    ]
}

pub(super) fn hosts(ctx: &Ctx) -> Result<Vec<pb::Server>, Failure> {
    all_pages(|page_after| {
        let r = ctx.client.list_servers_opt(
            &pb::ListServersRequest {
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.servers, r.next_page_after))
    })
}

/// The live sessions (the newest 500, and how many there are) of a host, or of all (0).
pub(super) fn live_sessions(
    ctx: &Ctx,
    server_id: i64,
) -> Result<pb::ListSessionsResponse, Failure> {
    Ok(ctx.client.list_sessions_opt(
        &pb::ListSessionsRequest {
            server_id,
            live_only: true,
            limit: 500,
            ..Default::default()
        },
        ctx.opt(),
    )?)
}

pub fn host_list(ctx: &Ctx) -> Outcome {
    let servers = hosts(ctx)?;
    let rows = servers.iter().map(host_row).collect();
    print(
        ctx,
        servers.iter().map(host_json).collect(),
        &HOST_HEADERS,
        rows,
    );
    Ok(())
}

/// One host, its deployments and its live sessions.
pub fn host_show(ctx: &Ctx, id: i64) -> Outcome {
    let host = ctx
        .client
        .get_server_opt(&pb::GetServerRequest { server_id: id }, ctx.opt())?
        .server
        .unwrap_or_default();
    let deployed = deployments(ctx, Some(id), None)?;
    let live = live_sessions(ctx, id)?;
    if ctx.json {
        let mut value = host_json(&host);
        value["deployments"] = json!(deployed.iter().map(deployment_json).collect::<Vec<_>>());
        value["live_sessions"] = json!(live.sessions.iter().map(session_json).collect::<Vec<_>>());
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("serialisable")
        );
        return Ok(());
    }
    print!("{}", table(&HOST_HEADERS, &[host_row(&host)]));
    let gib = |b: i64| b as f64 / f64::from(1u32 << 30);
    if host.memory_total_bytes > 0 {
        println!(
            "\nmemory: {:.1} GiB available of {:.1} GiB   ports for --port auto: {}-{}",
            gib(host.memory_available_bytes),
            gib(host.memory_total_bytes),
            host.port_range_low,
            host.port_range_high
        );
    }
    let rows: Vec<Vec<String>> = deployed.iter().map(deployment_row).collect();
    if rows.is_empty() {
        println!("\nno deployments");
    } else {
        print!("\n{}", table(&DEPLOYMENT_HEADERS, &rows));
    }
    let rows: Vec<Vec<String>> = live.sessions.iter().map(session_row).collect();
    if rows.is_empty() {
        println!("\nno live sessions");
    } else {
        print!("\n{}", table(&SESSION_HEADERS, &rows));
    }
    Ok(())
}

/// Asks the host to stop every live session, then follows them until none is left.
pub fn host_drain(ctx: &Ctx, id: i64, timeout: Duration) -> Outcome {
    let r = ctx
        .client
        .drain_server_opt(&pb::DrainServerRequest { server_id: id }, ctx.opt())?;
    if !ctx.json {
        println!(
            "draining host {id}: {} session(s) stopping{}",
            r.stopping.len(),
            if r.failed.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} could not be asked: {}",
                    r.failed.len(),
                    r.failed.join("; ")
                )
            }
        );
    }
    let until = std::time::Instant::now() + timeout;
    let mut last_left = -1;
    let left = loop {
        let live = live_sessions(ctx, id)?;
        // The count and the rows are two queries: a session that ends between them can make
        // them disagree for one poll. Done only when both say none is left.
        let still = live.total.max(live.sessions.len() as i64);
        if still != last_left && !ctx.json {
            println!("  {still} session(s) still live");
            last_left = still;
        }
        let drained = live.total == 0 && live.sessions.is_empty();
        if drained || std::time::Instant::now() >= until {
            break live.sessions;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if ctx.json {
        println!(
            "{}",
            json!({"server_id": id, "stopping": r.stopping, "failed": r.failed,
                   "still_live": left.iter().map(|s| s.session_id).collect::<Vec<_>>()})
        );
    } else if left.is_empty() {
        println!("host {id} drained: no session left");
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Failed,
            format!(
                "{} session(s) still live after {timeout:?}: {}",
                left.len(),
                left.iter()
                    .map(|s| s.session_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}
