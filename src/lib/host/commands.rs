//! The agent's command consumer: executes `command.host.{id}.session.*` and replies to each.
//! A command past its deadline is refused without acting (the API has given up on it and
//! ended the session); a start that cannot run reports the session `crashed` with the reason.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amiquip::{Channel, Delivery};

use super::backup::Backups;
use super::cgroups::SessionCgroups;
use super::disk;
use super::game_users::GameUsers;
use super::publisher::Outbound;
use super::reporting::{status_message, Report};
use super::sessions::{process_name, spec_for};
use crate::bus::durable_queue::{DurableQueue, SideQueue};
use crate::bus::{topology, BatchContext, BatchHandler, BusError, OutgoingMessage};
use crate::procman::{Manager, ProcError};
use crate::wire::commands::{
    CommandKind, CommandReply, Deadline, SendInput, SessionRef, StartSession,
};
use crate::wire::{routing, SessionStatus};

/// When this agent accepted each session's start (the reconciler must not stop a game the
/// database has not caught up with yet).
pub type Accepted = Arc<Mutex<HashMap<i64, Instant>>>;

pub struct CommandHandler {
    pub server_id: i64,
    pub manager: Arc<Manager>,
    pub data_dir: PathBuf,
    pub users: Arc<GameUsers>,
    /// The API's broker user: commands signed (AMQP `user_id`) by anyone else are refused.
    pub command_sender: String,
    pub out: Outbound,
    pub accepted: Accepted,
    pub backups: Arc<Backups>,
    pub cgroups: Arc<SessionCgroups>,
}

/// Why a command was not carried out; its text is the reply's `error`, which the API passes
/// on to the operator.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("unknown command {0}")]
    Unknown(String),
    #[error("malformed command: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("command expired {0} ms ago; not acted on (the sender gave up)")]
    Expired(i64),
    #[error("session {0} is already running here")]
    AlreadyRunning(i64),
    #[error("session {0} is not running here")]
    NotRunning(i64),
    #[error(transparent)]
    Process(#[from] ProcError),
    #[error("{0}")]
    Backup(String),
}

impl CommandHandler {
    fn execute(&mut self, kind: CommandKind, body: &[u8]) -> Result<(), CommandError> {
        let deadline: Deadline = serde_json::from_slice(body)?;
        if let Some(late) = deadline.expired_for(chrono::Utc::now().timestamp_millis()) {
            return Err(CommandError::Expired(late));
        }
        match kind {
            CommandKind::Start => self.start(serde_json::from_slice(body)?),
            CommandKind::Stop | CommandKind::Kill => {
                let r: SessionRef = serde_json::from_slice(body)?;
                self.stop(r.session_id, kind == CommandKind::Kill)
            }
            CommandKind::SendInput => {
                let r: SendInput = serde_json::from_slice(body)?;
                Ok(self
                    .manager
                    .send_input(&process_name(r.session_id), r.input.as_bytes())?)
            }
            // Accepted here, carried out in a thread of its own, reported to the API.
            CommandKind::Backup => self
                .backups
                .start_backup(serde_json::from_slice(body)?)
                .map_err(CommandError::Backup),
            CommandKind::Restore => self
                .backups
                .start_restore(serde_json::from_slice(body)?)
                .map_err(CommandError::Backup),
        }
    }

    /// Why a command must not even be considered: not signed (AMQP `user_id`, which the broker
    /// verifies) by the API's broker user, or without a deadline (it could be replayed late).
    fn refusal(&self, d: &Delivery) -> Option<String> {
        let signer = d.properties.user_id().as_deref();
        if signer != Some(self.command_sender.as_str()) {
            return Some(format!(
                "not sent by the API's broker user {:?} (user_id {:?})",
                self.command_sender, signer
            ));
        }
        match serde_json::from_slice::<Deadline>(&d.body) {
            Ok(Deadline {
                expires_at_ms: Some(_),
            }) => None,
            Ok(_) => {
                Some("no expires_at_ms: a command without a deadline is never acted on".into())
            }
            Err(e) => Some(format!("malformed command: {e}")),
        }
    }

