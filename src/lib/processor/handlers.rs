//! Event handlers, registered by routing pattern: host status, session status, heartbeats.
//! A handler validates, writes through the caller's transaction, and returns the external
//! events its change must announce; it never publishes itself (the outbox does).

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::bus::topic_matches;
use crate::db::outbox::OutboxEvent;
use crate::db::{servers, sessions, FailureKind, Tx};
use crate::wire::session_status::Transition;
use crate::wire::{routing, HealthUpdate, HostStatus, HostStatusUpdate, SessionStatusUpdate};

/// One delivery as the handlers see it.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub message_id: Option<&'a str>,
    /// The broker delivered it before (so it may have been applied already).
    pub redelivered: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The message can never be applied: dead-letter it with this reason.
    #[error("{0}")]
    Permanent(String),
    #[error("database error: {0}")]
    Db(#[from] postgres::Error),
}

impl HandleError {
    pub fn kind(&self) -> FailureKind {
        match self {
            HandleError::Permanent(_) => FailureKind::Permanent,
            HandleError::Db(e) => crate::db::classify(e),
        }
    }
}

pub type Handled = Result<Vec<OutboxEvent>, HandleError>;

pub trait EventHandler: Send {
    fn handle(&self, tx: &mut Tx<'_>, event: &Envelope<'_>) -> Handled;
}

/// Handlers by routing pattern; the first matching pattern wins.
#[derive(Default)]
pub struct HandlerRegistry {
    routes: Vec<(String, Box<dyn EventHandler>)>,
}

impl HandlerRegistry {
    pub fn register(&mut self, pattern: &str, handler: impl EventHandler + 'static) {
        self.routes.push((pattern.to_string(), Box::new(handler)));
    }

    pub fn find(&self, routing_key: &str) -> Option<&dyn EventHandler> {
        self.routes
            .iter()
            .find(|(pattern, _)| topic_matches(pattern, routing_key))
            .map(|(_, h)| h.as_ref())
    }

    /// The processor's handlers for the contract's routing keys.
    pub fn standard() -> Self {
        let mut registry = HandlerRegistry::default();
        registry.register("status.host.*", HostStatusHandler);
        registry.register("status.session.*", SessionStatusHandler);
        registry.register("health.host.*", HeartbeatHandler);
        registry
    }
}

fn parse<T: DeserializeOwned>(event: &Envelope<'_>) -> Result<T, HandleError> {
    serde_json::from_slice(event.body)
        .map_err(|e| HandleError::Permanent(format!("malformed message: {e}")))
}

/// The routing key's id must agree with the payload's, or someone is confused.
fn check_key_id(event: &Envelope<'_>, payload_id: i64) -> Result<(), HandleError> {
    match routing::trailing_id(event.routing_key) {
        Some(id) if id == payload_id => Ok(()),
        _ => Err(HandleError::Permanent(format!(
            "routing key {} does not match payload id {payload_id}",
            event.routing_key
        ))),
    }
}

/// The external event: the payload as received plus what changed.
fn announce(routing_key: &str, event: &Envelope<'_>, changes: Value) -> OutboxEvent {
    let mut payload = serde_json::from_slice::<Value>(event.body).unwrap_or_else(|_| json!({}));
    if let (Some(obj), Value::Object(extra)) = (payload.as_object_mut(), changes) {
        obj.extend(extra);
    }
    OutboxEvent {
        routing_key: routing_key.to_string(),
        payload,
    }
}

/// Sets a host's status (and `last_seen`); announces it when the status changed.
fn set_host_status(
    tx: &mut Tx<'_>,
    event: &Envelope<'_>,
    server_id: i64,
    status: HostStatus,
) -> Handled {
    let before = servers::set_status_and_touch(tx, server_id, status)?
        .ok_or_else(|| HandleError::Permanent(format!("unknown host {server_id}")))?;
    if before.previous == status {
        return Ok(Vec::new());
    }
    log::info!(server_id = server_id, name = before.name.as_str();
        "host {} -> {}", before.previous.as_str(), status.as_str());
    Ok(vec![announce(
        status.external_event(),
        event,
        json!({"status": status.as_str(), "previous_status": before.previous.as_str(), "name": before.name}),
    )])
}

/// `status.host.{id}`: online/offline reported by the host itself.
pub struct HostStatusHandler;

impl EventHandler for HostStatusHandler {
    fn handle(&self, tx: &mut Tx<'_>, event: &Envelope<'_>) -> Handled {
        let msg: HostStatusUpdate = parse(event)?;
        check_key_id(event, msg.server_id)?;
        set_host_status(tx, event, msg.server_id, msg.status)
    }
}

