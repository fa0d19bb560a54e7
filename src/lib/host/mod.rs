//! `manman-host`: the agent on each game host. Registers through the API, consumes its command
//! queue `host-{id}-commands`, runs each session as a managed process (`procman`), reports
//! session transitions, heartbeats and every output line to the `manman` exchange, and keeps
//! the host and the database in agreement (recovery.rs).
//!
//! Threads: `commands` (request/reply), `events` (process history → session statuses),
//! `heartbeat`, `reconciler`, `publisher` (the one outbound connection), `sessions` (owns the
//! shutdown order), `health`.

mod commands;
pub mod console;
pub mod game_users;
pub mod identity;
pub mod publisher;
pub mod recovery;
mod reporting;
pub mod sessions;
pub mod stats;
pub mod users;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::{run_batch_consumer, ConsumerSettings, OutgoingMessage};
use crate::config::{self, ConfigError, Env};
use crate::grpc::Endpoint;
use crate::health::{HealthServer, ReadinessCheck};
use crate::keeper::KeeperLauncher;
use crate::lifecycle::{ShutdownSignal, Supervisor};
use crate::procman::{FileStore, Manager, ProcessState};
use crate::wire::game_process::MAX_STOP_TIMEOUT;
use crate::wire::{routing, HealthUpdate, HostCapacity, HostStatus, SessionStatus};

use commands::CommandHandler;
use console::{ConsoleLines, ConsoleSettings};
use recovery::Reconciler;
use reporting::{
    console_metrics, host_message, process_metrics, report_events, session_stats, status_message,
    EventSink, LogSink, Report,
};
use sessions::session_of;

pub use publisher::Outbound;

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

/// Whether the machine is shutting down (systemd says `stopping`): then games get their stop
/// command and timeout from us before systemd's final kill.
fn machine_is_shutting_down() -> bool {
    if !std::path::Path::new("/run/systemd/system").exists() {
        return false;
    }
    std::process::Command::new("systemctl")
        .arg("is-system-running")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "stopping")
        .unwrap_or(false)
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
        })
    }
}

/// `HOST_DATA_DIR`, mode 0711: each game reaches its own deployment's directory through it but
/// cannot list it, and the agent's files in it (credential, keepers, uid map) are 0600/0700.
fn prepare_data_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)))
        .map_err(|e| format!("cannot prepare HOST_DATA_DIR {}: {e}", dir.display()))
}

pub struct RunningHost {
    pub server_id: i64,
    pub health_port: u16,
    pub commands_connected: Arc<AtomicBool>,
    /// The console queue (dropped and throttled lines are counted there).
    pub console: Arc<ConsoleLines>,
}

