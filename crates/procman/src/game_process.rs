//! The one typed contract for how a game server runs: program, environment, stop plan and
//! restart rules. The API validates a config with [`GameProcess::validate`] before storing it,
//! the start command carries it to the host, and the host builds its process spec from it with
//! the same validation, so what the API accepts is what the host can run. Defaults live here
//! (and only here).

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::players::PlayerCount;
use super::probes::{LivenessProbe, ReadinessProbe};

/// The longest stop timeout a config may ask for; the host agent's drain deadline (and the
/// systemd unit's `TimeoutStopSec`) cover it.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// No restart comes sooner than this after an exit, whatever the backoff says.
pub const MIN_RESTART_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    OnFailure,
    Always,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(RestartPolicy::Never),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            other => Err(format!(
                "unknown restart policy {other:?} (never, on-failure, always)"
            )),
        }
    }
}

/// Signals a game may be stopped with, by name.
const SIGNALS: [(&str, i32); 9] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("WINCH", libc::SIGWINCH),
];

/// Parses a signal name or number (`SIGTERM`, `TERM`, `15`); numbers must be a real signal
/// (1–31, or a real-time signal 34–64).
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let upper = s.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    let n: i32 = name
        .parse()
        .map_err(|_| format!("unknown signal {s:?} (use a name such as SIGTERM, or a number)"))?;
    if (1..=31).contains(&n) || (34..=64).contains(&n) {
        Ok(n)
    } else {
        Err(format!("signal {n} does not exist (1-31, 34-64)"))
    }
}

/// The process limit a session's cgroup gets when its config sets none (as Pterodactyl Wings).
pub const DEFAULT_PIDS_MAX: u32 = 512;
/// The smallest memory limit a config may set: below it nothing starts.
pub const MIN_MEMORY_MAX: u64 = 8 << 20;

/// What a game may use of its host: enforced by the session's cgroup (memory, CPU, pids,
/// IO) and by the agent (disk, a soft limit checked at start and on an interval).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceLimits {
    /// Hard memory limit in bytes (`memory.max`); placement reserves it.
    pub memory_max_bytes: Option<u64>,
    /// Throttling starts here, below the hard limit (`memory.high`, cgroup v2).
    pub memory_high_bytes: Option<u64>,
    /// Whether the game may use swap (off by default).
    pub swap: bool,
    /// CPU time in cores (`2.5`), as a quota per 100 ms period.
    pub cpu_max_cores: Option<f64>,
    /// Relative CPU share against other sessions, 1–10000 (default 100).
    pub cpu_weight: Option<u32>,
    /// Processes and threads; `None` is [`DEFAULT_PIDS_MAX`].
    pub pids_max: Option<u32>,
    /// Relative IO share, 1–10000 (cgroup v2).
    pub io_weight: Option<u32>,
    /// Soft limit on the deployment directory's size in bytes: a session does not start
    /// above it, and the console is warned at 90 %.
    pub disk_max_bytes: Option<u64>,
}

impl ResourceLimits {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.memory_max_bytes.is_some_and(|m| m < MIN_MEMORY_MAX) {
            return Err(field(
                "memory_max",
                format!("must be at least {} MiB", MIN_MEMORY_MAX >> 20),
            ));
        }
        if let Some(high) = self.memory_high_bytes {
            if high < MIN_MEMORY_MAX {
                return Err(field(
                    "memory_high",
                    format!("must be at least {} MiB", MIN_MEMORY_MAX >> 20),
                ));
            }
            if self.memory_max_bytes.is_some_and(|max| high > max) {
                return Err(field("memory_high", "must not be above memory_max"));
            }
        }
        if let Some(cores) = self.cpu_max_cores {
            if !cores.is_finite() || !(0.01..=1024.0).contains(&cores) {
                return Err(field("cpu_max", "must be 0.01 to 1024 cores"));
            }
        }
        for (name, weight) in [
            ("cpu_weight", self.cpu_weight),
            ("io_weight", self.io_weight),
        ] {
            if weight.is_some_and(|w| !(1..=10_000).contains(&w)) {
                return Err(field(name, "must be 1 to 10000"));
            }
        }
        if self.pids_max.is_some_and(|n| !(8..=4_194_304).contains(&n)) {
            return Err(field("pids_max", "must be 8 to 4194304"));
        }
        if self.disk_max_bytes.is_some_and(|d| d < 1 << 20) {
            return Err(field("disk_max", "must be at least 1 MiB"));
        }
        Ok(())
    }

    /// The part a cgroup enforces.
    pub fn cgroup(&self) -> manman_cgroup::Limits {
        manman_cgroup::Limits {
            memory_max: self.memory_max_bytes,
            memory_high: self.memory_high_bytes,
            swap: self.swap,
            cpu_max_cores: self.cpu_max_cores,
            cpu_weight: self.cpu_weight,
            pids_max: Some(u64::from(self.pids_max.unwrap_or(DEFAULT_PIDS_MAX))),
            io_weight: self.io_weight,
        }
    }
}

