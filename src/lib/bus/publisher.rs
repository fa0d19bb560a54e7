//! Publishing with publisher confirms: a batch counts as sent only once the broker confirms it.

use std::time::{Duration, Instant};

use amiquip::{AmqpProperties, AmqpValue, Channel, Confirm, ConfirmSmoother, FieldTable, Publish};
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::BusError;

/// One message to publish: JSON, persistent, with optional headers and request/reply fields.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub headers: FieldTable,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub persistent: bool,
    /// Per-message TTL: the broker drops it if it is still queued after this long.
    pub expiration: Option<Duration>,
}

impl OutgoingMessage {
    pub fn json(exchange: &str, routing_key: &str, body: &serde_json::Value) -> Self {
        OutgoingMessage::raw(exchange, routing_key, body.to_string().into_bytes())
    }

    pub fn raw(exchange: &str, routing_key: &str, body: Vec<u8>) -> Self {
        OutgoingMessage {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            body,
            headers: FieldTable::new(),
            message_id: None,
            correlation_id: None,
            reply_to: None,
            persistent: true,
            expiration: None,
        }
    }

    pub fn expiring_after(mut self, ttl: Duration) -> Self {
        self.expiration = Some(ttl);
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers
            .insert(name.to_string(), AmqpValue::LongString(value.into()));
        self
    }

    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    pub fn transient(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Publishes without waiting for a confirm (for dead letters of fire-and-forget streams,
    /// where the channel's ordering before the ack is enough).
    pub fn publish_unconfirmed(&self, channel: &Channel) -> Result<(), BusError> {
        channel.basic_publish(
            self.exchange.clone(),
            Publish::with_properties(&self.body, self.routing_key.clone(), self.properties()),
        )?;
        Ok(())
    }

    fn properties(&self) -> AmqpProperties {
        let mut props = AmqpProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(if self.persistent { 2 } else { 1 });
        if !self.headers.is_empty() {
            props = props.with_headers(self.headers.clone());
        }
        if let Some(id) = &self.message_id {
            props = props.with_message_id(id.clone());
        }
        if let Some(id) = &self.correlation_id {
            props = props.with_correlation_id(id.clone());
        }
        if let Some(to) = &self.reply_to {
            props = props.with_reply_to(to.clone());
        }
        if let Some(ttl) = self.expiration {
            props = props.with_expiration(ttl.as_millis().max(1).to_string());
        }
        props
    }
}

/// A channel in confirm mode.
pub struct ConfirmedPublisher {
    channel: Channel,
    /// Stamped on every message as the AMQP `user_id`, which the broker checks against the
    /// connection's user: consumers can then trust who sent it.
    user_id: Option<String>,
    confirms: Receiver<Confirm>,
    smoother: ConfirmSmoother,
    published: u64,
    confirmed: u64,
}

impl ConfirmedPublisher {
    pub fn new(channel: Channel) -> Result<Self, BusError> {
        let confirms = channel.listen_for_publisher_confirms()?;
        channel.enable_publisher_confirms()?;
        Ok(ConfirmedPublisher {
            channel,
            user_id: None,
            confirms,
            smoother: ConfirmSmoother::new(),
            published: 0,
            confirmed: 0,
        })
    }

    /// Signs every message with the connection's broker user (see [`broker_user`]).
    pub fn signed_as(mut self, user: Option<String>) -> Self {
        self.user_id = user;
        self
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes every message and waits until the broker has confirmed all of them.
    /// Any nack or timeout fails the whole call; the caller retries (at-least-once).
    pub fn publish_all(
        &mut self,
        messages: &[OutgoingMessage],
        timeout: Duration,
    ) -> Result<(), BusError> {
        for m in messages {
            let mut properties = m.properties();
            if let Some(user) = &self.user_id {
                properties = properties.with_user_id(user.clone());
            }
            self.channel.basic_publish(
                m.exchange.clone(),
                Publish::with_properties(&m.body, m.routing_key.clone(), properties),
            )?;
            self.published += 1;
        }
        self.wait_for_confirms(timeout)
    }

    fn wait_for_confirms(&mut self, timeout: Duration) -> Result<(), BusError> {
        let deadline = Instant::now() + timeout;
        let mut nacked = false;
        while self.confirmed < self.published {
            let left = deadline.saturating_duration_since(Instant::now());
            let raw = match self.confirms.recv_timeout(left) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => return Err(BusError::ConfirmTimeout(timeout)),
                Err(RecvTimeoutError::Disconnected) => return Err(BusError::ChannelClosed),
            };
            for confirm in self.smoother.process(raw) {
                self.confirmed += 1;
                nacked |= matches!(confirm, Confirm::Nack(_));
            }
        }
        if nacked {
            Err(BusError::Nacked)
        } else {
            Ok(())
        }
    }
}

/// The user name in an `amqp(s)://user:password@…` URL (percent-decoded; of a node list, the
/// first node's: every node of a cluster knows the same users); `None` without one.
pub fn broker_user(url: &str) -> Option<String> {
    let first = crate::config::url_list(url).into_iter().next()?;
    let parsed = url::Url::parse(first).ok()?;
    let user = percent_encoding::percent_decode_str(parsed.username())
        .decode_utf8_lossy()
        .into_owned();
    (!user.is_empty()).then_some(user)
}
