//! `manman-host`: the agent on each game host. Registers through the API, consumes its command
//! queue `host-{id}-commands`, runs each session as a managed process (`procman`), reports
//! session transitions, heartbeats and every output line to the `manman` exchange, and keeps
//! the host and the database in agreement (recovery.rs).
//!
//! Threads: `commands` (request/reply, commands.rs), `events` (process history → session
//! statuses, reporting.rs), `heartbeat` (heartbeat.rs), `disk` (disk.rs), `players`
//! (players/), `reconciler` (recovery.rs),
//! `publisher` (the one outbound connection, publisher.rs), `sessions` (owns the shutdown
//! order, shutdown.rs), `health`. [`start`] wires them, in the order written there.

mod backup;
pub mod cgroups;
pub mod check;
mod commands;
mod config;
pub mod console;
pub mod disk;
pub mod game_users;
mod heartbeat;
pub mod identity;
pub mod line_watch;
pub mod players;
pub mod publisher;
pub mod recovery;
mod reporting;
pub mod sessions;
mod shutdown;
pub mod stats;
pub mod users;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::bus::{spawn_consumer, ConsumerSettings};
use crate::health::{HealthServer, ReadinessCheck};
use crate::keeper::KeeperLauncher;
use crate::lifecycle::{ShutdownSignal, Supervisor};
use crate::procman::{FileStore, Manager, Recovered};
use crate::wire::routing;
use crate::wire::HostStatus;

use commands::CommandHandler;
use console::ConsoleLines;
use game_users::{GameUserPolicy, GameUsers};
use publisher::Inbound;
use recovery::Reconciler;
use reporting::{
    console_metrics, current_state, host_message, process_metrics, report_events, EventSink,
    LogSink,
};
use sessions::live_games;