/// Bytes as an operator reads them: `64 MiB`, `4 GiB`, `1.5 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 || unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a size: bytes, or with a binary suffix `K`, `M`, `G`, `T` (`KiB`, `MB`… read the
/// same way), decimals allowed (`1.5G`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512M, 4G)"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} in {text:?} (K, M, G, T)"
            ))
        }
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("{text:?} is not a usable size"));
    }
    Ok(bytes.round() as u64)
}

/// A field that failed validation, named as the API and CLI name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

pub(crate) fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// How to run one game server, and how to stop and restart it. Durations are milliseconds or
/// seconds on the wire as their names say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GameProcess {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Relative to the deployment's directory on the host; never absolute, never `..`.
    pub working_dir: Option<String>,
    pub stop_signal: String,
    /// Console command that asks the game to stop cleanly (e.g. `stop`, `quit`).
    pub stop_command: Option<String>,
    /// From the start of a stop to SIGKILL, however the time is split (see [`StopPlan`]).
    pub stop_timeout_seconds: u32,
    pub restart_policy: RestartPolicy,
    /// How long a run must last to count as started (supervisord's `startsecs`).
    pub start_duration_ms: u32,
    pub backoff_initial_ms: u32,
    pub backoff_max_ms: u32,
    /// Consecutive failed runs tolerated before giving up.
    pub retry_limit: u32,
    /// A run lasting this long resets the failure count (systemd's `StartLimitIntervalSec`).
    pub reset_after_seconds: u32,
    /// When the server is up; without one, when it has lasted `start_duration_ms`.
    pub readiness: Option<ReadinessProbe>,
    /// Whether a running server still answers; none: running means the process exists.
    pub liveness: Option<LivenessProbe>,
    /// `user` or `user:group` the game runs as (resolved on the host; the agent needs
    /// CAP_SETUID/CAP_SETGID for it). None: the agent's own user.
    pub run_as: Option<String>,
    /// RLIMIT_NOFILE for the game.
    pub max_open_files: Option<u32>,
    /// RLIMIT_NPROC for the game (counted per user: meaningful with `run_as`).
    pub max_processes: Option<u32>,
    /// Memory, CPU, process, IO and disk limits.
    pub limits: ResourceLimits,
    /// How to ask the server who is playing (none: the count is unknown).
    pub players: Option<PlayerCount>,
}

impl Default for GameProcess {
    fn default() -> Self {
        GameProcess {
            program: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            stop_signal: "SIGTERM".into(),
            stop_command: None,
            stop_timeout_seconds: 30,
            restart_policy: RestartPolicy::Never,
            start_duration_ms: 1000,
            backoff_initial_ms: 1000,
            backoff_max_ms: 60_000,
            retry_limit: 5,
            reset_after_seconds: 600,
            readiness: None,
            liveness: None,
            run_as: None,
            max_open_files: None,
            max_processes: None,
            limits: ResourceLimits::default(),
            players: None,
        }
    }
}

/// The stop timeline: console command (if any) at 0, the stop signal to the process group at
/// `signal_after`, SIGKILL at `kill_after` (= the stop timeout). With a console command the
/// game gets the first three quarters of the timeout to exit by itself; without one the signal
/// goes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPlan {
    pub signal_after: Duration,
    pub kill_after: Duration,
}

