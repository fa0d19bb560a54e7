//! Rows → protobuf messages.

use crate::db::catalog::{ConfigRow, HostRow};
use crate::db::sessions::SessionView;
use crate::proto::v1 as pb;

pub fn millis(t: Option<chrono::DateTime<chrono::Utc>>) -> i64 {
    t.map(|t| t.timestamp_millis()).unwrap_or(0)
}

pub fn host_pb(h: HostRow) -> pb::Server {
    pb::Server {
        server_id: h.server_id,
        name: h.name,
        status: h.status,
        last_seen_ms: millis(h.last_seen),
        memory_total_bytes: h.memory.map_or(0, |m| m.0),
        memory_available_bytes: h.memory.map_or(0, |m| m.1),
        port_range_low: h.port_range.0,
        port_range_high: h.port_range.1,
    }
}

/// What a secret env value reads as in every reply.
pub const SECRET_MASK: &str = "***";

pub fn config_pb(c: ConfigRow) -> pb::GameConfig {
    let ports: Vec<pb::PortDefinition> =
        serde_json::from_value::<Vec<serde_json::Value>>(c.port_definitions)
            .unwrap_or_default()
            .iter()
            .map(|p| pb::PortDefinition {
                port: p["port"].as_i64().unwrap_or(0) as i32,
                protocol: p["protocol"].as_str().unwrap_or("tcp").to_string(),
            })
            .collect();
    let p = c.process;
    let int = |v: u32| Some(i32::try_from(v).unwrap_or(i32::MAX));
    pb::GameConfig {
        config_id: c.config_id,
        game_id: c.game_id,
        name: c.name,
        program: p.program,
        args: p.args,
        // A secret value never leaves the API, whatever the caller's role.
        env: p
            .env
            .into_iter()
            .map(|(k, v)| match c.secret_env_keys.contains(&k) {
                true => (k, SECRET_MASK.to_string()),
                false => (k, v),
            })
            .collect(),
        secret_env_keys: c.secret_env_keys,
        backup: Some(c.backup.into()),
        working_dir: p.working_dir.unwrap_or_default(),
        stop_signal: p.stop_signal,
        stop_command: p.stop_command.unwrap_or_default(),
        stop_timeout_seconds: int(p.stop_timeout_seconds),
        restart_policy: p.restart_policy.as_str().to_string(),
        start_duration_ms: int(p.start_duration_ms),
        ports,
        backoff_initial_ms: int(p.backoff_initial_ms),
        backoff_max_ms: int(p.backoff_max_ms),
        retry_limit: int(p.retry_limit),
        reset_after_seconds: int(p.reset_after_seconds),
        readiness: p.readiness.map(|r| pb::ReadinessProbe {
            console_pattern: r.console_pattern.unwrap_or_default(),
            tcp_port: r.tcp_port.map_or(0, i32::from),
            timeout_seconds: int(r.timeout_seconds),
        }),
        liveness: p.liveness.map(|l| pb::LivenessProbe {
            tcp_port: l.tcp_port.map_or(0, i32::from),
            command: l.command.unwrap_or_default(),
            reply_pattern: l.reply_pattern.unwrap_or_default(),
            interval_seconds: int(l.interval_seconds),
            timeout_seconds: int(l.timeout_seconds),
            failure_threshold: int(l.failure_threshold),
        }),
        memory_estimate_mb: int(c.memory_estimate_mb).unwrap_or_default(),
        run_as: p.run_as.unwrap_or_default(),
        max_open_files: p.max_open_files.and_then(int),
        max_processes: p.max_processes.and_then(int),
        limits: Some(p.limits.into()),
        players: p.players.map(Into::into),
    }
}

pub fn session_pb(s: SessionView) -> pb::Session {
    pb::Session {
        session_id: s.session_id,
        sgc_id: s.sgc_id,
        server_id: s.server_id,
        status: s.status,
        started_at_ms: millis(s.started_at),
        ended_at_ms: millis(s.ended_at),
        has_exit_code: s.exit_code.is_some(),
        exit_code: s.exit_code.unwrap_or(0),
        created_at_ms: s.created_at.timestamp_millis(),
        host: s.host,
        game: s.game,
        config: s.config,
        reason: s.reason.unwrap_or_default(),
        restart_count: s.restart_count,
        has_last_exit_code: s.last_exit_code.is_some(),
        last_exit_code: s.last_exit_code.unwrap_or(0),
        last_exit_at_ms: millis(s.last_exit_at),
        last_exit_reason: s.last_exit_reason.unwrap_or_default(),
        sampled_at_ms: millis(s.sample.as_ref().map(|x| x.sampled_at)),
        cpu_percent: s.sample.as_ref().map_or(0.0, |x| x.cpu_percent),
        rss_bytes: s.sample.as_ref().map_or(0, |x| x.rss_bytes),
        threads: s.sample.as_ref().map_or(0, |x| x.threads),
        open_files: s.sample.as_ref().map_or(0, |x| x.open_files),
        processes: s.sample.as_ref().map_or(0, |x| x.processes),
        memory_peak_bytes: s
            .sample
            .as_ref()
            .and_then(|x| x.memory_peak_bytes)
            .unwrap_or(0),
        io_read_bytes: s.sample.as_ref().and_then(|x| x.io_read_bytes).unwrap_or(0),
        disk_bytes: s.sample.as_ref().and_then(|x| x.disk_bytes).unwrap_or(0),
        players_online: s.sample.as_ref().and_then(|x| x.players_online),
        players_max: s.sample.as_ref().and_then(|x| x.players_max),
        player_names: s.sample.map(|x| x.player_names).unwrap_or_default(),
    }
}

