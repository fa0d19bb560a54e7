//! Queues that must not lose a message: quorum queues (replicated by Raft across a cluster's
//! nodes), with a delivery limit for poison messages, and the move of a queue that exists as a
//! classic queue over to quorum by the consumer that reads it.
//!
//! RabbitMQ refuses to change the type of an existing queue (PRECONDITION_FAILED), so a
//! classic queue `Q` is moved in stages that lose nothing and keep the order:
//! 1. `Q-migrating` (quorum) is declared and bound like `Q`; `Q` is unbound. New messages go
//!    to `Q-migrating` (in the instant both are bound, to both: consumers already take
//!    redeliveries, by message id or by being idempotent).
//! 2. The consumer drains `Q` through its normal handler (no message is republished, so the
//!    publisher's validated `user_id`, which the processor and the agents check, is kept), then
//!    `Q` is deleted (only if empty) and declared again as a quorum queue, bound, and
//!    `Q-migrating` unbound.
//! 3. The consumer drains `Q-migrating` (older than anything in the new `Q`), deletes it, and
//!    consumes `Q` from then on.
//!
//! Every stage can be interrupted: the next start looks at what exists and goes on from there.
//! A queue nobody consumes (a dead-letter queue) is left as it is when it exists as a classic
//! queue, with a warning: its messages are for an operator, and a broker-side dead-lettering
//! into a deleted queue would drop them.

use amiquip::{AmqpValue, Connection, FieldTable, QueueDeclareOptions, QueueDeleteOptions};

use super::BusError;

/// Redeliveries after which the broker dead-letters a message (`x-delivery-limit`): a message
/// that crashes its consumer every time must not stop the queue behind it. Outages do not
/// count towards it: the processor holds a batch unacknowledged while its database is away,
/// and only a lost connection returns a delivery.
pub const DELIVERY_LIMIT: i64 = 20;

/// What a consumed durable queue is: its name, where its dead letters go, and its bindings.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableQueue {
    pub name: String,
    /// Queue (through the default exchange) that gets what the broker dead-letters; `None`:
    /// dropped (console lines: what overflows is dropped by design, not kept twice).
    pub dead_letters_to: Option<String>,
    /// Whether that queue is this one's own (declared with it, as a quorum queue) rather than
    /// one declared elsewhere.
    pub declare_dead_letter_queue: bool,
    /// One consumer at a time; the others wait as hot standbys (order matters).
    pub single_active_consumer: bool,
    /// (exchange, routing key) pairs; the exchanges must exist.
    pub bindings: Vec<(String, String)>,
    /// More queue arguments (limits, TTLs), the same for the migrating queue.
    pub arguments: FieldTable,
}

/// Which queue a consumer reads next, and whether it moves on once that queue is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Read until empty, then [`finish_drained`] it and take the next stage.
    Drain(String),
    /// Read from now on.
    Consume(String),
}

impl Stage {
    pub fn queue(&self) -> &str {
        match self {
            Stage::Drain(q) | Stage::Consume(q) => q,
        }
    }
}

impl DurableQueue {
    /// The quorum queue that takes new messages while the classic one is drained.
    pub fn migrating_name(&self) -> String {
        format!("{}-migrating", self.name)
    }

