//! The log processor's intake: one queue per instance, `logs.ingest.{instance}`, bound to
//! `logs.session.*` and consumed in bursts of console batches into the sessions' rings and
//! the archiver.
//!
//! The queue is durable and declared when the daemon first starts, so it exists before any
//! host publishes a session's first line: nothing a game prints in its first milliseconds
//! is lost waiting for a per-session queue to be made (as it was before batching), and a
//! broker restart finds it still bound. While this instance is away the queue buffers, bounded
//! by `LOG_BUFFER_TTL` and `LOG_INGEST_MAX_BYTES` (drop-head; the lost lines show as a jump in
//! the host's numbering).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiquip::{AmqpValue, Channel, Delivery, FieldTable};
use crossbeam_channel::Sender;

use super::archiver::ArchiveItem;
use super::metrics::LogMetrics;
use super::registry::Registry;
use crate::bus::durable_queue::{DurableQueue, SideQueue};
use crate::bus::{topology, BatchContext, BatchHandler, BusError, OutgoingMessage};
use crate::logstore::ArchivedLine;
use crate::wire::{routing, ConsoleBatch};

/// The host that owns a session (`Ok(None)`: no such session): lines of sessions that do
/// not exist are dropped, and with `REQUIRE_HOST_BROKER_USERS` a session's lines must be
/// signed by its host.
pub type OwnerLookup =
    Arc<dyn Fn(i64) -> Result<Option<i64>, super::directory::DirectoryError> + Send + Sync>;

/// How long "no such session" is believed before asking again (a session created a moment
/// after its id was first seen is then taken).
const UNKNOWN_FOR: Duration = Duration::from_secs(30);

/// How often the broker is asked for the queue's depth.
const DEPTH_EVERY: Duration = Duration::from_secs(2);
/// Sessions whose signer is remembered; beyond, the memory starts over.
const MAX_KNOWN_SIGNERS: usize = 100_000;

/// The instance queue's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestQueueArgs {
    /// `x-message-ttl`: a batch older than this is dropped (`LOG_BUFFER_TTL`).
    pub message_ttl_ms: u32,
    /// `x-max-length-bytes` with drop-head (`LOG_INGEST_MAX_BYTES`).
    pub max_bytes: u64,
    /// `x-expires`: an instance gone for this long leaves no queue behind.
    pub expires_ms: u32,
}

pub struct IngestHandler {
    pub registry: Arc<Registry>,
    pub queue: String,
    pub args: IngestQueueArgs,
    pub archive: Option<Sender<ArchiveItem>>,
    pub debug_echo: bool,
    pub metrics: Arc<LogMetrics>,
    /// Who owns each session; batches of sessions it does not know are dropped (counted).
    pub session_owner: Option<OwnerLookup>,
    /// `REQUIRE_HOST_BROKER_USERS`: a batch is accepted only when signed (AMQP `user_id`) by
    /// the broker user of the session's host; others are dead-lettered.
    pub require_signed: bool,
    signers: HashMap<i64, (Signer, Instant)>,
    depth_checked: Option<Instant>,
}

impl IngestHandler {
    pub fn new(
        registry: Arc<Registry>,
        instance: &str,
        args: IngestQueueArgs,
        metrics: Arc<LogMetrics>,
    ) -> Self {
        IngestHandler {
            registry,
            queue: routing::log_ingest_queue(instance),
            args,
            archive: None,
            debug_echo: false,
            metrics,
            session_owner: None,
            require_signed: false,
            signers: HashMap::new(),
            depth_checked: None,
        }
    }