use crate::wire::players::{PlayerCount, PlayerQuery};

impl From<PlayerCount> for pb::PlayerQuery {
    fn from(c: PlayerCount) -> Self {
        let interval_seconds = Some(i32::try_from(c.interval_seconds).unwrap_or(i32::MAX));
        match c.query {
            PlayerQuery::A2s { port } => pb::PlayerQuery {
                kind: "a2s".into(),
                port: port.into(),
                interval_seconds,
                ..Default::default()
            },
            PlayerQuery::Minecraft { port } => pb::PlayerQuery {
                kind: "minecraft".into(),
                port: port.into(),
                interval_seconds,
                ..Default::default()
            },
            PlayerQuery::Console {
                command,
                reply_pattern,
            } => pb::PlayerQuery {
                kind: "console".into(),
                command,
                reply_pattern,
                interval_seconds,
                ..Default::default()
            },
        }
    }
}

/// The wire query from an API message; the kind and port are checked here, the rest by
/// `PlayerCount::validate` with the config.
impl TryFrom<pb::PlayerQuery> for PlayerCount {
    type Error = String;
    fn try_from(q: pb::PlayerQuery) -> Result<Self, String> {
        let port = || {
            u16::try_from(q.port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("players: port {} is not 1 to 65535", q.port))
        };
        let query = match q.kind.as_str() {
            "a2s" => PlayerQuery::A2s { port: port()? },
            "minecraft" => PlayerQuery::Minecraft { port: port()? },
            "console" => PlayerQuery::Console {
                command: q.command.clone(),
                reply_pattern: q.reply_pattern.clone(),
            },
            other => {
                return Err(format!(
                    "players: unknown kind {other:?} (a2s, minecraft, console)"
                ))
            }
        };
        Ok(PlayerCount {
            query,
            interval_seconds: q.interval_seconds.map_or(30, |s| s.max(0) as u32),
        })
    }
}

use crate::wire::game_process::ResourceLimits;

// A config's resource limits: the API's message ↔ the one validated contract (wire).

impl From<ResourceLimits> for pb::ResourceLimits {
    fn from(l: ResourceLimits) -> Self {
        let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        pb::ResourceLimits {
            memory_max_bytes: l.memory_max_bytes.map(big),
            memory_high_bytes: l.memory_high_bytes.map(big),
            swap: l.swap,
            cpu_max_cores: l.cpu_max_cores,
            cpu_weight: l.cpu_weight.map(int),
            pids_max: l.pids_max.map(int),
            io_weight: l.io_weight.map(int),
            disk_max_bytes: l.disk_max_bytes.map(big),
        }
    }
}

/// The wire limits from an API message (the caller validates them with the config). A
/// negative number becomes 0, which validation refuses.
impl From<pb::ResourceLimits> for ResourceLimits {
    fn from(l: pb::ResourceLimits) -> Self {
        let big = |v: i64| v.max(0) as u64;
        let int = |v: i32| v.max(0) as u32;
        ResourceLimits {
            memory_max_bytes: l.memory_max_bytes.map(big),
            memory_high_bytes: l.memory_high_bytes.map(big),
            swap: l.swap,
            cpu_max_cores: l.cpu_max_cores,
            cpu_weight: l.cpu_weight.map(int),
            pids_max: l.pids_max.map(int),
            io_weight: l.io_weight.map(int),
            disk_max_bytes: l.disk_max_bytes.map(big),
        }
    }
}

use crate::wire::backup::{BackupPolicy, ConsoleAction};

// The config's backup policy: the API's message ↔ the one validated contract (wire).

impl From<ConsoleAction> for pb::ConsoleAction {
    fn from(a: ConsoleAction) -> Self {
        pb::ConsoleAction {
            command: a.command,
            wait_for: a.wait_for.unwrap_or_default(),
            timeout_seconds: a
                .timeout_seconds
                .map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
        }
    }
}

impl From<pb::ConsoleAction> for ConsoleAction {
    fn from(a: pb::ConsoleAction) -> Self {
        ConsoleAction {
            command: a.command,
            wait_for: Some(a.wait_for).filter(|w| !w.is_empty()),
            // A negative number becomes 0, which validation refuses.
            timeout_seconds: a.timeout_seconds.map(|t| t.max(0) as u32),
        }
    }
}

impl From<BackupPolicy> for pb::BackupPolicy {
    fn from(b: BackupPolicy) -> Self {
        let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        pb::BackupPolicy {
            paths: b.paths,
            excludes: b.excludes,
            pre: b.pre.into_iter().map(Into::into).collect(),
            post: b.post.into_iter().map(Into::into).collect(),
            keep_last: b.keep_last.map(int),
            keep_days: b.keep_days.map(int),
        }
    }
}

/// The wire policy from an API message (the caller validates it: `BackupPolicy::validate`).
impl From<pb::BackupPolicy> for BackupPolicy {
    fn from(b: pb::BackupPolicy) -> Self {
        BackupPolicy {
            paths: b.paths,
            excludes: b.excludes,
            pre: b.pre.into_iter().map(Into::into).collect(),
            post: b.post.into_iter().map(Into::into).collect(),
            keep_last: b.keep_last.map(|n| n.max(0) as u32),
            keep_days: b.keep_days.map(|n| n.max(0) as u32),
        }
    }
}
