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
/// at the DLQ too, as a safety net for anything rejected without our reason header.
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
