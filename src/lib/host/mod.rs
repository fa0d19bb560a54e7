//! `manman-host`: the agent on each game host. Registers through the API, consumes its command
//! queue `host-{id}-commands`, runs each session as a managed process (`procman`), and reports
//! session transitions, heartbeats and every output line to the `manman` exchange.
//!
//! Threads: `commands` (request/reply), `events` (process history → session statuses),
//! `heartbeat`, `publisher` (the one outbound connection), `sessions` (owns the shutdown
//! order), `health`.

mod publisher;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amiquip::{Channel, Delivery, FieldTable, QueueDeclareOptions};
use crossbeam_channel::Receiver;
use serde_json::json;

use crate::bus::{
    run_batch_consumer, topology, BatchContext, BatchHandler, BusError, ConsumerSettings,
    OutgoingMessage,
};
use crate::config::{self, ConfigError, Env};
use crate::health::{HealthServer, ReadinessCheck};
use crate::lifecycle::{ShutdownSignal, Supervisor};
use crate::procman::{
    parse_signal, FileStore, HistoryEvent, HistorySink, Manager, OutputSink, ProcessState,
    RestartPolicy, Source, Spec,
};
use crate::wire::commands::{CommandKind, CommandReply, SendInput, SessionRef, StartSession};
use crate::wire::{routing, HostStatus, SessionStatus};

pub use publisher::Outbound;

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub rabbitmq_url: String,
    pub api_address: String,
    pub server_name: String,
    pub data_dir: PathBuf,
    pub health_addr: String,
    pub heartbeat: Duration,
}

impl HostConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let server_name = env.string("SERVER_NAME", &config::hostname());
        if server_name.is_empty() {
            return Err(ConfigError::new("SERVER_NAME", "must not be empty"));
        }
        Ok(HostConfig {
            rabbitmq_url: config::rabbitmq_url(env)?,
            api_address: env.string("API_ADDRESS", "127.0.0.1:50051"),
            server_name,
            data_dir: PathBuf::from(env.string("HOST_DATA_DIR", "/var/lib/manman")),
            health_addr: format!("0.0.0.0:{}", env.port("HEALTH_PORT", 8081)?),
            heartbeat: env.seconds("HEARTBEAT_SECONDS", 5)?,
        })
    }
}

fn process_name(session_id: i64) -> String {
    format!("session-{session_id}")
}

fn session_of(process: &str) -> Option<i64> {
    process.strip_prefix("session-")?.parse().ok()
}

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

/// A status message with a unique id, so the processor can drop a re-sent duplicate.
fn status_message(
    server_id: i64,
    session_id: i64,
    status: SessionStatus,
    exit_code: Option<i32>,
) -> OutgoingMessage {
    OutgoingMessage::json(
        routing::MANMAN_EXCHANGE,
        &routing::session_status(session_id),
        &json!({"session_id": session_id, "status": status, "exit_code": exit_code}),
    )
    .with_message_id(format!(
        "host-{server_id}-{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros(),
        NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed)
    ))
}

fn host_message(server_id: i64, status: HostStatus) -> OutgoingMessage {
    OutgoingMessage::json(
        routing::MANMAN_EXCHANGE,
        &routing::host_status(server_id),
        &json!({"server_id": server_id, "status": status}),
    )
}

/// Output lines → `logs.session.{id}` (transient: live view; archival is the log processor's).
struct LogSink {
    out: Outbound,
}

impl OutputSink for LogSink {
    fn line(&self, process: &str, source: Source, line: &str) {
        let Some(session_id) = session_of(process) else {
            return;
        };
        let body = json!({
            "session_id": session_id,
            "timestamp": chrono::Utc::now().timestamp_millis(),
            "source": source.as_str(),
            "message": line,
        });
        self.out.log(
            OutgoingMessage::json(
                routing::MANMAN_EXCHANGE,
                &routing::session_logs(session_id),
                &body,
            )
            .transient(),
        );
    }
}

struct EventSink(crossbeam_channel::Sender<HistoryEvent>);

impl HistorySink for EventSink {
    fn record(&self, event: &HistoryEvent) {
        let _ = self.0.send(event.clone());
    }
}

/// The exit code to report: the process's own, or 128 + signal (the shell's convention).
fn exit_code(exit: Option<crate::procman::ExitInfo>) -> Option<i32> {
    exit.and_then(|e| e.code.or(e.signal.map(|s| 128 + s)))
}

