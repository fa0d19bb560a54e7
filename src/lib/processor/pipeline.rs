//! The consumer side of the processor: applies a batch of deliveries in one transaction
//! (state changes + outbox rows + inbox ids), dead-letters what can never apply, then acks.
//!
//! Failure policy:
//! - permanent (malformed, unknown entity, invalid transition, a statement the DB rejects):
//!   dead-lettered to `processor-events-dlq` with the reason in a header, never requeued;
//! - retryable (deadlock, serialization failure): retried `max_attempts` times, then
//!   dead-lettered;
//! - database outage: the batch waits (unacked) and is retried until the database is back or the
//!   processor stops; nothing is counted against the messages, nothing is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amiquip::{Channel, Delivery};
use crossbeam_channel::Sender;

use super::handlers::{Envelope, Handled, HandlerRegistry, SenderCheck};
use super::metrics::ProcessorMetrics;
use crate::bus::durable_queue::DurableQueue;
use crate::bus::{topology, BatchContext, BatchHandler, BusError, OutgoingMessage};
use crate::db::outbox::OutboxEvent;
use crate::db::{inbox, outbox, CachedConnection, DbPool, FailureKind};
use crate::lifecycle::ShutdownSignal;
use crate::retry::Backoff;
use crate::wire::routing;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Applied,
    Duplicate,
    DeadLetter(String),
}

/// A database failure while applying a batch.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("no database connection: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("{0}")]
    Db(#[from] postgres::Error),
}

impl BatchError {
    fn kind(&self) -> FailureKind {
        match self {
            BatchError::Pool(_) => FailureKind::Outage,
            BatchError::Db(e) => crate::db::classify(e),
        }
    }
}

pub struct EventPipeline {
    registry: HandlerRegistry,
    pool: DbPool,
    conn: Option<CachedConnection>,
    metrics: Arc<ProcessorMetrics>,
    relay_wakeup: Sender<()>,
    /// Attempts for a retryable failure before the message is dead-lettered.
    pub max_attempts: u32,
    backoff: Backoff,
}

impl EventPipeline {
    pub fn new(
        pool: DbPool,
        metrics: Arc<ProcessorMetrics>,
        relay_wakeup: Sender<()>,
        senders: SenderCheck,
        history_bucket_seconds: i32,
    ) -> Self {
        EventPipeline {
            registry: HandlerRegistry::standard(senders, history_bucket_seconds),
            pool,
            conn: None,
            metrics,
            relay_wakeup,
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 2.0),
        }
    }

    /// Applies deliveries in order. Fails only on shutdown during a database outage.
    pub fn apply(
        &mut self,
        envelopes: &[Envelope<'_>],
        shutdown: &ShutdownSignal,
    ) -> Result<Vec<Verdict>, BusError> {
        // Fast path: the whole batch in one transaction.
        match self.apply_with_outage_wait(envelopes, shutdown)? {
            Ok(verdicts) => return Ok(verdicts),
            Err(e) => log::warn!(size = envelopes.len();
                "batch failed ({e}); applying its messages one by one"),
        }
        // Slow path: isolate the message the database refuses.
        let mut verdicts = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            verdicts.push(self.apply_one(envelope, shutdown)?);
        }
        Ok(verdicts)
    }

    fn apply_one(
        &mut self,
        envelope: &Envelope<'_>,
        shutdown: &ShutdownSignal,
    ) -> Result<Verdict, BusError> {
        let mut attempt = 0;
        loop {
            let err = match self.apply_with_outage_wait(std::slice::from_ref(envelope), shutdown)? {
                Ok(mut v) => return Ok(v.remove(0)),
                Err(e) => e,
            };
            attempt += 1;
            if err.kind() == FailureKind::Permanent {
                return Ok(Verdict::DeadLetter(format!(
                    "database rejected the change: {err}"
                )));
            }
            if attempt >= self.max_attempts {
                return Ok(Verdict::DeadLetter(format!(
                    "gave up after {attempt} attempts: {err}"
                )));
            }
            if shutdown.wait(self.backoff.delay(attempt)) {
                return Err(BusError::Shutdown);
            }
        }
    }

    /// Tries a batch; while the database is out, waits and tries again.
    fn apply_with_outage_wait(
        &mut self,
        envelopes: &[Envelope<'_>],
        shutdown: &ShutdownSignal,
    ) -> Result<Result<Vec<Verdict>, BatchError>, BusError> {
        let mut outage_attempt = 0;
        loop {
            match self.try_batch(envelopes) {
                Err(e) if e.kind() == FailureKind::Outage => {
                    self.conn = None;
                    self.metrics.db_outage_retries.inc();
                    let delay = self.backoff.delay(outage_attempt);
                    log::warn!(
                        "database unavailable ({e}); holding {} messages, retrying in {delay:?}",
                        envelopes.len()
                    );
                    outage_attempt += 1;
                    if shutdown.wait(delay) {
                        return Err(BusError::Shutdown);
                    }
                }
                other => return Ok(other),
            }
        }
    }

    fn try_batch(&mut self, envelopes: &[Envelope<'_>]) -> Result<Vec<Verdict>, BatchError> {
        let registry = &self.registry;
        let conn = match self.conn.as_mut() {
            Some(c) if !c.is_closed() => c,
            _ => {
                self.conn = Some(CachedConnection::new(self.pool.get()?));
                self.conn.as_mut().expect("just set")
            }
        };
        let mut tx = conn.transaction()?;
        let ids: Vec<&str> = envelopes.iter().filter_map(|e| e.message_id).collect();
        let mut new_ids = inbox::claim(&mut tx, &ids)?;
        let mut verdicts: Vec<Option<Verdict>> = vec![None; envelopes.len()];
        // Each handler gets its events in delivery order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, envelope) in envelopes.iter().enumerate() {
            if let Some(id) = envelope.message_id {
                // `remove`: a second copy of the same id within the batch is a duplicate too.
                if !new_ids.remove(id) {
                    verdicts[i] = Some(Verdict::Duplicate);
                    continue;
                }
            }
            match registry.route(envelope.routing_key) {
                Some(h) => {
                    if groups.len() <= h {
                        groups.resize(h + 1, Vec::new());
                    }
                    groups[h].push(i);
                }
                None => {
                    verdicts[i] = Some(Verdict::DeadLetter(format!(
                        "no handler for routing key {}",
                        envelope.routing_key
                    )))
                }
            }
        }
        // Events from every handler, re-ordered by delivery so subscribers see commit order.
        let mut announced: Vec<(usize, OutboxEvent)> = Vec::new();
        let mut rejected_ids = Vec::new();
        for (h, members) in groups.iter().enumerate().filter(|(_, m)| !m.is_empty()) {
            let batch: Vec<&Envelope<'_>> = members.iter().map(|&i| &envelopes[i]).collect();
            let results = registry.handler(h).handle_batch(&mut tx, &batch)?;
            for (&i, result) in members.iter().zip(results) {
                verdicts[i] = Some(match result {
                    Handled::Applied(events) => {
                        announced.extend(events.into_iter().map(|e| (i, e)));
                        Verdict::Applied
                    }
                    Handled::Rejected(reason) => {
                        rejected_ids.extend(envelopes[i].message_id);
                        Verdict::DeadLetter(reason)
                    }
                });
            }
        }
        announced.sort_by_key(|(i, _)| *i);
        let events: Vec<OutboxEvent> = announced.into_iter().map(|(_, e)| e).collect();
        outbox::enqueue(&mut tx, &events)?;
        inbox::release(&mut tx, &rejected_ids)?;
        tx.commit()?;
        if !events.is_empty() {
            let _ = self.relay_wakeup.try_send(());
        }
        Ok(verdicts
            .into_iter()
            .map(|v| v.expect("every delivery decided"))
            .collect())
    }
}

