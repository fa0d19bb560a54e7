//! Declaring the exchanges and queues of the RabbitMQ contract (idempotent).

use amiquip::{
    AmqpValue, Channel, Exchange, ExchangeDeclareOptions, ExchangeType, FieldTable, Queue,
    QueueDeclareOptions,
};

use super::durable_queue::DurableQueue;
use crate::wire::routing;

fn durable_topic<'a>(channel: &'a Channel, name: &str) -> amiquip::Result<Exchange<'a>> {
    channel.exchange_declare(
        ExchangeType::Topic,
        name,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
    )
}

/// The internal `manman` exchange.
pub fn declare_manman_exchange(channel: &Channel) -> amiquip::Result<Exchange<'_>> {
    durable_topic(channel, routing::MANMAN_EXCHANGE)
}

/// The external exchange subscribers bind to.
pub fn declare_external_exchange<'a>(
    channel: &'a Channel,
    name: &str,
) -> amiquip::Result<Exchange<'a>> {
    durable_topic(channel, name)
}

/// `processor-events` (bound to the host event keys; one active consumer, so events apply in
/// order) and its dead-letter queue.
pub fn processor_queue() -> DurableQueue {
    DurableQueue {
        name: routing::PROCESSOR_QUEUE.into(),
        dead_letters_to: routing::PROCESSOR_DLQ.into(),
        declare_dead_letter_queue: true,
        single_active_consumer: true,
        bindings: routing::PROCESSOR_BINDINGS
            .iter()
            .map(|key| (routing::MANMAN_EXCHANGE.to_string(), key.to_string()))
            .collect(),
    }
}

/// The `manman` exchange, which must exist already (the processor and the API declare it):
/// a host's own broker user has no permission to configure it.
pub fn manman_exchange_exists(channel: &Channel) -> amiquip::Result<Exchange<'_>> {
    channel.exchange_declare_passive(routing::MANMAN_EXCHANGE)
}

/// A host's command queue `host-{id}-commands`, bound to `command.host.{id}.#`, with a single
/// active consumer (commands of one session must run in order: start before stop). What the
/// broker dead-letters (a command that crashed the agent [`DELIVERY_LIMIT`] times) joins the
/// refused commands, whose queue the agent declares first.
///
/// [`DELIVERY_LIMIT`]: super::durable_queue::DELIVERY_LIMIT
pub fn host_commands_queue(server_id: i64) -> DurableQueue {
    DurableQueue {
        name: routing::host_commands_queue(server_id),
        dead_letters_to: routing::host_refused_commands_queue(server_id),
        declare_dead_letter_queue: false,
        single_active_consumer: true,
        bindings: vec![(
            routing::MANMAN_EXCHANGE.to_string(),
            format!("command.host.{server_id}.#"),
        )],
    }
}

/// A durable queue that keeps at most `max_length` messages (the oldest go first): for what
/// a misbehaving or hostile publisher sends, which must not fill the broker's disk.
fn declare_bounded_queue(
    channel: &Channel,
    name: String,
    max_length: u32,
) -> amiquip::Result<Queue<'_>> {
    let mut table = FieldTable::new();
    table.insert("x-max-length".into(), AmqpValue::LongUInt(max_length));
    channel.queue_declare(
        name,
        QueueDeclareOptions {
            durable: true,
            arguments: table,
            ..QueueDeclareOptions::default()
        },
    )
}

/// Where a host keeps the commands it refused as not the API's.
pub fn declare_refused_commands_queue(channel: &Channel, server_id: i64) -> amiquip::Result<()> {
    declare_bounded_queue(
        channel,
        routing::host_refused_commands_queue(server_id),
        1_000,
    )
    .map(drop)
}

/// Where unreadable log messages go.
pub fn declare_log_dlq(channel: &Channel) -> amiquip::Result<Queue<'_>> {
    declare_bounded_queue(channel, routing::LOG_DLQ.to_string(), 10_000)
}