/// Process history → session statuses (runs until the manager is gone).
fn report_events(server_id: i64, events: Receiver<HistoryEvent>, out: Outbound) {
    for event in events {
        let Some(session_id) = session_of(event.name()) else {
            continue;
        };
        let send = |status, code| out.send(status_message(server_id, session_id, status, code));
        match event {
            HistoryEvent::Running { .. } => send(SessionStatus::Running, None),
            HistoryEvent::Finished {
                state: ProcessState::Failed,
                last_exit,
                ..
            } => send(SessionStatus::Crashed, exit_code(last_exit)),
            HistoryEvent::Finished {
                last_exit,
                requested,
                ..
            } => {
                if !requested {
                    // It ended by itself, cleanly: the state machine still goes through stopping.
                    send(SessionStatus::Stopping, None);
                }
                send(SessionStatus::Stopped, exit_code(last_exit));
            }
            _ => {}
        }
    }
}

/// Executes commands from the control plane and replies to each.
struct CommandHandler {
    server_id: i64,
    manager: Arc<Manager>,
    data_dir: PathBuf,
    out: Outbound,
    /// Per session: the console stop command (if any) and the stop timeout.
    stop_plans: BTreeMap<i64, (Option<String>, Duration)>,
}

impl CommandHandler {
    fn execute(&mut self, kind: CommandKind, body: &[u8]) -> Result<(), String> {
        let bad = |e: serde_json::Error| format!("malformed command: {e}");
        match kind {
            CommandKind::Start => self.start(serde_json::from_slice(body).map_err(bad)?),
            CommandKind::Stop | CommandKind::Kill => {
                let r: SessionRef = serde_json::from_slice(body).map_err(bad)?;
                self.stop(r.session_id, kind == CommandKind::Kill)
            }
            CommandKind::SendInput => {
                let r: SendInput = serde_json::from_slice(body).map_err(bad)?;
                self.manager
                    .send_input(&process_name(r.session_id), r.input.as_bytes())
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn start(&mut self, cmd: StartSession) -> Result<(), String> {
        let dir = self.data_dir.join(format!("sgc-{}", cmd.sgc_id));
        let dir = match &cmd.working_dir {
            Some(d) if !d.is_empty() => dir.join(d),
            _ => dir,
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut spec = Spec::new(&process_name(cmd.session_id), &cmd.program, &[]);
        spec.args = cmd.args.clone();
        let mut env: BTreeMap<String, String> = cmd.env.clone();
        env.insert("MANMAN_SESSION_ID".into(), cmd.session_id.to_string());
        if let Some(p) = cmd.ports.first() {
            env.entry("PORT".into()).or_insert(p.host_port.to_string());
        }
        spec.env = env.into_iter().collect();
        spec.working_dir = Some(dir);
        spec.restart = cmd.restart_policy.parse::<RestartPolicy>()?;
        spec.start_duration = Duration::from_millis(cmd.start_duration_ms.into());
        spec.stop_signal = parse_signal(&cmd.stop_signal)?;
        spec.stop_timeout = Duration::from_secs(cmd.stop_timeout_seconds.max(1).into());
        self.out.send(status_message(
            self.server_id,
            cmd.session_id,
            SessionStatus::Starting,
            None,
        ));
        let timeout = spec.stop_timeout;
        self.manager.start(spec).map_err(|e| e.to_string())?;
        self.stop_plans.insert(
            cmd.session_id,
            (cmd.stop_command.filter(|s| !s.is_empty()), timeout),
        );
        Ok(())
    }

    /// Starts stopping in the background and returns at once: the console stop command (if the
    /// config has one), then the stop signal, then SIGKILL after the stop timeout.
    fn stop(&mut self, session_id: i64, kill: bool) -> Result<(), String> {
        let name = process_name(session_id);
        let status = self.manager.status(&name).map_err(|e| e.to_string())?;
        if !status.state.is_live() {
            return Err(format!("session {session_id} is not running here"));
        }
        self.out.send(status_message(
            self.server_id,
            session_id,
            SessionStatus::Stopping,
            None,
        ));
        let (console, timeout) = self
            .stop_plans
            .remove(&session_id)
            .unwrap_or((None, Duration::from_secs(30)));
        let manager = self.manager.clone();
        std::thread::Builder::new()
            .name(format!("stop-{session_id}"))
            .spawn(move || {
                if kill {
                    let _ = manager.stop(&name, Duration::ZERO);
                    return;
                }
                if let Some(command) = console {
                    let _ = manager.send_input(&name, format!("{}\n", command.trim()).as_bytes());
                    // Give the game its own clean shutdown first.
                    let until = std::time::Instant::now() + timeout;
                    while std::time::Instant::now() < until {
                        match manager.status(&name) {
                            Ok(s) if s.state.is_live() => {
                                std::thread::sleep(Duration::from_millis(50))
                            }
                            _ => return,
                        }
                    }
                }
                let _ = manager.stop(&name, timeout);
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl BatchHandler for CommandHandler {
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError> {
        let exchange = topology::declare_manman_exchange(channel)?;
        let queue = channel.queue_declare(
            routing::host_commands_queue(self.server_id),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
        )?;
        queue.bind(
            &exchange,
            format!("command.host.{}.#", self.server_id),
            FieldTable::new(),
        )?;
        Ok(())
    }

    fn handle(&mut self, ctx: &mut BatchContext<'_>, batch: Vec<Delivery>) -> Result<(), BusError> {
        for d in batch {
            let result = match CommandKind::from_routing_key(&d.routing_key) {
                Some(kind) => self.execute(kind, &d.body),
                None => Err(format!("unknown command {}", d.routing_key)),
            };
            if let Err(e) = &result {
                log::warn!(command = d.routing_key.as_str(); "command refused: {e}");
            }
            if let (Some(reply_to), Some(id)) =
                (d.properties.reply_to(), d.properties.correlation_id())
            {
                let reply = CommandReply {
                    correlation_id: id.clone(),
                    success: result.is_ok(),
                    error: result.err(),
                };
                let mut msg = OutgoingMessage::json(
                    "",
                    reply_to,
                    &serde_json::to_value(reply).expect("serialisable"),
                )
                .transient();
                msg.correlation_id = Some(id.clone());
                ctx.publisher.publish_all(&[msg], Duration::from_secs(10))?;
            }
            ctx.ack_through(d)?;
        }
        Ok(())
    }
}

/// Session counts for the heartbeat.
fn session_stats(manager: &Manager) -> serde_json::Value {
    let mut stats: BTreeMap<&'static str, u32> = BTreeMap::new();
    let all = manager.status_all("session-*");
    for s in &all {
        let key = match s.state {
            ProcessState::Stopped => "stopped",
            ProcessState::Starting => "starting",
            ProcessState::Running => "running",
            ProcessState::Stopping => "stopping",
            ProcessState::Backoff => "backoff",
            ProcessState::Failed => "failed",
        };
        *stats.entry(key).or_default() += 1;
    }
    let mut v = serde_json::to_value(stats).expect("serialisable");
    v["total"] = json!(all.len());
    v["running"] = json!(v.get("running").cloned().unwrap_or(json!(0)));
    v
}

pub struct RunningHost {
    pub server_id: i64,
    pub health_port: u16,
    pub commands_connected: Arc<AtomicBool>,
    pub dropped_logs: Arc<AtomicU64>,
}

/// Registers with the API (retrying while it starts), recovers from a previous crash, and
/// spawns the agent's threads.
pub fn start(config: HostConfig, supervisor: &mut Supervisor) -> Result<RunningHost, String> {
    log::info!(name = config.server_name.as_str(), api = config.api_address.as_str(); "starting host agent");
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create HOST_DATA_DIR {}: {e}",
            config.data_dir.display()
        )
    })?;
    let client = crate::api::client(&config.api_address);
    let mut server_id = None;
    for attempt in 0..30 {
        match client.register_server(&crate::proto::v1::RegisterServerRequest {
            name: config.server_name.clone(),
        }) {
            Ok(r) => {
                server_id = r.server.map(|s| s.server_id);
                break;
            }
            Err(e) => {
                log::warn!(
                    "cannot register with the API at {}: {e}",
                    config.api_address
                );
                std::thread::sleep(crate::retry::Backoff::reconnect().delay(attempt));
            }
        }
    }
    let server_id = server_id.ok_or("the API did not answer; giving up")?;
    log::info!(server_id = server_id; "registered");

    let (out, inbound) = publisher::channels();
    let dropped_logs = out.dropped_logs.clone();
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let (manager, recovered) = Manager::builder()
        .output(LogSink { out: out.clone() })
        .history(EventSink(events_tx))
        .store(FileStore::new(config.data_dir.join("processes.json")))
        .restart_recovered(false)
        .build()
        .map_err(|e| e.to_string())?;
    let manager = Arc::new(manager);
    // Sessions whose processes outlived a crash of the agent were just ended: they are lost.
    let mut reported_lost = std::collections::BTreeSet::new();
    for r in recovered {
        if let Some(session_id) = session_of(&r.name) {
            reported_lost.insert(session_id);
            log::warn!(session_id = session_id, pid = r.pid; "session's process survived an agent crash; ended it, reporting lost");
            out.send(status_message(
                server_id,
                session_id,
                SessionStatus::Lost,
                None,
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
    // Sessions the database still thinks are alive here, but that no process of ours backs
    // (e.g. the machine rebooted while the agent was down): they are lost. Pending ones are
    // left alone: their start command may still be on its way to us.
    match client.list_sessions(&crate::proto::v1::ListSessionsRequest {
        server_id,
        status: "starting,running,stopping".into(),
        limit: 500,
        ..Default::default()
    }) {
        Ok(live) => {
            for s in live.sessions {
                let known = manager
                    .status(&process_name(s.session_id))
                    .is_ok_and(|p| p.state.is_live());
                if !known && reported_lost.insert(s.session_id) {
                    log::warn!(session_id = s.session_id; "session is {} in the database but has no process here; reporting lost", s.status);
                    out.send(status_message(
                        server_id,
                        s.session_id,
                        SessionStatus::Lost,
                        None,
                    ));
                }
            }
        }
        Err(e) => log::warn!("cannot list this host's sessions to reconcile them: {e}"),
    }
    out.send(host_message(server_id, HostStatus::Online));

    let connected = Arc::new(AtomicBool::new(false));
    let manager_for_metrics = Arc::downgrade(&manager);
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
                Some(m) => process_metrics(&m.status_all("*")),
                None => String::new(),
            })),
        )?
    };
    let health_port = health.port();
    let spawn_err = |e: std::io::Error| format!("cannot spawn thread: {e}");
    supervisor
        .spawn("health", move |s| health.serve(s))
        .map_err(spawn_err)?;

    {
        let url = config.rabbitmq_url.clone();
        // Weak: the publisher must not keep the manager (whose sinks feed the publisher) alive.
        let manager = Arc::downgrade(&manager);
        supervisor
            .spawn("publisher", move |_| {
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
                            ProcessState::Starting | ProcessState::Backoff => {
                                SessionStatus::Starting
                            }
                            ProcessState::Stopping => SessionStatus::Stopping,
                            _ => continue,
                        };
                        if let Some(id) = session_of(&s.name) {
                            state.push(status_message(server_id, id, status, None));
                        }
                    }
                    state
                };
                publisher::run(&url, inbound, &resync, &never)
            })
            .map_err(spawn_err)?;
    }
    {
        let out = out.clone();
        supervisor
            .spawn("events", move |_| {
                report_events(server_id, events_rx, out);
                Ok(())
            })
            .map_err(spawn_err)?;
    }
    {
        let out = out.clone();
        let manager = manager.clone();
        let every = config.heartbeat;
        supervisor
            .spawn("heartbeat", move |shutdown| loop {
                let beat =
                    json!({"server_id": server_id, "session_stats": session_stats(&manager)});
                out.send(
                    OutgoingMessage::json(
                        routing::MANMAN_EXCHANGE,
                        &routing::host_health(server_id),
                        &beat,
                    )
                    .transient(),
                );
                if shutdown.wait(every) {
                    return Ok(());
                }
            })
            .map_err(spawn_err)?;
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
            out: out.clone(),
            stop_plans: BTreeMap::new(),
        };
        let flag = connected.clone();
        supervisor
            .spawn("commands", move |s| {
                run_batch_consumer(&settings, &mut handler, &s, &flag)
            })
            .map_err(spawn_err)?;
    }
    {
        let manager = manager.clone();
        supervisor
            .spawn("sessions", move |shutdown| {
                while !shutdown.wait(Duration::from_secs(3600)) {}
                log::info!("stopping sessions before going offline");
                for p in manager.status_all("session-*") {
                    if let (Some(id), true) = (session_of(&p.name), p.state.is_live()) {
                        out.send(status_message(server_id, id, SessionStatus::Stopping, None));
                    }
                }
                if let Err(e) = manager.shutdown() {
                    log::error!("sessions did not all stop cleanly: {e}");
                }
                out.send(host_message(server_id, HostStatus::Offline));
                Ok(())
            })
            .map_err(spawn_err)?;
    }
    Ok(RunningHost {
        server_id,
        health_port,
        commands_connected: connected,
        dropped_logs,
    })
}

/// `/metrics` of the host: managed processes by state, and their restarts.
fn process_metrics(statuses: &[crate::procman::Status]) -> String {
    use crate::procman::ProcessState as S;
    let mut out = String::new();
    let states = [
        (S::Stopped, "stopped"),
        (S::Starting, "starting"),
        (S::Running, "running"),
        (S::Stopping, "stopping"),
        (S::Backoff, "backoff"),
        (S::Failed, "failed"),
    ];
    let labels: Vec<(String, u64)> = states
        .iter()
        .map(|(state, name)| {
            let n = statuses.iter().filter(|s| s.state == *state).count() as u64;
            (format!("state=\"{name}\""), n)
        })
        .collect();
    let refs: Vec<(&str, u64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    crate::metrics::render_sample(
        &mut out,
        "manman_host_processes",
        "gauge",
        "Managed game-server processes by state.",
        &refs,
    );
    let restarts: u64 = statuses.iter().map(|s| u64::from(s.restarts)).sum();
    crate::metrics::render_sample(
        &mut out,
        "manman_host_process_restarts_total",
        "counter",
        "Automatic restarts of managed processes (current processes).",
        &[("", restarts)],
    );
    out
}