impl BatchHandler for EventPipeline {
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError> {
        topology::declare_manman_exchange(channel)?;
        Ok(())
    }

    fn durable_queue(&self) -> Option<DurableQueue> {
        Some(topology::processor_queue())
    }

    fn handle(
        &mut self,
        ctx: &mut BatchContext<'_>,
        mut batch: Vec<Delivery>,
    ) -> Result<(), BusError> {
        let started = Instant::now();
        let envelopes: Vec<Envelope<'_>> = batch
            .iter()
            .map(|d| Envelope {
                routing_key: &d.routing_key,
                body: &d.body,
                message_id: d.properties.message_id().as_deref(),
                user_id: d.properties.user_id().as_deref(),
                redelivered: d.redelivered,
            })
            .collect();
        let verdicts = self.apply(&envelopes, ctx.shutdown)?;
        let mut dead = Vec::new();
        for (envelope, verdict) in envelopes.iter().zip(&verdicts) {
            match verdict {
                Verdict::Applied => self.metrics.applied.inc(),
                Verdict::Duplicate => self.metrics.duplicates.inc(),
                Verdict::DeadLetter(reason) => {
                    self.metrics.dead_lettered.inc();
                    log::warn!(routing_key = envelope.routing_key, reason = reason.as_str();
                        "dead-lettering message");
                    dead.push(dead_letter(envelope, reason));
                }
            }
        }
        drop(envelopes);
        if !dead.is_empty() {
            ctx.publisher.publish_all(&dead, Duration::from_secs(10))?;
        }
        let last = batch.pop().expect("batches are never empty");
        ctx.ack_through(last)?;
        self.metrics.batch_seconds.observe(started.elapsed());
        Ok(())
    }
}

fn dead_letter(envelope: &Envelope<'_>, reason: &str) -> OutgoingMessage {
    let mut msg = OutgoingMessage::raw("", routing::PROCESSOR_DLQ, envelope.body.to_vec())
        .with_header(routing::DEAD_LETTER_REASON_HEADER, reason)
        .with_header("x-original-routing-key", envelope.routing_key);
    msg.message_id = envelope.message_id.map(str::to_string);
    msg
}