    /// Who may sign the session's lines (asked once per session; an unknown one again after
    /// [`UNKNOWN_FOR`]). A session with an open ring is known without asking.
    fn signer(&mut self, session_id: i64) -> Result<Signer, BusError> {
        let Some(owner_of) = &self.session_owner else {
            return Ok(Signer::Anyone);
        };
        if !self.require_signed && self.registry.is_open(session_id) {
            return Ok(Signer::Anyone);
        }
        match self.signers.get(&session_id) {
            Some((Signer::Nobody, at)) if at.elapsed() >= UNKNOWN_FOR => {}
            Some((s, _)) => return Ok(s.clone()),
            None => {}
        }
        // Unreachable directory: reconnect and retry later; the batch waits in the queue.
        let signer = match owner_of(session_id).map_err(|e| BusError::Handler {
            what: format!("cannot tell whose session {session_id} is"),
            source: e.into(),
        })? {
            Some(server_id) if self.require_signed => {
                Signer::Only(routing::host_broker_user(server_id))
            }
            Some(_) => Signer::Anyone,
            None => Signer::Nobody,
        };
        if self.signers.len() >= MAX_KNOWN_SIGNERS {
            self.signers.clear();
        }
        self.signers
            .insert(session_id, (signer.clone(), Instant::now()));
        Ok(signer)
    }

    /// The batch in a delivery (`None`: its session does not exist, dropped), or why it goes
    /// to the dead-letter queue.
    fn read(&mut self, d: &Delivery) -> Result<Result<Option<ConsoleBatch>, String>, BusError> {
        let batch = match ConsoleBatch::decode(&d.body) {
            Ok(b) => b,
            Err(reason) => return Ok(Err(reason)),
        };
        if routing::trailing_id(&d.routing_key) != Some(batch.session_id) {
            return Ok(Err(format!(
                "session_id {} published with routing key {}",
                batch.session_id, d.routing_key
            )));
        }
        let signer = self.signer(batch.session_id)?;
        if matches!(signer, Signer::Nobody) {
            // Invented ids would each get a ring: drop them, bounded and counted, not kept.
            self.metrics.unknown_session_batches.inc();
            return Ok(Ok(None));
        }
        Ok(signer
            .check(d.properties.user_id().as_deref())
            .map(|_| Some(batch)))
    }

    fn report_depth(&mut self, channel: &Channel) -> Result<(), BusError> {
        if self
            .depth_checked
            .is_some_and(|t| t.elapsed() < DEPTH_EVERY)
        {
            return Ok(());
        }
        self.depth_checked = Some(Instant::now());
        let queue = channel.queue_declare_passive(self.queue.as_str())?;
        if let Some(n) = queue.declared_message_count() {
            self.metrics.queue_depth.set(u64::from(n));
        }
        Ok(())
    }
}

impl BatchHandler for IngestHandler {
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError> {
        topology::declare_manman_exchange(channel)?;
        Ok(())
    }

    /// A quorum queue, so that no broker node's loss stops the lines (a classic queue on a
    /// dead node would also make every agent's console publish fail until that node is back).
    fn durable_queue(&self) -> Option<DurableQueue> {
        let mut table = FieldTable::new();
        table.insert(
            "x-message-ttl".into(),
            AmqpValue::LongUInt(self.args.message_ttl_ms),
        );
        table.insert(
            "x-max-length-bytes".into(),
            AmqpValue::LongLongInt(self.args.max_bytes as i64),
        );
        table.insert(
            "x-overflow".into(),
            AmqpValue::LongString("drop-head".into()),
        );
        table.insert(
            "x-expires".into(),
            AmqpValue::LongUInt(self.args.expires_ms),
        );
        Some(DurableQueue {
            name: self.queue.clone(),
            dead_letters_to: None,
            declare_dead_letter_queue: false,
            single_active_consumer: false,
            bindings: vec![(
                routing::MANMAN_EXCHANGE.into(),
                routing::SESSION_LOGS_PATTERN.into(),
            )],
            arguments: table,
        })
    }

    fn side_queues(&self) -> Vec<SideQueue> {
        vec![topology::log_dlq()]
    }