impl StopPlan {
    pub fn new(timeout: Duration, has_console_command: bool) -> StopPlan {
        StopPlan {
            signal_after: if has_console_command {
                timeout * 3 / 4
            } else {
                Duration::ZERO
            },
            kill_after: timeout,
        }
    }
}

impl GameProcess {
    /// Checks everything the host needs to run it; the error names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.program.trim().is_empty() {
            return Err(field("program", "is required"));
        }
        if self.program.contains('\0') || self.args.iter().any(|a| a.contains('\0')) {
            return Err(field("program", "must not contain NUL bytes"));
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(field("env", format!("invalid variable name {key:?}")));
            }
        }
        if let Some(dir) = &self.working_dir {
            let path = Path::new(dir);
            if path.is_absolute()
                || path
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(field(
                    "working_dir",
                    format!("{dir:?} must be a relative path inside the deployment's directory (no '..')"),
                ));
            }
        }
        parse_signal(&self.stop_signal).map_err(|e| field("stop_signal", e))?;
        if let Some(c) = &self.stop_command {
            if c.contains(['\n', '\r', '\0']) {
                return Err(field("stop_command", "must be a single line"));
            }
        }
        if self.stop_timeout_seconds == 0
            || u64::from(self.stop_timeout_seconds) > MAX_STOP_TIMEOUT.as_secs()
        {
            return Err(field(
                "stop_timeout_seconds",
                format!("must be 1 to {} seconds", MAX_STOP_TIMEOUT.as_secs()),
            ));
        }
        if Duration::from_millis(self.backoff_initial_ms.into()) < MIN_RESTART_DELAY {
            return Err(field(
                "backoff_initial_ms",
                format!("must be at least {} ms", MIN_RESTART_DELAY.as_millis()),
            ));
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(field(
                "backoff_max_ms",
                "must not be below backoff_initial_ms",
            ));
        }
        if let Some(r) = &self.readiness {
            r.validate()?;
        }
        if let Some(l) = &self.liveness {
            l.validate()?;
        }
        if let Some(who) = &self.run_as {
            let (user, group) = who.split_once(':').unwrap_or((who, ""));
            let name_ok = |n: &str| {
                n.len() <= 32
                    && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
            };
            if !name_ok(user) || !(group.is_empty() || name_ok(group)) || who.ends_with(':') {
                return Err(field(
                    "run_as",
                    format!("{who:?} is not USER or USER:GROUP (lowercase Unix names)"),
                ));
            }
        }
        if self.max_open_files == Some(0) || self.max_processes == Some(0) {
            return Err(field(
                if self.max_open_files == Some(0) {
                    "max_open_files"
                } else {
                    "max_processes"
                },
                "must be at least 1",
            ));
        }
        if let Some(p) = &self.players {
            p.validate()?;
        }
        self.limits.validate()
    }

    pub fn signal(&self) -> i32 {
        parse_signal(&self.stop_signal).unwrap_or(libc::SIGTERM)
    }

    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout_seconds.into())
    }

    pub fn stop_plan(&self) -> StopPlan {
        StopPlan::new(self.stop_timeout(), self.stop_command.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> GameProcess {
        GameProcess {
            program: "/usr/bin/java".into(),
            ..GameProcess::default()
        }
    }

    #[test]
    fn defaults_are_valid_once_there_is_a_program() {
        assert_eq!(
            GameProcess::default().validate().unwrap_err().field,
            "program"
        );
        valid().validate().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(GameProcess, &str)> = vec![
            (
                GameProcess {
                    stop_signal: "99".into(),
                    ..valid()
                },
                "stop_signal",
            ),
            (
                GameProcess {
                    stop_signal: "SIGNOPE".into(),
                    ..valid()
                },
                "stop_signal",
            ),
            (
                GameProcess {
                    working_dir: Some("../../etc".into()),
                    ..valid()
                },
                "working_dir",
            ),
            (
                GameProcess {
                    working_dir: Some("/var/lib".into()),
                    ..valid()
                },
                "working_dir",
            ),
            (
                GameProcess {
                    stop_timeout_seconds: 0,
                    ..valid()
                },
                "stop_timeout_seconds",
            ),
            (
                GameProcess {
                    stop_timeout_seconds: 301,
                    ..valid()
                },
                "stop_timeout_seconds",
            ),
            (
                GameProcess {
                    backoff_initial_ms: 10,
                    ..valid()
                },
                "backoff_initial_ms",
            ),
            (
                GameProcess {
                    backoff_max_ms: 500,
                    ..valid()
                },
                "backoff_max_ms",
            ),
            (
                GameProcess {
                    stop_command: Some("a\nb".into()),
                    ..valid()
                },
                "stop_command",
            ),
            (
                GameProcess {
                    run_as: Some("Root;rm".into()),
                    ..valid()
                },
                "run_as",
            ),
            (
                GameProcess {
                    run_as: Some("mc:".into()),
                    ..valid()
                },
                "run_as",
            ),
            (
                GameProcess {
                    max_open_files: Some(0),
                    ..valid()
                },
                "max_open_files",
            ),
        ];
        for (p, name) in cases {
            assert_eq!(p.validate().unwrap_err().field, name, "{p:?}");
        }
        let ok = GameProcess {
            working_dir: Some("world/./data".into()),
            stop_signal: "int".into(),
            run_as: Some("minecraft:games".into()),
            ..valid()
        };
        ok.validate().unwrap();
    }

    #[test]
    fn limits_are_checked_and_sizes_read_as_operators_write_them() {
        let with = |limits: ResourceLimits| GameProcess { limits, ..valid() };
        for (limits, name) in [
            (
                ResourceLimits {
                    memory_max_bytes: Some(1 << 20),
                    ..Default::default()
                },
                "memory_max",
            ),
            (
                ResourceLimits {
                    memory_max_bytes: Some(64 << 20),
                    memory_high_bytes: Some(128 << 20),
                    ..Default::default()
                },
                "memory_high",
            ),
            (
                ResourceLimits {
                    cpu_max_cores: Some(0.0),
                    ..Default::default()
                },
                "cpu_max",
            ),
            (
                ResourceLimits {
                    cpu_max_cores: Some(f64::NAN),
                    ..Default::default()
                },
                "cpu_max",
            ),
            (
                ResourceLimits {
                    cpu_weight: Some(0),
                    ..Default::default()
                },
                "cpu_weight",
            ),
            (
                ResourceLimits {
                    io_weight: Some(10_001),
                    ..Default::default()
                },
                "io_weight",
            ),
            (
                ResourceLimits {
                    pids_max: Some(2),
                    ..Default::default()
                },
                "pids_max",
            ),
            (
                ResourceLimits {
                    disk_max_bytes: Some(10),
                    ..Default::default()
                },
                "disk_max",
            ),
        ] {
            assert_eq!(with(limits).validate().unwrap_err().field, name);
        }
        let ok = ResourceLimits {
            memory_max_bytes: Some(4 << 30),
            memory_high_bytes: Some(3 << 30),
            cpu_max_cores: Some(2.5),
            pids_max: Some(32),
            ..Default::default()
        };
        with(ok.clone()).validate().unwrap();
        assert_eq!(ok.cgroup().pids_max, Some(32));
        assert_eq!(
            ResourceLimits::default().cgroup().pids_max,
            Some(512),
            "Wings' default"
        );
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("2 GiB").unwrap(), 2 << 30);
        for bad in ["", "M", "-1G", "5X", "1e99T"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(4 << 30), "4 GiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 B");
    }

    #[test]
    fn signals_parse_by_name_or_real_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("int").unwrap(), libc::SIGINT);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("32").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn the_stop_plan_kills_at_the_timeout_however_it_is_split() {
        let t = Duration::from_secs(20);
        let with = StopPlan::new(t, true);
        assert_eq!(with.signal_after, Duration::from_secs(15));
        assert_eq!(with.kill_after, t);
        let without = StopPlan::new(t, false);
        assert_eq!(without.signal_after, Duration::ZERO);
        assert_eq!(without.kill_after, t);
    }

    #[test]
    fn serialises_policies_and_fills_defaults() {
        let p: GameProcess =
            serde_json::from_str(r#"{"program":"/bin/true","restart_policy":"on-failure"}"#)
                .unwrap();
        assert_eq!(p.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(p.reset_after_seconds, 600);
        assert_eq!(p.start_duration_ms, 1000);
    }
}