/// `health.host.{id}`: a heartbeat. Refreshes `last_seen` and brings an offline host back.
pub struct HeartbeatHandler;

impl EventHandler for HeartbeatHandler {
    fn handle(&self, tx: &mut Tx<'_>, event: &Envelope<'_>) -> Handled {
        let msg: HealthUpdate = parse(event)?;
        check_key_id(event, msg.server_id)?;
        log::debug!(server_id = msg.server_id, total = msg.session_stats.total,
            running = msg.session_stats.running; "heartbeat");
        set_host_status(tx, event, msg.server_id, HostStatus::Online)
    }
}

/// `status.session.{id}`: enforces the session state machine.
pub struct SessionStatusHandler;

impl EventHandler for SessionStatusHandler {
    fn handle(&self, tx: &mut Tx<'_>, event: &Envelope<'_>) -> Handled {
        let msg: SessionStatusUpdate = parse(event)?;
        check_key_id(event, msg.session_id)?;
        let current = sessions::lock(tx, msg.session_id)?
            .ok_or_else(|| HandleError::Permanent(format!("unknown session {}", msg.session_id)))?;
        if let Some(sgc) = msg.sgc_id.filter(|sgc| *sgc != current.sgc_id) {
            return Err(HandleError::Permanent(format!(
                "session {} belongs to deployment {}, not {sgc}",
                msg.session_id, current.sgc_id
            )));
        }
        match current.status.transition_to(msg.status) {
            Transition::Repeat => return Ok(Vec::new()),
            Transition::Invalid
                if event.redelivered
                    && msg.status.lifecycle_rank() < current.status.lifecycle_rank() =>
            {
                // A redelivery of a report the session has already moved past: applied before.
                log::info!(session_id = msg.session_id;
                    "ignoring redelivered {} (session is {})", msg.status, current.status);
                return Ok(Vec::new());
            }
            Transition::Invalid => {
                return Err(HandleError::Permanent(format!(
                    "invalid transition for session {}: {} -> {}",
                    msg.session_id, current.status, msg.status
                )))
            }
            Transition::Move => {}
        }
        let applied = sessions::apply_transition(tx, msg.session_id, msg.status, msg.exit_code)?;
        log::info!(session_id = msg.session_id, server_id = current.server_id;
            "session {} -> {}", current.status, msg.status);
        let Some(key) = msg.status.external_event() else {
            return Ok(Vec::new());
        };
        Ok(vec![announce(
            key,
            event,
            json!({
                "previous_status": current.status.as_str(),
                "sgc_id": current.sgc_id,
                "server_id": current.server_id,
                "started_at": applied.started_at,
                "ended_at": applied.ended_at,
                "ports_freed": applied.ports_freed,
            }),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_routes_by_pattern() {
        let registry = HandlerRegistry::standard();
        assert!(registry.find("status.host.1").is_some());
        assert!(registry.find("status.session.7").is_some());
        assert!(registry.find("health.host.1").is_some());
        assert!(registry.find("health.other.1").is_none());
        assert!(registry.find("logs.session.7").is_none());
    }

    #[test]
    fn error_classification() {
        assert_eq!(
            HandleError::Permanent("x".into()).kind(),
            FailureKind::Permanent
        );
        let ev = Envelope {
            routing_key: "status.host.2",
            body: br#"{"server_id":3,"status":"online"}"#,
            message_id: None,
            redelivered: false,
        };
        let err = check_key_id(&ev, 3).unwrap_err();
        assert!(matches!(err, HandleError::Permanent(ref m) if m.contains("does not match")));
        let bad = Envelope {
            body: b"{not json",
            ..ev.clone()
        };
        let err = parse::<HostStatusUpdate>(&bad).unwrap_err();
        assert!(err.to_string().starts_with("malformed message"));
        assert_eq!(err.kind(), FailureKind::Permanent);
    }

    #[test]
    fn announcements_keep_the_payload_and_add_changes() {
        let ev = Envelope {
            routing_key: "status.host.3",
            body: br#"{"server_id":3,"status":"online","extra":1}"#,
            message_id: None,
            redelivered: false,
        };
        let e = announce(
            "manman.host.online",
            &ev,
            json!({"previous_status": "offline"}),
        );
        assert_eq!(e.payload["extra"], 1);
        assert_eq!(e.payload["previous_status"], "offline");
        assert_eq!(e.payload["server_id"], 3);
    }
}
