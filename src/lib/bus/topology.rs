//! Declaring the exchanges and queues of the RabbitMQ contract (idempotent).

use amiquip::{
    AmqpValue, Channel, Exchange, ExchangeDeclareOptions, ExchangeType, FieldTable,
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

/// `processor-events` (bound to the host event keys) and its dead-letter queue. The broker's own
/// dead-lettering also points at the DLQ, as a safety net for anything rejected without a reason.
pub fn declare_processor_queues(channel: &Channel) -> amiquip::Result<()> {
    let exchange = declare_manman_exchange(channel)?;
    channel.queue_declare(
        routing::PROCESSOR_DLQ,
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
    )?;
    let mut args = FieldTable::new();
    args.insert(
        "x-dead-letter-exchange".into(),
        AmqpValue::LongString(String::new()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AmqpValue::LongString(routing::PROCESSOR_DLQ.into()),
    );
    let queue = channel.queue_declare(
        routing::PROCESSOR_QUEUE,
        QueueDeclareOptions {
            durable: true,
            arguments: args,
            ..QueueDeclareOptions::default()
        },
    )?;
    for key in routing::PROCESSOR_BINDINGS {
        queue.bind(&exchange, key, FieldTable::new())?;
    }
    Ok(())
}
