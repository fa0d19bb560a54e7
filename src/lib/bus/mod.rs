//! RabbitMQ plumbing on amiquip: connect with retry, topology, batch consumer, confirmed
//! publisher, and the topic matcher. Every daemon uses these; none talks to amiquip directly.

pub mod connection;
pub mod consumer;
pub mod durable_queue;
pub mod publisher;
pub mod rpc;
pub mod topic;
pub mod topology;

pub use connection::{connect, stay_connected};
pub use consumer::{
    run_batch_consumer, spawn_consumer, BatchContext, BatchHandler, ConsumerSettings,
};
pub use publisher::{broker_user, ConfirmedPublisher, OutgoingMessage};
pub use rpc::{RpcClient, RpcError};
pub use topic::topic_matches;

/// A failure talking to the broker. The caller reconnects; unacknowledged deliveries come back.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker error: {0}")]
    Amqp(#[from] amiquip::Error),
    #[error("broker did not confirm publishes within {0:?}")]
    ConfirmTimeout(std::time::Duration),
    #[error("broker rejected (nacked) a publish")]
    Nacked,
    #[error("shutting down")]
    Shutdown,
    #[error("invalid RABBITMQ_URL: {0}")]
    InvalidUrl(String),
    #[error("cannot connect to {address}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS")]
    Tls(#[source] native_tls::Error),
    /// A handler cannot go on with this batch (a store it needs is away): reconnect, and the
    /// unacknowledged deliveries come back.
    #[error("{what}")]
    Handler {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the broker closed the channel")]
    ChannelClosed,
    /// The broker stopped delivering to a consumer (cancelled it, or closed its channel).
    #[error("the broker ended the consumer ({0})")]
    ConsumerEnded(String),
}