/// Registers with the API (retrying while it starts), recovers from a previous crash, and
/// spawns the agent's threads.
pub fn start(config: HostConfig, supervisor: &mut Supervisor) -> Result<RunningHost, String> {
    log::info!(name = config.server_name.as_str(), api = format!("{:?}", config.api).as_str(); "starting host agent");
    // Nobody else may read our environment, memory or descriptors: not even a process of
    // our own user (a game run with HOST_GAME_UID_RANGE=off).
    crate::lifecycle::forbid_inspection();
    prepare_data_dir(&config.data_dir)?;
    let game_users = Arc::new(game_users::GameUsers::open(
        config.game_users.clone(),
        &config.data_dir,
    )?);
    match game_users.policy() {
        game_users::GameUserPolicy::Dynamic { low, high } => {
            log::info!(low = low, high = high; "games run as their deployment's own uid")
        }
        game_users::GameUserPolicy::AgentUser => log::warn!(
            "HOST_GAME_UID_RANGE=off: games without run_as run as this agent's user and can \
             read its files; use it on development machines only"
        ),
    }
    let client = config.api.api_client();
    let credential = identity::credential(
        &client,
        &config.server_name,
        &config.data_dir,
        config.enrollment_secret.as_deref(),
    )?;
    let identity::Registered {
        server_id,
        command_sender,
    } = identity::register(&client, &config.server_name, &credential, &config.data_dir)?;
    log::info!(server_id = server_id; "registered");

    let (out, inbound) = publisher::channels(&config.console);
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let mut builder = Manager::builder()
        .output(LogSink { out: out.clone() })
        .history(EventSink(events_tx))
        .store(FileStore::new(config.data_dir.join("processes.json")))
        .restart_recovered(false);
    match &config.keeper {
        Some(binary) => {
            log::info!(keeper = binary.display().to_string().as_str(); "games are held by keepers: they outlive this agent");
            builder = builder.launcher(KeeperLauncher {
                binary: binary.clone(),
                root: config.data_dir.join("keepers"),
            });
        }
        None => log::warn!("no keeper (HOST_KEEPER): games end when this agent does"),
    }
    let (manager, recovered) = builder.build().map_err(|e| e.to_string())?;
    let manager = Arc::new(manager);
    let accepted: commands::Accepted = Default::default();
    // Sessions whose games outlived the agent are supervised again (their keepers held them);
    // games found running without a keeper were just ended: their sessions are lost.
    for r in recovered {
        if r.adopted {
            log::info!(process = r.name.as_str(), pid = r.pid; "re-attached to a game that outlived the previous agent");
            continue;
        }
        if let Some(session_id) = session_of(&r.name) {
            log::warn!(session_id = session_id, pid = r.pid; "session's process survived an agent crash; ended it, reporting lost");
            out.send(status_message(
                server_id,
                session_id,
                SessionStatus::Lost,
                Report {
                    reason: Some(
                        "its game outlived a crash of the host agent and was ended".into(),
                    ),
                    ..Report::default()
                },
            ));
        }
        let _ = manager.remove(&r.name);
    }
    // Anything else stored but not running is history from a previous run.
    for s in manager.status_all("session-*") {
        if !s.state.is_live() {
            let _ = manager.remove(&s.name);
        }
    }
    let reconciler = Reconciler {
        server_id,
        manager: manager.clone(),
        out: out.clone(),
        accepted: accepted.clone(),
        api: client,
        credential,
    };
    match reconciler.run_once() {
        Ok(_) => {}
        Err(e @ recovery::ReconcileError::CredentialRevoked(_)) => return Err(e.to_string()),
        Err(e) => log::warn!("cannot reconcile with the database at start: {e}; will retry"),
    }
    out.send(host_message(server_id, HostStatus::Online));

    let connected = Arc::new(AtomicBool::new(false));
    let manager_for_metrics = Arc::downgrade(&manager);
    let console = out.console.clone();
    let console_for_metrics = out.console.clone();
    let health = {
        let connected = connected.clone();
        HealthServer::bind(
            &config.health_addr,
            vec![ReadinessCheck::flag(
                "broker",
                connected,
                "command consumer is not connected",
            )],
            Some(Arc::new(move || match manager_for_metrics.upgrade() {
                Some(m) => {
                    process_metrics(&m.status_all("*"))
                        + &console_metrics(&console_for_metrics)
                        + &stats::session_metrics(&live_games(&m))
                }
                None => String::new(),
            })),
        )?
    };
    let health_port = health.start(supervisor)?;

    {
        let url = config.rabbitmq_url.clone();
        // Weak: the publisher must not keep the manager (whose sinks feed the publisher) alive.
        let manager = Arc::downgrade(&manager);
        supervisor.spawn("publisher", move |_| {
            // Ends when every sender is gone (after the sessions were stopped and reported),
            // not on the shutdown signal: nothing queued is thrown away.
            let (_keep, never) = ShutdownSignal::new();
            let resync = || {
                let mut state = vec![host_message(server_id, HostStatus::Online)];
                let Some(manager) = manager.upgrade() else {
                    return state;
                };
                for s in manager.status_all("session-*") {
                    let status = match s.state {
                        ProcessState::Running => SessionStatus::Running,
                        ProcessState::Starting | ProcessState::Backoff => SessionStatus::Starting,
                        ProcessState::Stopping => SessionStatus::Stopping,
                        _ => continue,
                    };
                    if let Some(id) = session_of(&s.name) {
                        state.push(status_message(server_id, id, status, Report::default()));
                    }
                }
                state
            };
            publisher::run(&url, inbound, &resync, &never)
        })?;
    }
    {
        let out = out.clone();
        supervisor.spawn("events", move |_| {
            report_events(server_id, events_rx, out);
            Ok(())
        })?;
    }
    {
        let out = out.clone();
        let manager = manager.clone();
        let every = config.heartbeat;
        let (port_range_low, port_range_high) = config.port_range;
        supervisor.spawn("heartbeat", move |shutdown| {
            let mut cpu = stats::CpuRates::default();
            loop {
                // The processor reads the same struct (wire::messages).
                let beat = HealthUpdate {
                    server_id,
                    session_stats: session_stats(&manager),
                    sent_at_ms: Some(chrono::Utc::now().timestamp_millis()),
                    sessions: cpu.sample(&live_games(&manager)),
                    capacity: stats::memory().map(|(total, available)| HostCapacity {
                        memory_total_bytes: total,
                        memory_available_bytes: available,
                        port_range_low,
                        port_range_high,
                    }),
                };
                out.send(
                    OutgoingMessage::json(
                        routing::MANMAN_EXCHANGE,
                        &routing::host_health(server_id),
                        &serde_json::to_value(beat).expect("a heartbeat serialises"),
                    )
                    .transient(),
                );
                if shutdown.wait(every) {
                    return Ok(());
                }
            }
        })?;
    }
    {
        let settings = ConsumerSettings {
            url: config.rabbitmq_url.clone(),
            queue: routing::host_commands_queue(server_id),
            prefetch: 20,
            max_batch: 20,
            who: "host-commands",
        };
        let mut handler = CommandHandler {
            server_id,
            manager: manager.clone(),
            data_dir: config.data_dir.clone(),
            users: game_users.clone(),
            command_sender,
            out: out.clone(),
            accepted,
        };
        let flag = connected.clone();
        supervisor.spawn("commands", move |s| {
            run_batch_consumer(&settings, &mut handler, &s, &flag)
        })?;
    }
    {
        let every = config.reconcile_every;
        supervisor.spawn("reconciler", move |shutdown| {
            while !shutdown.wait(every) {
                match reconciler.run_once() {
                    Ok(_) => {}
                    // Nothing this agent does is accepted any more: stop, saying why.
                    Err(e @ recovery::ReconcileError::CredentialRevoked(_)) => {
                        return Err(e.to_string())
                    }
                    Err(e) => log::warn!("reconciliation skipped: {e}"),
                }
            }
            Ok(())
        })?;
    }
    {
        let manager = manager.clone();
        let stop_games = config.stop_sessions_on_shutdown || config.keeper.is_none();
        supervisor
            .spawn("sessions", move |shutdown| {
                while !shutdown.wait(Duration::from_secs(3600)) {}
                if !stop_games && !machine_is_shutting_down() {
                    log::info!("leaving the games to their keepers (HOST_STOP_SESSIONS_ON_SHUTDOWN=false); the next agent re-attaches");
                    if let Err(e) = manager.leave_running() {
                        log::error!("could not let go of every game cleanly: {e}");
                    }
                    out.send(host_message(server_id, HostStatus::Offline));
                    return Ok(());
                }
                log::info!("stopping sessions before going offline");
                for p in manager.status_all("session-*") {
                    if let (Some(id), true) = (session_of(&p.name), p.state.is_live()) {
                        out.send(status_message(
                            server_id,
                            id,
                            SessionStatus::Stopping,
                            Report::default(),
                        ));
                    }
                }
                if let Err(e) = manager.shutdown() {
                    log::error!("sessions did not all stop cleanly: {e}");
                }
                out.send(host_message(server_id, HostStatus::Offline));
                Ok(())
            })
            ?;
    }
    Ok(RunningHost {
        server_id,
        health_port,
        commands_connected: connected,
        console,
    })
}

/// The live sessions and their games' pids.
fn live_games(manager: &Manager) -> Vec<(i64, u32)> {
    manager
        .status_all("session-*")
        .iter()
        .filter(|s| s.state.is_live())
        .filter_map(|s| Some((session_of(&s.name)?, s.pid?)))
        .collect()
}