    fn handle(
        &mut self,
        ctx: &mut BatchContext<'_>,
        mut deliveries: Vec<Delivery>,
    ) -> Result<(), BusError> {
        let mut batches = Vec::with_capacity(deliveries.len());
        let mut dead = Vec::new();
        for d in &deliveries {
            match self.read(d)? {
                Ok(Some(batch)) => batches.push(batch),
                Ok(None) => {}
                Err(reason) => {
                    self.metrics.malformed.inc();
                    log::warn!(routing_key = d.routing_key.as_str(), reason = reason.as_str();
                        "dead-lettering a log message");
                    dead.push(
                        OutgoingMessage::raw("", routing::LOG_DLQ, d.body.clone())
                            .with_header(routing::DEAD_LETTER_REASON_HEADER, reason)
                            .with_header("x-original-routing-key", d.routing_key.clone()),
                    );
                }
            }
        }
        if !dead.is_empty() {
            ctx.publisher.publish_all(&dead, Duration::from_secs(10))?;
        }
        self.deliver(batches);
        if let Some(last) = deliveries.pop() {
            ctx.ack_through(last)?;
        }
        self.report_depth(ctx.channel)
    }
}

impl IngestHandler {
    /// Batches → rings (one lock each) and the archiver.
    fn deliver(&mut self, batches: Vec<ConsoleBatch>) {
        let ids: Vec<i64> = batches.iter().map(|b| b.session_id).collect();
        let rings = self.registry.rings_for(&ids);
        let mut newest = 0;
        for (batch, ring) in batches.into_iter().zip(rings) {
            let lines = batch.lines.len() as u64;
            self.metrics.lines_in.add(lines);
            newest = batch
                .lines
                .iter()
                .map(|l| l.timestamp)
                .fold(newest, i64::max);
            if self.debug_echo {
                for l in &batch.lines {
                    println!(
                        "[session {}] [{}] {}",
                        batch.session_id, l.source, l.message
                    );
                }
            }
            if let Some(archive) = &self.archive {
                let copy = batch
                    .lines
                    .iter()
                    .map(|l| ArchivedLine {
                        timestamp: l.timestamp,
                        source: l.source.clone(),
                        message: l.message.clone(),
                    })
                    .collect();
                if archive
                    .try_send(ArchiveItem::Lines(batch.session_id, copy))
                    .is_err()
                {
                    self.metrics.archive_dropped.add(lines);
                    let dropped = self.metrics.archive_dropped.get();
                    if dropped % 10_000 < lines {
                        log::warn!(dropped_total = dropped;
                            "archive buffer is full: lines are dropped from the archive (they still stream live)");
                    }
                }
            }
            let outcome = ring.push(batch.lines);
            self.metrics.lost_in_transit.add(outcome.lost_in_transit);
            self.metrics.throttled.add(outcome.throttled);
        }
        if newest > 0 {
            let lag = chrono::Utc::now().timestamp_millis() - newest;
            self.metrics.consumer_lag_ms.set(lag.max(0) as u64);
        }
    }
}

/// Who may publish a session's lines: anyone (no per-host broker users), exactly one broker
/// user, or nobody (the session does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    Anyone,
    Only(String),
    Nobody,
}

impl Signer {
    fn check(&self, user_id: Option<&str>) -> Result<(), String> {
        match (self, user_id) {
            (Signer::Anyone, _) => Ok(()),
            (Signer::Only(want), Some(user)) if user == want => Ok(()),
            (Signer::Only(want), Some(user)) => Err(format!(
                "published by broker user {user:?}, but only {want:?} may write this session's lines"
            )),
            (Signer::Only(want), None) => Err(format!(
                "not signed (no user_id): only {want:?} may write this session's lines"
            )),
            (Signer::Nobody, _) => Err("the session does not exist".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sessions_host_signs_its_lines_when_required() {
        assert!(Signer::Anyone.check(None).is_ok());
        let only = Signer::Only("manman-host-3".into());
        assert!(only.check(Some("manman-host-3")).is_ok());
        assert!(only
            .check(Some("manman-host-4"))
            .unwrap_err()
            .contains("\"manman-host-4\""));
        assert!(only.check(None).unwrap_err().contains("not signed"));
        assert!(Signer::Nobody.check(Some("manman-host-3")).is_err());
    }
}