    /// The arguments of its quorum queue (the migrating one has no single active consumer).
    pub fn quorum_arguments(&self, single_active_consumer: bool) -> FieldTable {
        let mut args = self.arguments.clone();
        args.insert(
            "x-queue-type".into(),
            AmqpValue::LongString("quorum".into()),
        );
        if let Some(dlq) = &self.dead_letters_to {
            args.insert(
                "x-dead-letter-exchange".into(),
                AmqpValue::LongString(String::new()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AmqpValue::LongString(dlq.clone()),
            );
        }
        args.insert(
            "x-delivery-limit".into(),
            AmqpValue::LongLongInt(DELIVERY_LIMIT),
        );
        if single_active_consumer {
            args.insert("x-single-active-consumer".into(), AmqpValue::Boolean(true));
        }
        args
    }

    /// Declares the queue (quorum, or going on with a move from classic) and returns the
    /// stages its consumer reads, in order.
    pub fn prepare(&self, conn: &mut Connection) -> Result<Vec<Stage>, BusError> {
        if let Some(dlq) = self
            .dead_letters_to
            .as_ref()
            .filter(|_| self.declare_dead_letter_queue)
        {
            declare_unconsumed(
                conn,
                &SideQueue {
                    name: dlq.clone(),
                    max_length: None,
                },
            )?;
        }
        let migrating = self.migrating_name();
        if self.declare_quorum(conn, &self.name)? {
            self.bind(conn, &self.name, true)?;
            if !queue_exists(conn, &migrating)? {
                return Ok(vec![Stage::Consume(self.name.clone())]);
            }
            // Interrupted after the new queue was declared: what is left in the migrating
            // queue is older than anything in the new one.
            self.bind(conn, &migrating, false)?;
            return Ok(vec![
                Stage::Drain(migrating),
                Stage::Consume(self.name.clone()),
            ]);
        }
        log::warn!(queue = self.name.as_str();
            "the queue is a classic queue: moving it to a quorum queue (new messages go to {migrating} while it drains)");
        match self.declare_quorum(conn, &migrating) {
            Ok(true) => {}
            Ok(false) => {
                return Err(BusError::ConsumerEnded(format!(
                    "{migrating} exists with other arguments; delete it once it is empty"
                )))
            }
            // A host's broker user provisioned before quorum queues may not declare it.
            Err(BusError::Amqp(e)) if closed_with(&e, 403) => {
                log::warn!(queue = self.name.as_str();
                    "kept as a classic queue: this broker user may not declare {migrating} ({e}); provision it again to allow the move");
                self.bind(conn, &self.name, true)?;
                return Ok(vec![Stage::Consume(self.name.clone())]);
            }
            Err(e) => return Err(e),
        }
        self.bind(conn, &migrating, true)?;
        self.bind(conn, &self.name, false)?;
        Ok(vec![
            Stage::Drain(self.name.clone()),
            Stage::Drain(migrating),
            Stage::Consume(self.name.clone()),
        ])
    }

    /// After a drained stage: deletes `queue` if it is still empty (and, for the classic
    /// queue, declares its quorum successor). `false`: messages came back, drain again.
    pub fn finish_drained(&self, conn: &mut Connection, queue: &str) -> Result<bool, BusError> {
        let channel = conn.open_channel(None)?;
        // The drained classic queue is deleted only if empty, by the broker; a quorum queue
        // does not take `if-empty` (the broker closes the connection), so the migrating
        // queue, unbound by now and fed by nothing, is looked at first.
        let classic = queue == self.name;
        if !classic
            && channel
                .queue_declare_passive(queue)?
                .declared_message_count()
                .is_some_and(|n| n > 0)
        {
            return Ok(false);
        }
        let deleted = channel.queue_delete(
            queue,
            QueueDeleteOptions {
                if_unused: false,
                if_empty: classic,
            },
        );
        match deleted {
            Ok(_) => {}
            Err(e) if closed_with(&e, 406) => return Ok(false), // not empty
            Err(e) => return Err(e.into()),
        }
        let _ = channel.close();
        if queue == self.name {
            if !self.declare_quorum(conn, &self.name)? {
                return Err(BusError::ConsumerEnded(format!(
                    "{} was declared again as a classic queue by an older daemon",
                    self.name
                )));
            }
            self.bind(conn, &self.name, true)?;
            self.bind(conn, &self.migrating_name(), false)?;
            log::info!(queue = queue; "the classic queue is drained and the quorum queue declared");
        } else {
            log::info!(queue = self.name.as_str(); "moved to a quorum queue");
        }
        Ok(true)
    }

    /// Declares `name` as this queue's quorum queue; `false` when it exists with other
    /// arguments (a classic queue). The migrating queue has no single active consumer: only
    /// the migrating consumer reads it, and the broker refuses `basic.get` on one that has.
    fn declare_quorum(&self, conn: &mut Connection, name: &str) -> Result<bool, BusError> {
        let sac = self.single_active_consumer && name == self.name;
        let channel = conn.open_channel(None)?;
        let declared = channel.queue_declare(
            name,
            QueueDeclareOptions {
                durable: true,
                arguments: self.quorum_arguments(sac),
                ..QueueDeclareOptions::default()
            },
        );
        match declared {
            Ok(_) => {
                let _ = channel.close();
                Ok(true)
            }
            Err(e) if closed_with(&e, 406) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Binds (or unbinds) `queue` with this queue's bindings.
    fn bind(&self, conn: &mut Connection, queue: &str, bound: bool) -> Result<(), BusError> {
        let channel = conn.open_channel(None)?;
        let q = channel.queue_declare_passive(queue)?;
        for (exchange, key) in &self.bindings {
            let exchange = channel.exchange_declare_passive(exchange.as_str())?;
            if bound {
                q.bind(&exchange, key.as_str(), FieldTable::new())?;
            } else {
                q.unbind(&exchange, key.as_str(), FieldTable::new())?;
            }
        }
        let _ = channel.close();
        Ok(())
    }
}

/// A queue nobody consumes that a consumer's messages may be put in (a dead-letter queue, the
/// refused commands), declared with its consumer's session ([`declare_unconsumed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideQueue {
    pub name: String,
    /// Keeps at most this many messages, the oldest dropped first: for what a misbehaving or
    /// hostile publisher sends, which must not fill the broker's disk.
    pub max_length: Option<u32>,
}

/// Declares a queue nobody consumes as a quorum queue, or leaves it as it is when it exists
/// already as a classic one (see the module's note), saying so. A classic one whose node is
/// down is passed over with a warning too: the consumer it serves must not wait for it.
pub fn declare_unconsumed(conn: &mut Connection, queue: &SideQueue) -> Result<(), BusError> {
    let channel = conn.open_channel(None)?;
    let mut args = FieldTable::new();
    args.insert(
        "x-queue-type".into(),
        AmqpValue::LongString("quorum".into()),
    );
    if let Some(max) = queue.max_length {
        args.insert("x-max-length".into(), AmqpValue::LongUInt(max));
        args.insert(
            "x-overflow".into(),
            AmqpValue::LongString("drop-head".into()),
        );
    }
    let declared = channel.queue_declare(
        queue.name.as_str(),
        QueueDeclareOptions {
            durable: true,
            arguments: args,
            ..QueueDeclareOptions::default()
        },
    );
    match declared {
        Ok(_) => {
            let _ = channel.close();
            Ok(())
        }
        Err(e) if closed_with(&e, 406) => {
            log::warn!(queue = queue.name.as_str();
                "kept as a classic queue: once its messages are dealt with, delete it and the next start declares it as a quorum queue");
            Ok(())
        }
        Err(e) if closed_with(&e, 404) => {
            log::warn!(queue = queue.name.as_str();
                "unavailable (a classic queue whose node is down): {e}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `queue` exists (a passive declare on a channel of its own, which a 404 closes).
fn queue_exists(conn: &mut Connection, queue: &str) -> Result<bool, BusError> {
    let channel = conn.open_channel(None)?;
    match channel.queue_declare_passive(queue) {
        Ok(_) => {
            let _ = channel.close();
            Ok(true)
        }
        Err(e) if closed_with(&e, 404) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether the broker closed the channel with `code` (404 not found, 406 precondition failed).
fn closed_with(e: &amiquip::Error, code: u16) -> bool {
    matches!(e, amiquip::Error::ServerClosedChannel { code: c, .. } if *c == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DurableQueue {
        DurableQueue {
            name: "processor-events".into(),
            dead_letters_to: Some("processor-events-dlq".into()),
            declare_dead_letter_queue: true,
            single_active_consumer: true,
            bindings: vec![("manman".into(), "status.#".into())],
            arguments: FieldTable::new(),
        }
    }

    #[test]
    fn the_quorum_arguments_carry_the_dead_letter_route_and_the_limit() {
        let args = spec().quorum_arguments(true);
        assert!(
            matches!(args.get("x-queue-type"), Some(AmqpValue::LongString(t)) if t == "quorum")
        );
        assert!(matches!(args.get("x-dead-letter-routing-key"),
            Some(AmqpValue::LongString(q)) if q == "processor-events-dlq"));
        assert!(matches!(
            args.get("x-delivery-limit"),
            Some(AmqpValue::LongLongInt(DELIVERY_LIMIT))
        ));
        assert!(args.contains_key("x-single-active-consumer"));
        assert!(!spec()
            .quorum_arguments(false)
            .contains_key("x-single-active-consumer"));
        assert_eq!(spec().migrating_name(), "processor-events-migrating");
    }
}