    fn report(&self, session_id: i64, status: SessionStatus, report: Report) {
        self.out
            .send(status_message(self.server_id, session_id, status, report));
    }

    /// Accepts the session: reports `starting`, then runs it. If it cannot run (a config the
    /// host cannot use, an unusable working directory, a deployment over its disk limit) it
    /// is reported `crashed` with the reason; a program that cannot be executed is reported the same way by the process
    /// manager's history.
    fn start(&mut self, cmd: StartSession) -> Result<(), CommandError> {
        let name = process_name(cmd.session_id);
        if self.manager.status(&name).is_ok_and(|s| s.state.is_live()) {
            return Err(CommandError::AlreadyRunning(cmd.session_id));
        }
        self.report(cmd.session_id, SessionStatus::Starting, Report::default());
        crate::sync::lock(&self.accepted).insert(cmd.session_id, Instant::now());
        let cgroup = self.cgroups.of(cmd.session_id);
        let started = spec_for(&cmd, &self.data_dir, &self.users, cgroup)
            .and_then(|spec| {
                let dir = spec.labels.get(disk::LABEL_DIR).map(PathBuf::from);
                disk::admit(&dir.unwrap_or_default(), cmd.process.limits.disk_max_bytes)?;
                Ok(spec)
            })
            .and_then(|spec| {
                self.manager
                    .start(spec)
                    .map_err(|e| crate::errors::chain(&e))
            });
        if let Err(reason) = started {
            log::warn!(session_id = cmd.session_id; "session cannot start: {reason}");
            self.report(
                cmd.session_id,
                SessionStatus::Crashed,
                Report {
                    reason: Some(reason),
                    ..Report::default()
                },
            );
        }
        Ok(())
    }

    /// Starts the process manager's stop plan (console command, signal, SIGKILL at the stop
    /// timeout) or a kill, and returns at once; `stopping` is reported before anything is sent.
    fn stop(&mut self, session_id: i64, kill: bool) -> Result<(), CommandError> {
        let name = process_name(session_id);
        let status = self.manager.status(&name)?;
        if !status.state.is_live() {
            return Err(CommandError::NotRunning(session_id));
        }
        self.report(session_id, SessionStatus::Stopping, Report::default());
        match self.manager.request_stop(&name, kill) {
            // It ended in between: its end is reported by the history.
            Ok(()) | Err(ProcError::NotRunning(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl BatchHandler for CommandHandler {
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError> {
        topology::manman_exchange_exists(channel)?;
        Ok(())
    }

    fn side_queues(&self) -> Vec<SideQueue> {
        vec![topology::refused_commands_queue(self.server_id)]
    }

    fn durable_queue(&self) -> Option<DurableQueue> {
        Some(topology::host_commands_queue(self.server_id))
    }

    fn handle(&mut self, ctx: &mut BatchContext<'_>, batch: Vec<Delivery>) -> Result<(), BusError> {
        for d in batch {
            if let Some(reason) = self.refusal(&d) {
                // No reply (nobody legitimate waits for one); kept with the reason in the
                // refused-commands queue for the operator to inspect.
                log::warn!(command = d.routing_key.as_str(); "command refused: {reason}");
                let refused = OutgoingMessage::raw(
                    "",
                    &routing::host_refused_commands_queue(self.server_id),
                    d.body.clone(),
                )
                .with_header(routing::DEAD_LETTER_REASON_HEADER, reason)
                .with_header("x-original-routing-key", d.routing_key.clone());
                ctx.publisher
                    .publish_all(&[refused], Duration::from_secs(10))?;
                ctx.ack_through(d)?;
                continue;
            }
            let result = match CommandKind::from_routing_key(&d.routing_key) {
                Some(kind) => self.execute(kind, &d.body),
                None => Err(CommandError::Unknown(d.routing_key.clone())),
            };
            let result = result.map_err(|e| crate::errors::chain(&e));
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
