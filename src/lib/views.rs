//! JSON views of the control API's messages, one shape wherever they are shown: the CLI's
//! `--json` and the dashboard's JSON layer. Times are RFC 3339 in UTC or `null`.

use serde_json::{json, Value};

use crate::proto::v1 as pb;

/// A time for JSON: RFC 3339 in UTC, or `null` when it has not happened (0).
pub fn json_time(ms: i64) -> Value {
    if ms <= 0 {
        return Value::Null;
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// A game.
pub fn game_json(g: &pb::Game) -> Value {
    json!({"game_id": g.game_id, "name": g.name})
}

/// A host.
pub fn host_json(s: &pb::Server) -> Value {
    let memory = (s.memory_total_bytes > 0).then(|| {
        json!({"total_bytes": s.memory_total_bytes, "available_bytes": s.memory_available_bytes})
    });
    json!({"server_id": s.server_id, "name": s.name, "status": s.status,
           "last_seen": json_time(s.last_seen_ms), "memory": memory,
           "port_range": [s.port_range_low, s.port_range_high]})
}

/// A session, with its latest sample and last exit.
pub fn session_json(s: &pb::Session) -> Value {
    json!({
        "session_id": s.session_id, "sgc_id": s.sgc_id, "server_id": s.server_id, "status": s.status,
        "host": s.host, "game": s.game, "config": s.config,
        "started_at": json_time(s.started_at_ms), "ended_at": json_time(s.ended_at_ms),
        "exit_code": if s.has_exit_code { json!(s.exit_code) } else { Value::Null },
        "reason": if s.reason.is_empty() { Value::Null } else { json!(s.reason) },
        "restart_count": s.restart_count,
        "last_exit_code": if s.has_last_exit_code { json!(s.last_exit_code) } else { Value::Null },
        "last_exit_at": json_time(s.last_exit_at_ms),
        "last_exit_reason": Some(&s.last_exit_reason).filter(|r| !r.is_empty()),
        "sample": if s.sampled_at_ms > 0 {
            json!({"sampled_at": json_time(s.sampled_at_ms), "cpu_percent": s.cpu_percent,
                   "rss_bytes": s.rss_bytes, "threads": s.threads, "open_files": s.open_files,
                   "processes": s.processes,
                   "memory_peak_bytes": Some(s.memory_peak_bytes).filter(|v| *v > 0),
                   "io_read_bytes": Some(s.io_read_bytes).filter(|v| *v > 0),
                   "disk_bytes": Some(s.disk_bytes).filter(|v| *v > 0),
                   // null: unknown (no query, or it failed), never 0 for "did not answer".
                   "players_online": s.players_online, "players_max": s.players_max,
                   "player_names": s.player_names})
        } else {
            Value::Null
        },
    })
}

/// A game config with its probes and limits.
pub fn config_json(c: &pb::GameConfig) -> Value {
    json!({
        "config_id": c.config_id, "game_id": c.game_id, "name": c.name, "program": c.program,
        "args": c.args, "env": c.env, "secret_env_keys": c.secret_env_keys, "working_dir": c.working_dir, "stop_signal": c.stop_signal,
        "backup": c.backup.as_ref().map(backup_policy_json),
        "stop_command": c.stop_command, "stop_timeout_seconds": c.stop_timeout_seconds,
        "restart_policy": c.restart_policy, "start_duration_ms": c.start_duration_ms,
        "backoff_initial_ms": c.backoff_initial_ms, "backoff_max_ms": c.backoff_max_ms,
        "retry_limit": c.retry_limit, "reset_after_seconds": c.reset_after_seconds,
        "ports": c.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol)).collect::<Vec<_>>(),
        "readiness": c.readiness.as_ref().map(|r| {
            let check = match r.tcp_port {
                0 => json!({"console_pattern": r.console_pattern}),
                port => json!({"tcp_port": port}),
            };
            json!({"check": check, "timeout_seconds": r.timeout_seconds})
        }),
        "liveness": c.liveness.as_ref().map(|l| {
            let check = match l.tcp_port {
                0 => json!({"command": l.command, "reply_pattern": l.reply_pattern}),
                port => json!({"tcp_port": port}),
            };
            json!({"check": check, "interval_seconds": l.interval_seconds,
                   "timeout_seconds": l.timeout_seconds, "failure_threshold": l.failure_threshold})
        }),
        "memory_estimate_mb": c.memory_estimate_mb,
        "run_as": Some(&c.run_as).filter(|u| !u.is_empty()),
        "max_open_files": c.max_open_files,
        "max_processes": c.max_processes,
        "limits": c.limits.as_ref().map(limits_json),
        "players": c.players.as_ref().map(|q| match q.kind.as_str() {
            "console" => json!({"kind": q.kind, "command": q.command, "reply_pattern": q.reply_pattern,
                                "interval_seconds": q.interval_seconds}),
            _ => json!({"kind": q.kind, "port": q.port, "interval_seconds": q.interval_seconds}),
        }),
    })
}

fn limits_json(l: &pb::ResourceLimits) -> Value {
    json!({
        "memory_max_bytes": l.memory_max_bytes, "memory_high_bytes": l.memory_high_bytes,
        "swap": l.swap, "cpu_max_cores": l.cpu_max_cores, "cpu_weight": l.cpu_weight,
        "pids_max": l.pids_max, "io_weight": l.io_weight, "disk_max_bytes": l.disk_max_bytes,
    })
}

