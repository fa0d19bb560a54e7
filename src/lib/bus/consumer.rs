//! A reconnecting consumer with manual acks that hands deliveries to a handler in batches.
//!
//! Batching is what makes the processor fast: one database transaction and one
//! `ack(multiple)` per batch instead of per message, while keeping delivery order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amiquip::{Channel, Connection, Consumer, ConsumerMessage, ConsumerOptions, Delivery};
use crossbeam_channel::select;

use super::durable_queue::{declare_unconsumed, DurableQueue, SideQueue, Stage};
use super::{stay_connected, BusError, ConfirmedPublisher};
use crate::lifecycle::{ShutdownSignal, SpawnError, Supervisor};

pub struct ConsumerSettings {
    pub url: String,
    pub queue: String,
    /// Unacknowledged deliveries the broker may push ahead of us.
    pub prefetch: u16,
    /// Most deliveries handed to one `handle` call.
    pub max_batch: usize,
    pub who: &'static str,
}

/// What a handler gets with each batch: acks, and a confirmed publisher on the same connection.
pub struct BatchContext<'a> {
    /// The channel the deliveries came on (for passive declares and the like).
    pub channel: &'a Channel,
    pub consumer: &'a Consumer<'a>,
    pub publisher: &'a mut ConfirmedPublisher,
    pub shutdown: &'a ShutdownSignal,
}

impl BatchContext<'_> {
    /// Acknowledges `last` and every earlier delivery on this channel.
    pub fn ack_through(&self, last: Delivery) -> Result<(), BusError> {
        Ok(self.consumer.ack_multiple(last)?)
    }
}

pub trait BatchHandler {
    /// Declares the topology the consumer needs (run on every (re)connect).
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError>;
    /// The queue it reads when that is a [`DurableQueue`] (declared after `declare`, as a
    /// quorum queue, moved over from a classic one by this consumer); `None` for a queue
    /// `declare` made itself (`ConsumerSettings::queue`).
    fn durable_queue(&self) -> Option<DurableQueue> {
        None
    }
    /// Queues nobody consumes that `handle` may publish to, declared with each session.
    fn side_queues(&self) -> Vec<SideQueue> {
        Vec::new()
    }
    /// Handles deliveries in order and acknowledges them. Returning an error reconnects; what
    /// was not acknowledged is redelivered.
    fn handle(&mut self, ctx: &mut BatchContext<'_>, batch: Vec<Delivery>) -> Result<(), BusError>;
}

/// Runs [`run_batch_consumer`] on a supervised thread named `thread`: the way every daemon
/// consumes.
pub fn spawn_consumer(
    supervisor: &mut Supervisor,
    thread: &str,
    settings: ConsumerSettings,
    mut handler: impl BatchHandler + Send + 'static,
    connected: Arc<AtomicBool>,
) -> Result<(), SpawnError> {
    supervisor.spawn(thread, move |shutdown| {
        run_batch_consumer(&settings, &mut handler, &shutdown, &connected)
    })
}

/// Consumes until shutdown, reconnecting whenever the broker or the handler fails.
/// `connected` tracks whether a consumer is currently attached (for `/readyz`).
pub fn run_batch_consumer(
    settings: &ConsumerSettings,
    handler: &mut dyn BatchHandler,
    shutdown: &ShutdownSignal,
    connected: &AtomicBool,
) -> Result<(), String> {
    stay_connected(&settings.url, settings.who, shutdown, |conn| {
        let result = consume_session(conn, settings, handler, shutdown, connected);
        connected.store(false, Ordering::SeqCst);
        result
    });
    Ok(())
}

fn consume_session(
    conn: &mut Connection,
    settings: &ConsumerSettings,
    handler: &mut dyn BatchHandler,
    shutdown: &ShutdownSignal,
    connected: &AtomicBool,
) -> Result<(), BusError> {
    let channel = conn.open_channel(None)?;
    handler.declare(&channel)?;
    for queue in handler.side_queues() {
        declare_unconsumed(conn, &queue)?;
    }
    let durable = handler.durable_queue();
    let stages = match &durable {
        Some(queue) => queue.prepare(conn)?,
        None => vec![Stage::Consume(settings.queue.clone())],
    };
    channel.qos(0, settings.prefetch, false)?;
    let mut publisher = ConfirmedPublisher::new(conn.open_channel(None)?)?;
    let mut stages = std::collections::VecDeque::from(stages);
    while let Some(stage) = stages.pop_front() {
        let ended = consume_stage(
            &channel,
            &mut publisher,
            &stage,
            settings,
            handler,
            shutdown,
            connected,
        )?;
        if !ended {
            return Ok(()); // shutdown
        }
        if let Some(durable) = &durable {
            if !durable.finish_drained(conn, stage.queue())? {
                // Messages came back while it was being deleted: drain it again.
                stages.push_front(stage);
            }
        }
    }
    Ok(())
}

/// Consumes one stage's queue; for a [`Stage::Drain`], returns `true` once it is empty and
/// every delivery taken from it is handled (its consumer cancelled). `false`: shutdown.
fn consume_stage(
    channel: &Channel,
    publisher: &mut ConfirmedPublisher,
    stage: &Stage,
    settings: &ConsumerSettings,
    handler: &mut dyn BatchHandler,
    shutdown: &ShutdownSignal,
    connected: &AtomicBool,
) -> Result<bool, BusError> {
    let queue = stage.queue();
    let consumer = channel.basic_consume(queue, ConsumerOptions::default())?;
    connected.store(true, Ordering::SeqCst);
    log::info!(who = settings.who, queue = queue; "consuming");
    let draining = matches!(stage, Stage::Drain(_));
    let mut cancelled = false;
    loop {
        let first = select! {
            recv(consumer.receiver()) -> msg => msg.map_err(|_| BusError::ConsumerEnded("its channel closed".into()))?,
            recv(shutdown.receiver()) -> _ => return Ok(false),
            default(Duration::from_secs(1)) => {
                if cancelled {
                    return Ok(true);
                }
                if draining && channel.queue_declare_passive(queue)?.declared_message_count() == Some(0) {
                    // Deliveries already on their way still come before the cancel's answer.
                    consumer.cancel()?;
                    cancelled = true;
                }
                continue;
            }
        };
        let mut batch = Vec::new();
        let mut ended = into_delivery(first, &mut batch);
        while ended.is_none() && batch.len() < settings.max_batch {
            match consumer.receiver().try_recv() {
                Ok(msg) => ended = into_delivery(msg, &mut batch),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let mut ctx = BatchContext {
                channel,
                consumer: &consumer,
                publisher,
                shutdown,
            };
            handler.handle(&mut ctx, batch)?;
        }
        match ended {
            Some(BusError::ConsumerEnded(_)) if cancelled => return Ok(true),
            Some(end) => return Err(end),
            None => {}
        }
    }
}

/// Pushes a delivery; returns why the stream ended for anything else.
fn into_delivery(msg: ConsumerMessage, batch: &mut Vec<Delivery>) -> Option<BusError> {
    match msg {
        ConsumerMessage::Delivery(d) => {
            batch.push(d);
            None
        }
        ConsumerMessage::ServerClosedChannel(e) | ConsumerMessage::ServerClosedConnection(e) => {
            Some(BusError::Amqp(e))
        }
        other => Some(BusError::ConsumerEnded(format!("{other:?}"))),
    }
}
