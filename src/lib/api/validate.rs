//! Request validation: names, ids, ports, and game configs (through the one game-process
//! contract the host also uses, so what is accepted here is what a host can run).

use super::error::ApiError;
use crate::db::catalog::Page;
use crate::proto::v1 as pb;
use crate::wire::players::PlayerCount;
use crate::wire::probes::{LivenessProbe, ReadinessProbe};
use crate::wire::GameProcess;

pub fn valid_name(what: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::InvalidArgument(format!(
            "{what} must be 1 to 100 characters"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ApiError::InvalidArgument(format!(
            "{what} {name:?} may only contain letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(name.to_string())
}

pub fn positive_id(what: &str, id: i64) -> Result<i64, ApiError> {
    if id <= 0 {
        return Err(ApiError::InvalidArgument(format!(
            "{what} must be a positive id"
        )));
    }
    Ok(id)
}

/// Rows per page of a list when the caller does not say, and at most.
pub const DEFAULT_PAGE_SIZE: i32 = 500;
pub const MAX_PAGE_SIZE: i32 = 1000;

/// A list request's page; one more row than asked is fetched, to tell whether another follows.
pub fn page(after: i64, size: i32) -> Result<Page, ApiError> {
    if after < 0 {
        return Err(ApiError::InvalidArgument(
            "page_after must not be negative".into(),
        ));
    }
    let size = match size {
        0 => DEFAULT_PAGE_SIZE,
        1..=MAX_PAGE_SIZE => size,
        _ => {
            return Err(ApiError::InvalidArgument(format!(
                "page_size must be 1 to {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})"
            )))
        }
    };
    Ok(Page {
        after,
        limit: i64::from(size) + 1,
    })
}

/// Cuts the extra row `page` fetched and returns where the next page starts (0: no more).
pub fn next_page_after<T>(rows: &mut Vec<T>, page: Page, id: impl Fn(&T) -> i64) -> i64 {
    if rows.len() as i64 >= page.limit {
        rows.truncate(page.limit as usize - 1);
        rows.last().map_or(0, id)
    } else {
        0
    }
}

pub fn valid_protocol(p: &str) -> Result<String, ApiError> {
    match p {
        "" | "tcp" => Ok("tcp".into()),
        "udp" => Ok("udp".into()),
        other => Err(ApiError::InvalidArgument(format!(
            "protocol {other:?} must be tcp or udp"
        ))),
    }
}

pub fn valid_port(what: &str, port: i32) -> Result<i32, ApiError> {
    if !(1..=65535).contains(&port) {
        return Err(ApiError::InvalidArgument(format!(
            "{what} {port} is not between 1 and 65535"
        )));
    }
    Ok(port)
}

/// A request's game config as the one contract, defaults filled in for unset fields, then
/// validated. The error names the field.
pub fn game_process(c: &pb::GameConfig) -> Result<GameProcess, ApiError> {
    let defaults = GameProcess::default();
    let text = |s: &str| Some(s.to_string()).filter(|s| !s.trim().is_empty());
    let process = GameProcess {
        program: c.program.trim().to_string(),
        args: c.args.clone(),
        env: c.env.clone().into_iter().collect(),
        working_dir: text(&c.working_dir),
        stop_signal: text(&c.stop_signal).unwrap_or(defaults.stop_signal.clone()),
        stop_command: text(&c.stop_command),
        stop_timeout_seconds: unsigned(
            "stop_timeout_seconds",
            c.stop_timeout_seconds,
            defaults.stop_timeout_seconds,
        )?,
        restart_policy: match text(&c.restart_policy) {
            None => defaults.restart_policy,
            Some(p) => p
                .parse()
                .map_err(|e| ApiError::InvalidArgument(format!("restart_policy: {e}")))?,
        },
        start_duration_ms: unsigned(
            "start_duration_ms",
            c.start_duration_ms,
            defaults.start_duration_ms,
        )?,
        backoff_initial_ms: unsigned(
            "backoff_initial_ms",
            c.backoff_initial_ms,
            defaults.backoff_initial_ms,
        )?,
        backoff_max_ms: unsigned("backoff_max_ms", c.backoff_max_ms, defaults.backoff_max_ms)?,
        retry_limit: unsigned("retry_limit", c.retry_limit, defaults.retry_limit)?,
        reset_after_seconds: unsigned(
            "reset_after_seconds",
            c.reset_after_seconds,
            defaults.reset_after_seconds,
        )?,
        readiness: c.readiness.as_ref().map(readiness).transpose()?,
        liveness: c.liveness.as_ref().map(liveness).transpose()?,
        run_as: text(&c.run_as),
        max_open_files: c
            .max_open_files
            .map(|n| unsigned("max_open_files", Some(n), 0))
            .transpose()?,
        max_processes: c
            .max_processes
            .map(|n| unsigned("max_processes", Some(n), 0))
            .transpose()?,
        limits: c.limits.clone().map(Into::into).unwrap_or_default(),
        players: c
            .players
            .clone()
            .map(PlayerCount::try_from)
            .transpose()
            .map_err(ApiError::InvalidArgument)?,
    };
    process
        .validate()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    Ok(process)
}

fn probe_port(field: &str, port: i32) -> Result<Option<u16>, ApiError> {
    match port {
        0 => Ok(None),
        p => u16::try_from(p)
            .map(Some)
            .map_err(|_| ApiError::InvalidArgument(format!("{field}: must be 1 to 65535"))),
    }
}

/// An optional number of the proto: its default when unset, never negative.
fn unsigned(field: &str, v: Option<i32>, default: u32) -> Result<u32, ApiError> {
    v.map_or(Ok(default), |n| {
        u32::try_from(n)
            .map_err(|_| ApiError::InvalidArgument(format!("{field}: cannot be negative")))
    })
}

/// The proto's readiness probe as the wire type (checked with the rest of the config).
fn readiness(p: &pb::ReadinessProbe) -> Result<ReadinessProbe, ApiError> {
    let defaults = ReadinessProbe::default();
    Ok(ReadinessProbe {
        console_pattern: Some(p.console_pattern.clone()).filter(|s| !s.is_empty()),
        tcp_port: probe_port("readiness.tcp_port", p.tcp_port)?,
        timeout_seconds: unsigned(
            "readiness.timeout_seconds",
            p.timeout_seconds,
            defaults.timeout_seconds,
        )?,
    })
}

fn liveness(p: &pb::LivenessProbe) -> Result<LivenessProbe, ApiError> {
    let defaults = LivenessProbe::default();
    Ok(LivenessProbe {
        tcp_port: probe_port("liveness.tcp_port", p.tcp_port)?,
        command: Some(p.command.clone()).filter(|s| !s.is_empty()),
        reply_pattern: Some(p.reply_pattern.clone()).filter(|s| !s.is_empty()),
        interval_seconds: unsigned(
            "liveness.interval_seconds",
            p.interval_seconds,
            defaults.interval_seconds,
        )?,
        timeout_seconds: unsigned(
            "liveness.timeout_seconds",
            p.timeout_seconds,
            defaults.timeout_seconds,
        )?,
        failure_threshold: unsigned(
            "liveness.failure_threshold",
            p.failure_threshold,
            defaults.failure_threshold,
        )?,
    })
}