/// A deployment; ports as `HOST:CONTAINER/PROTOCOL`.
pub fn deployment_json(d: &pb::Deployment) -> Value {
    json!({"sgc_id": d.sgc_id, "server_id": d.server_id, "config_id": d.config_id, "status": d.status,
        "ports": d.ports.iter().map(|p| format!("{}:{}/{}", p.host_port, p.container_port, p.protocol)).collect::<Vec<_>>()})
}

/// A backup, as the CLI prints it with `--json` and the dashboard shows it.
pub fn backup_json(b: &pb::Backup) -> Value {
    let opt = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    json!({
        "backup_id": b.backup_id, "sgc_id": b.sgc_id, "server_id": b.server_id,
        "status": b.status, "note": opt(&b.note), "pinned": b.pinned,
        "bytes_done": b.bytes_done, "bytes_total": b.bytes_total,
        "size_bytes": b.size_bytes, "file_count": b.file_count, "sha256": opt(&b.sha256),
        "reason": opt(&b.reason), "s3_key": b.s3_key,
        "paused_ms": if b.paused_ms > 0 { json!(b.paused_ms) } else { Value::Null },
        "snapshot": b.snapshot,
        "created_at": json_time(b.created_at_ms), "started_at": json_time(b.started_at_ms),
        "ended_at": json_time(b.ended_at_ms),
        "duration_ms": if b.ended_at_ms > 0 && b.started_at_ms > 0 { json!(b.ended_at_ms - b.started_at_ms) } else { Value::Null },
    })
}

pub fn restore_json(r: &pb::Restore) -> Value {
    let id = |n: i64| if n > 0 { json!(n) } else { Value::Null };
    json!({
        "restore_id": r.restore_id, "backup_id": r.backup_id, "sgc_id": r.sgc_id,
        "status": r.status, "reason": if r.reason.is_empty() { Value::Null } else { json!(r.reason) },
        "stopped_session_id": id(r.stopped_session_id), "started_session_id": id(r.started_session_id),
        "created_at": json_time(r.created_at_ms), "ended_at": json_time(r.ended_at_ms),
    })
}

fn backup_policy_json(b: &pb::BackupPolicy) -> Value {
    let actions = |list: &[pb::ConsoleAction]| {
        list.iter()
            .map(|a| json!({"command": a.command, "wait_for": Some(&a.wait_for).filter(|w| !w.is_empty()), "timeout_seconds": a.timeout_seconds}))
            .collect::<Vec<_>>()
    };
    json!({
        "paths": b.paths, "excludes": b.excludes, "pre": actions(&b.pre), "post": actions(&b.post),
        "keep_last": b.keep_last, "keep_days": b.keep_days,
    })
}

/// A maintenance waiting for the players (or how it ended).
pub fn maintenance_json(m: &pb::Maintenance) -> Value {
    let opt = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    json!({
        "maintenance_id": m.maintenance_id, "session_id": m.session_id, "action": m.action,
        "status": m.status, "deadline": json_time(m.deadline_ms),
        "warn_command": opt(&m.warn_command), "warn_at_seconds": m.warn_at_seconds,
        "warned_seconds": m.warned_seconds,
        "players_seen": if m.players_known { json!(m.players_seen) } else { Value::Null },
        "reason": opt(&m.reason),
        "new_session_id": if m.new_session_id > 0 { json!(m.new_session_id) } else { Value::Null },
        "created_by": m.created_by, "created_at": json_time(m.created_at_ms),
        "acted_at": json_time(m.acted_at_ms), "ended_at": json_time(m.ended_at_ms),
    })
}

/// A schedule, as the CLI prints it with `--json` and the dashboard shows it.
pub fn schedule_json(s: &pb::Schedule) -> Value {
    json!({
        "schedule_id": s.schedule_id, "sgc_id": s.sgc_id, "name": s.name, "cron": s.cron,
        "timezone": s.timezone, "only_when_running": s.only_when_running, "paused": s.paused,
        "next_run_at": json_time(s.next_run_at_ms), "created_by": s.created_by,
        "created_at": json_time(s.created_at_ms),
        "steps": s.steps.iter().map(|st| json!({"action": st.action,
            "command": if st.command.is_empty() { Value::Null } else { json!(st.command) },
            "seconds": if st.seconds > 0 { json!(st.seconds) } else { Value::Null },
            "continue_on_failure": st.continue_on_failure,
            "when_empty": if st.when_empty { json!({"deadline_seconds": st.deadline_seconds,
                "warn_command": st.warn_command, "warn_at_seconds": st.warn_at_seconds}) } else { Value::Null },
        })).collect::<Vec<_>>(),
        "last_run": s.last_run.as_ref().map(run_json).unwrap_or(Value::Null),
    })
}

/// One firing of a schedule with each step's result.
pub fn run_json(r: &pb::ScheduleRun) -> Value {
    json!({
        "run_id": r.run_id, "schedule_id": r.schedule_id,
        "scheduled_for": json_time(r.scheduled_for_ms), "status": r.status,
        "results": serde_json::from_str::<Value>(&r.results_json).unwrap_or(Value::Null),
        "reason": if r.reason.is_empty() { Value::Null } else { json!(r.reason) },
        "started_at": json_time(r.started_at_ms), "ended_at": json_time(r.ended_at_ms),
    })
}
