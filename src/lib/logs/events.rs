//! Session lifecycle events → buffers: a session that is starting or running gets a ring; one
//! that ended has its ring closed after the grace. Listens to the host's own
//! `status.session.*` (earliest: before its first line) and the processor's external
//! `manman.session.*`, on one queue per instance.

use std::sync::Arc;

use amiquip::{AmqpValue, Channel, Delivery, FieldTable};

use super::registry::Registry;
use crate::bus::durable_queue::DurableQueue;
use crate::bus::{topology, BatchContext, BatchHandler, BusError};
use crate::wire::{routing, SessionStatus};

pub struct SessionEventsHandler {
    pub registry: Arc<Registry>,
    pub queue: String,
    pub external_exchange: String,
}

/// What a routing key and body say about a session.
pub fn session_event(routing_key: &str, body: &[u8]) -> Option<(i64, SessionStatus)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let session_id = value["session_id"].as_i64()?;
    let status = if let Some(name) = routing_key.strip_prefix("manman.session.") {
        name.parse().ok()?
    } else if routing_key.starts_with("status.session.") {
        value["status"].as_str()?.parse().ok()?
    } else {
        return None;
    };
    Some((session_id, status))
}

impl BatchHandler for SessionEventsHandler {
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError> {
        topology::declare_manman_exchange(channel)?;
        topology::declare_external_exchange(channel, &self.external_exchange)?;
        Ok(())
    }

    /// Durable and kept a day when unused, so a restart misses no session start; a quorum
    /// queue, so a broker node's loss neither stops it nor fails the publishes routed to it.
    fn durable_queue(&self) -> Option<DurableQueue> {
        let mut args = FieldTable::new();
        args.insert("x-expires".into(), AmqpValue::LongUInt(86_400_000));
        Some(DurableQueue {
            name: self.queue.clone(),
            dead_letters_to: None,
            declare_dead_letter_queue: false,
            single_active_consumer: false,
            bindings: vec![
                (routing::MANMAN_EXCHANGE.into(), "status.session.*".into()),
                (self.external_exchange.clone(), "manman.session.*".into()),
            ],
            arguments: args,
        })
    }

    fn handle(
        &mut self,
        ctx: &mut BatchContext<'_>,
        mut batch: Vec<Delivery>,
    ) -> Result<(), BusError> {
        for d in &batch {
            let Some((session_id, status)) = session_event(&d.routing_key, &d.body) else {
                log::debug!(routing_key = d.routing_key.as_str(); "ignoring an unreadable session event");
                continue;
            };
            if status.is_terminal() {
                self.registry.session_ended(session_id);
            } else if matches!(status, SessionStatus::Starting | SessionStatus::Running) {
                self.registry.session_started(session_id);
            }
        }
        match batch.pop() {
            Some(last) => ctx.ack_through(last),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_event_kinds() {
        assert_eq!(
            session_event(
                "manman.session.running",
                br#"{"session_id":7,"status":"running"}"#
            ),
            Some((7, SessionStatus::Running))
        );
        assert_eq!(
            session_event(
                "status.session.7",
                br#"{"session_id":7,"sgc_id":1,"status":"starting"}"#
            ),
            Some((7, SessionStatus::Starting))
        );
        assert_eq!(
            session_event("manman.session.crashed", br#"{"session_id":8}"#),
            Some((8, SessionStatus::Crashed))
        );
        assert_eq!(
            session_event("manman.host.online", br#"{"session_id":8}"#),
            None
        );
        assert_eq!(session_event("manman.session.running", b"nope"), None);
    }
}