pub use config::{HostConfig, DEFAULT_PORT_RANGE, DRAIN_DEADLINE};
pub use publisher::Outbound;

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
    let game_users = open_game_users(&config)?;
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

    let cgroups = Arc::new(cgroups::SessionCgroups::open(
        config.cgroup_subtree.as_deref(),
    ));
    let disk_usage = Arc::new(disk::DiskUsage::default());
    let player_counts = Arc::new(players::PlayerCounts::default());
    let (out, inbound) = publisher::channels(&config.console);
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let watchers = Arc::new(line_watch::LineWatchers::default());
    let (manager, recovered) =
        process_manager(&config, &out, watchers.clone(), EventSink(events_tx))?;
    recovery::settle_recovered(server_id, &manager, recovered, &out);
    // Groups of sessions the manager does not know (their keeper died while no agent was
    // here). Those it adopted are kept whatever their state yet: an adopted game's runner
    // marks it running a moment later, and a group swept meanwhile would kill it.
    let known: Vec<i64> = manager
        .status_all("session-*")
        .iter()
        .filter_map(|s| sessions::session_of(&s.name))
        .collect();
    cgroups.sweep(&known);
    let accepted: commands::Accepted = Default::default();
    let backups = Arc::new(backup::Backups::new(
        manager.clone(),
        config.data_dir.clone(),
        client.clone(),
        credential.clone(),
        watchers.clone(),
    ));
    backups.remove_left_snapshots();
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
    let health_port = serve_health(
        &config,
        &manager,
        &out.console,
        Metered {
            cgroups: cgroups.clone(),
            disk: disk_usage.clone(),
            players: player_counts.clone(),
        },
        &connected,
        supervisor,
    )?;
    spawn_publisher(&config, server_id, &manager, inbound, supervisor)?;
    {
        let (out, cgroups) = (out.clone(), cgroups.clone());
        supervisor.spawn("events", move |_| {
            report_events(server_id, events_rx, out, cgroups);
            Ok(())
        })?;
    }
    {
        let beat = heartbeat::Heartbeat {
            server_id,
            manager: manager.clone(),
            out: out.clone(),
            every: config.heartbeat,
            port_range: config.port_range,
            cgroups: cgroups.clone(),
            disk: disk_usage.clone(),
            players: player_counts.clone(),
        };
        supervisor.spawn("heartbeat", move |shutdown| beat.run(&shutdown))?;
    }
    {
        let (counts, manager, watchers) = (player_counts, manager.clone(), watchers.clone());
        supervisor.spawn("players", move |shutdown| {
            players::run(counts, manager, watchers, &shutdown)
        })?;
    }
    {
        let (usage, manager, console) = (disk_usage, manager.clone(), out.console.clone());
        let every = config.disk_check_every;
        supervisor.spawn("disk", move |shutdown| {
            disk::run(usage, manager, console, every, &shutdown)
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
        let handler = CommandHandler {
            server_id,
            manager: manager.clone(),
            data_dir: config.data_dir.clone(),
            users: game_users,
            command_sender,
            out: out.clone(),
            accepted,
            backups,
            cgroups: cgroups.clone(),
        };
        spawn_consumer(supervisor, "commands", settings, handler, connected.clone())?;
    }
    {
        let every = config.reconcile_every;
        supervisor.spawn("reconciler", move |shutdown| {
            reconciler.run_every(every, &shutdown)
        })?;
    }
    let console = out.console.clone();
    let stop_games = config.stop_sessions_on_shutdown || config.keeper.is_none();
    supervisor.spawn("sessions", move |shutdown| {
        let result = shutdown::run(server_id, manager, out, stop_games, &shutdown);
        cgroups.close();
        result
    })?;
    Ok(RunningHost {
        server_id,
        health_port,
        commands_connected: connected,
        console,
    })
}

/// The users games run as (`HOST_GAME_UID_RANGE`), said once in the log.
fn open_game_users(config: &HostConfig) -> Result<Arc<GameUsers>, String> {
    let users = GameUsers::open(config.game_users.clone(), &config.data_dir)?;
    match users.policy() {
        GameUserPolicy::Dynamic { low, high } => {
            log::info!(low = low, high = high; "games run as their deployment's own uid")
        }
        GameUserPolicy::AgentUser => log::warn!(
            "HOST_GAME_UID_RANGE=off: games without run_as run as this agent's user and can \
             read its files; use it on development machines only"
        ),
    }
    Ok(Arc::new(users))
}

/// The process manager that runs the sessions: output to the console queue, history to
/// `events`, state in `processes.json`, games held by keepers when there is one. Returns what
/// it found of a previous agent's games.
fn process_manager(
    config: &HostConfig,
    out: &Outbound,
    watchers: Arc<line_watch::LineWatchers>,
    events: EventSink,
) -> Result<(Arc<Manager>, Vec<Recovered>), String> {
    let mut builder = Manager::builder()
        .output(LogSink {
            out: out.clone(),
            watchers,
        })
        .history(events)
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
    let (manager, recovered) = builder.build().map_err(|e| crate::errors::chain(&e))?;
    Ok((Arc::new(manager), recovered))
}

/// What `/metrics` reads besides the processes and the console: the cgroups and disk sizes.
struct Metered {
    cgroups: Arc<cgroups::SessionCgroups>,
    disk: Arc<disk::DiskUsage>,
    players: Arc<players::PlayerCounts>,
}

/// `/healthz`, `/readyz` (ready once the command consumer is connected) and `/metrics` (the
/// processes, the console queue, each live game's resources). Returns the port.
fn serve_health(
    config: &HostConfig,
    manager: &Arc<Manager>,
    console: &Arc<ConsoleLines>,
    metered: Metered,
    connected: &Arc<AtomicBool>,
    supervisor: &mut Supervisor,
) -> Result<u16, String> {
    // Weak: the health server must not keep the manager alive past the shutdown.
    let manager = Arc::downgrade(manager);
    let console = console.clone();
    let health = HealthServer::bind(
        &config.health_addr,
        vec![ReadinessCheck::flag(
            "broker",
            connected.clone(),
            "command consumer is not connected",
        )],
        Some(Arc::new(move || match manager.upgrade() {
            Some(m) => {
                process_metrics(&m.status_all("*"))
                    + &console_metrics(&console)
                    + &stats::session_metrics(&metered.cgroups.games(&live_games(&m)))
                    + &metered.cgroups.metrics()
                    + &metered.disk.metrics()
                    + &metered.players.metrics()
            }
            None => String::new(),
        })),
    )?;
    Ok(health.start(supervisor)?)
}

/// The `publisher` thread: the one outbound connection. It ends when every sender is gone
/// (after the sessions were stopped and reported), not on the shutdown signal: nothing
/// queued is thrown away. After a reconnect it sends the host's current state again.
fn spawn_publisher(
    config: &HostConfig,
    server_id: i64,
    manager: &Arc<Manager>,
    inbound: Inbound,
    supervisor: &mut Supervisor,
) -> Result<(), String> {
    let url = config.rabbitmq_url.clone();
    // Weak: the publisher must not keep the manager (whose sinks feed the publisher) alive.
    let manager = Arc::downgrade(manager);
    supervisor.spawn("publisher", move |_| {
        let (_keep, never) = ShutdownSignal::new();
        let resync = || match manager.upgrade() {
            Some(manager) => current_state(server_id, &manager),
            None => vec![host_message(server_id, HostStatus::Online)],
        };
        publisher::run(&url, inbound, &resync, &never)
    })?;
    Ok(())
}
