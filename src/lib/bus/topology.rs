//! Declaring the exchanges and queues of the RabbitMQ contract (idempotent).

use amiquip::{
    AmqpValue, Channel, Exchange, ExchangeDeclareOptions, ExchangeType, FieldTable, Queue,
    QueueDeclareOptions,
};

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

/// A durable queue and its durable dead-letter queue: the broker's own dead-lettering points
/// at the DLQ too, as a safety net for anything rejected without our reason header. The
/// queue has a single active consumer: a second consumer (a second processor, a cloned
/// agent) waits as a hot standby instead of taking half the messages out of order.
pub fn declare_queue_with_dlq<'a>(
    channel: &'a Channel,
    queue: &str,
    dlq: &str,
) -> amiquip::Result<Queue<'a>> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(dlq, durable.clone())?;
    let mut args = FieldTable::new();
    args.insert(
        "x-dead-letter-exchange".into(),
        AmqpValue::LongString(String::new()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AmqpValue::LongString(dlq.into()),
    );
    args.insert("x-single-active-consumer".into(), AmqpValue::Boolean(true));
    channel.queue_declare(
        queue,
        QueueDeclareOptions {
            arguments: args,
            ..durable
        },
    )
}

/// `processor-events` (bound to the host event keys) and its dead-letter queue.
pub fn declare_processor_queues(channel: &Channel) -> amiquip::Result<()> {
    let exchange = declare_manman_exchange(channel)?;
    let queue = declare_queue_with_dlq(channel, routing::PROCESSOR_QUEUE, routing::PROCESSOR_DLQ)?;
    for key in routing::PROCESSOR_BINDINGS {
        queue.bind(&exchange, key, FieldTable::new())?;
    }
    Ok(())
}

/// The `manman` exchange, which must exist already (the processor and the API declare it):
/// a host's own broker user has no permission to configure it.
pub fn manman_exchange_exists(channel: &Channel) -> amiquip::Result<Exchange<'_>> {
    channel.exchange_declare_passive(routing::MANMAN_EXCHANGE)
}

/// A host's durable command queue `host-{id}-commands`, bound to `command.host.{id}.#`, with a
/// single active consumer (commands of one session must run in order: start before stop).
pub fn declare_host_commands_queue(channel: &Channel, server_id: i64) -> amiquip::Result<()> {
    let exchange = manman_exchange_exists(channel)?;
    let mut args = FieldTable::new();
    args.insert("x-single-active-consumer".into(), AmqpValue::Boolean(true));
    let queue = channel.queue_declare(
        routing::host_commands_queue(server_id),
        QueueDeclareOptions {
            durable: true,
            arguments: args,
            ..QueueDeclareOptions::default()
        },
    )?;
    queue.bind(
        &exchange,
        format!("command.host.{server_id}.#"),
        FieldTable::new(),
    )?;
    Ok(())
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
