//! Declaring the exchanges and queues of the RabbitMQ contract (idempotent).

use amiquip::{Channel, Exchange, ExchangeDeclareOptions, ExchangeType, FieldTable};

use super::durable_queue::{DurableQueue, SideQueue};
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
        dead_letters_to: Some(routing::PROCESSOR_DLQ.into()),
        declare_dead_letter_queue: true,
        single_active_consumer: true,
        bindings: routing::PROCESSOR_BINDINGS
            .iter()
            .map(|key| (routing::MANMAN_EXCHANGE.to_string(), key.to_string()))
            .collect(),
        arguments: FieldTable::new(),
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
        dead_letters_to: Some(routing::host_refused_commands_queue(server_id)),
        declare_dead_letter_queue: false,
        single_active_consumer: true,
        bindings: vec![(
            routing::MANMAN_EXCHANGE.to_string(),
            format!("command.host.{server_id}.#"),
        )],
        arguments: FieldTable::new(),
    }
}

/// Where a host keeps the commands it refused as not the API's (and those the broker
/// dead-lettered past the delivery limit).
pub fn refused_commands_queue(server_id: i64) -> SideQueue {
    SideQueue {
        name: routing::host_refused_commands_queue(server_id),
        max_length: Some(1_000),
    }
}

/// Where unreadable log messages go.
pub fn log_dlq() -> SideQueue {
    SideQueue {
        name: routing::LOG_DLQ.to_string(),
        max_length: Some(10_000),
    }
}
