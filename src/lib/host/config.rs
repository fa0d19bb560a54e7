//! The agent's settings from its environment (`HostConfig::from_env`): where the API and the
//! broker are, its data directory, the keeper, heartbeats, the port range and the game users.

use std::path::PathBuf;
use std::time::Duration;

use super::console::ConsoleSettings;
use super::{game_users, identity};
use crate::config::{self, ConfigError, Env};
use crate::grpc::Endpoint;
use crate::wire::game_process::MAX_STOP_TIMEOUT;

/// How long the agent's shutdown may take: every game's own stop timeout (at most
/// [`MAX_STOP_TIMEOUT`]) plus a margin to report. The unit's `TimeoutStopSec` matches.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(MAX_STOP_TIMEOUT.as_secs() + 20);

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub rabbitmq_url: String,
    /// The API (`API_ADDRESS`, TLS with `GRPC_TLS_CA`).
    pub api: Endpoint,
    pub server_name: String,
    /// The one-time secret to enroll with when there is no credential yet.
    pub enrollment_secret: Option<String>,
    pub data_dir: PathBuf,
    pub health_addr: String,
    pub heartbeat: Duration,
    /// How often the host and the database are reconciled (`RECONCILE_SECONDS`).
    pub reconcile_every: Duration,
    /// The `manman-keeper` binary that holds each game so it outlives the agent
    /// (`HOST_KEEPER`; default: next to this binary). `None`: games are the agent's own
    /// children and end with it.
    pub keeper: Option<PathBuf>,
    /// Stop every game when the agent stops (`HOST_STOP_SESSIONS_ON_SHUTDOWN`, default
    /// false: a restart or upgrade of the agent leaves them running). Always true without a
    /// keeper, and at machine shutdown.
    pub stop_sessions_on_shutdown: bool,
    /// Console throttle and batching (`LOG_MAX_LINES_PER_SECOND`, `LOG_BATCH_LINES`,
    /// `LOG_BATCH_LINGER_MS`).
    pub console: ConsoleSettings,
    /// The ports `deploy --port auto` may give this host's games (`HOST_PORT_RANGE`,
    /// `LOW-HIGH`, default Agones' 7000-8000), reported in each heartbeat.
    pub port_range: (u16, u16),
    /// Which users games run as (`HOST_GAME_UID_RANGE`): one uid per deployment by default.
    pub game_users: game_users::GameUserPolicy,
    /// The cgroup subtree sessions run in, under the agent's own cgroup (`HOST_CGROUP`:
    /// `auto`, the default, uses `sessions`; a name uses that; `off` runs games without
    /// cgroups, sampled from /proc and unlimited).
    pub cgroup_subtree: Option<String>,
    /// How often each live deployment's directory is sized (`HOST_DISK_CHECK_SECONDS`).
    pub disk_check_every: Duration,
}

/// `HOST_CGROUP=auto|off|NAME`.
fn cgroup_subtree(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.string("HOST_CGROUP", "auto").as_str() {
        "off" => Ok(None),
        "auto" => Ok(Some("sessions".into())),
        name if manman_cgroup::tree::valid_name(name) => Ok(Some(name.to_string())),
        _ => Err(ConfigError::new(
            "HOST_CGROUP",
            "must be auto, off, or a plain cgroup name (letters, digits, '.', '_', '-')",
        )),
    }
}

/// Agones' game-server port range, the default of `HOST_PORT_RANGE`.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (7000, 8000);

/// `HOST_PORT_RANGE=7000-8000`.
fn port_range(env: &Env) -> Result<(u16, u16), ConfigError> {
    let (low, high) = DEFAULT_PORT_RANGE;
    let text = env.string("HOST_PORT_RANGE", &format!("{low}-{high}"));
    let parsed = text
        .split_once('-')
        .and_then(|(l, h)| Some((l.trim().parse::<u16>().ok()?, h.trim().parse::<u16>().ok()?)))
        .filter(|(l, h)| *l >= 1 && l <= h);
    parsed.ok_or_else(|| {
        ConfigError::new(
            "HOST_PORT_RANGE",
            "must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535 (e.g. 7000-8000)",
        )
    })
}

/// The keeper binary: `HOST_KEEPER` (`none` for no keeper), else `manman-keeper` next to the
/// running binary when it is there.
fn keeper_binary(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    match env.get("HOST_KEEPER") {
        Some("none") => Ok(None),
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(ConfigError::new("HOST_KEEPER", "is not an executable file"));
            }
            Ok(Some(path))
        }
        None => Ok(std::env::current_exe()
            .ok()
            .map(|exe| exe.with_file_name("manman-keeper"))
            .filter(|p| p.is_file())),
    }
}

impl HostConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let server_name = env.string("SERVER_NAME", &config::hostname());
        if server_name.is_empty() {
            return Err(ConfigError::new("SERVER_NAME", "must not be empty"));
        }
        Ok(HostConfig {
            rabbitmq_url: config::rabbitmq_url(env)?,
            api: Endpoint::from_env(env, "API_ADDRESS", "127.0.0.1:50051")?,
            server_name,
            enrollment_secret: identity::enrollment_secret(env)?,
            data_dir: PathBuf::from(env.string("HOST_DATA_DIR", "/var/lib/manman")),
            health_addr: config::health_address(env, 8081)?,
            heartbeat: env.seconds("HEARTBEAT_SECONDS", 5)?,
            reconcile_every: env.seconds("RECONCILE_SECONDS", 30)?,
            keeper: keeper_binary(env)?,
            stop_sessions_on_shutdown: env.flag("HOST_STOP_SESSIONS_ON_SHUTDOWN", false)?,
            console: ConsoleSettings::from_env(env)?,
            port_range: port_range(env)?,
            game_users: game_users::GameUserPolicy::from_env(env)?,
            cgroup_subtree: cgroup_subtree(env)?,
            disk_check_every: env.seconds("HOST_DISK_CHECK_SECONDS", 60)?,
        })
    }
}
