//! Event handlers, registered by routing pattern: host events (status reports and heartbeats)
//! and session status. A handler gets every event of its kind from one batch, in delivery order,
//! validates them against the state machines, writes the net result with a constant number of
//! statements, and returns per event either the external events it must announce or why it can
//! never apply. It never publishes itself: the pipeline puts the events in the outbox.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::bus::topic_matches;
use crate::db::outbox::OutboxEvent;
use crate::db::sessions::{Restart, SessionChange};
use crate::db::{servers, sessions, Tx};
use crate::wire::external::{HostChanged, SessionChanged, SessionRestarted, PROCESSOR_FIELDS};
use crate::wire::session_status::Transition;
use crate::wire::{
    routing, HealthUpdate, HostCapacity, HostStatus, HostStatusUpdate, SessionSample,
    SessionStatus, SessionStatusUpdate,
};

/// One delivery as the handlers see it.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub message_id: Option<&'a str>,
    /// The AMQP `user_id`: the broker user that published it (the broker refuses a message
    /// whose `user_id` is not its connection's user).
    pub user_id: Option<&'a str>,
    /// The broker delivered it before (so it may have been applied already).
    pub redelivered: bool,
}

/// Who may report for a host: with per-host broker users, only that host's own user.
#[derive(Debug, Clone, Copy, Default)]
pub struct SenderCheck {
    pub require_host_users: bool,
}

impl SenderCheck {
    /// `Err(reason)` when `event` may not speak for `server_id`.
    pub fn check(&self, event: &Envelope<'_>, server_id: i64) -> Result<(), String> {
        if !self.require_host_users {
            return Ok(());
        }
        let expected = routing::host_broker_user(server_id);
        match event.user_id {
            Some(user) if user == expected => Ok(()),
            Some(user) => Err(format!(
                "published by broker user {user:?}, but only {expected:?} may report for host {server_id}"
            )),
            None => Err(format!(
                "not signed (no user_id): only {expected:?} may report for host {server_id}"
            )),
        }
    }
}

/// The fate of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// Applied (or a harmless repeat); these external events announce the change.
    Applied(Vec<OutboxEvent>),
    /// Can never apply: dead-letter it with this reason.
    Rejected(String),
}

pub trait EventHandler: Send {
    /// Applies `events` in order through the caller's transaction; one result per event.
    /// A database error aborts the whole call (the caller rolls back).
    fn handle_batch(
        &self,
        tx: &mut Tx<'_>,
        events: &[&Envelope<'_>],
    ) -> Result<Vec<Handled>, postgres::Error>;
}

/// Handlers by routing pattern; the first matching pattern wins.
#[derive(Default)]
pub struct HandlerRegistry {
    patterns: Vec<(String, usize)>,
    handlers: Vec<Box<dyn EventHandler>>,
}

impl HandlerRegistry {
    /// Registers one handler for several patterns (events it gets keep their relative order).
    pub fn register(&mut self, patterns: &[&str], handler: impl EventHandler + 'static) {
        let index = self.handlers.len();
        self.handlers.push(Box::new(handler));
        self.patterns
            .extend(patterns.iter().map(|p| (p.to_string(), index)));
    }

    /// The index of the handler for `routing_key`.
    pub fn route(&self, routing_key: &str) -> Option<usize> {
        self.patterns
            .iter()
            .find(|(pattern, _)| topic_matches(pattern, routing_key))
            .map(|(_, i)| *i)
    }

    pub fn handler(&self, index: usize) -> &dyn EventHandler {
        self.handlers[index].as_ref()
    }

    /// The processor's handlers for the contract's routing keys.
    pub fn standard(senders: SenderCheck, history_bucket_seconds: i32) -> Self {
        let mut registry = HandlerRegistry::default();
        registry.register(
            &["status.host.*", "health.host.*"],
            HostEventsHandler {
                senders,
                history_bucket_seconds,
            },
        );
        registry.register(&["status.session.*"], SessionStatusHandler { senders });
        registry
    }
}

fn parse<T: DeserializeOwned>(event: &Envelope<'_>) -> Result<T, String> {
    serde_json::from_slice(event.body).map_err(|e| format!("malformed message: {e}"))
}

/// The routing key's id must agree with the payload's, or someone is confused.
fn check_key_id(event: &Envelope<'_>, payload_id: i64) -> Result<(), String> {
    match routing::trailing_id(event.routing_key) {
        Some(id) if id == payload_id => Ok(()),
        _ => Err(format!(
            "routing key {} does not match payload id {payload_id}",
            event.routing_key
        )),
    }
}

/// The external event: the payload as received plus what changed (`wire::external`, which
/// wins over anything the host wrote under the same name).
fn announce(routing_key: &str, event: &Envelope<'_>, changes: &impl Serialize) -> OutboxEvent {
    let mut payload = serde_json::from_slice::<Value>(event.body).unwrap_or_else(|_| json!({}));
    let changes = serde_json::to_value(changes).expect("an announcement serialises");
    if let (Some(obj), Value::Object(extra)) = (payload.as_object_mut(), changes) {
        for field in PROCESSOR_FIELDS {
            obj.remove(field);
        }
        obj.extend(extra);
    }
    OutboxEvent {
        routing_key: routing_key.to_string(),
        payload,
    }
}

/// Parses every event; the ones that parse are returned with their position.
fn parse_all<T: DeserializeOwned>(
    events: &[&Envelope<'_>],
    id_of: impl Fn(&T) -> i64,
    results: &mut [Option<Handled>],
) -> Vec<(usize, T)> {
    let mut parsed = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        match parse::<T>(event).and_then(|msg| check_key_id(event, id_of(&msg)).map(|_| msg)) {
            Ok(msg) => parsed.push((i, msg)),
            Err(reason) => results[i] = Some(Handled::Rejected(reason)),
        }
    }
    parsed
}

/// `status.host.{id}` (online/offline reported by the host) and `health.host.{id}` (heartbeats:
/// refresh `last_seen`, bring an offline host back online). Announces status changes only.
pub struct HostEventsHandler {
    pub senders: SenderCheck,
    /// One history point per session per this many seconds (`SAMPLE_HISTORY_RESOLUTION_SECONDS`).
    pub history_bucket_seconds: i32,
}

impl EventHandler for HostEventsHandler {
    fn handle_batch(
        &self,
        tx: &mut Tx<'_>,
        events: &[&Envelope<'_>],
    ) -> Result<Vec<Handled>, postgres::Error> {
        let mut results: Vec<Option<Handled>> = vec![None; events.len()];
        let mut reports: Vec<(usize, i64, HostStatus, Option<i64>)> =
            Vec::with_capacity(events.len());
        let mut capacities: Vec<(usize, HostCapacity)> = Vec::new();
        let mut samples: Vec<(usize, i64, SessionSample)> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let report = if event.routing_key.starts_with("health.") {
                parse::<HealthUpdate>(event).and_then(|m| {
                    log::debug!(server_id = m.server_id, total = m.session_stats.total,
                        running = m.session_stats.running; "heartbeat");
                    check_key_id(event, m.server_id)?;
                    samples.extend(m.sessions.iter().map(|s| (i, m.server_id, s.clone())));
                    capacities.extend(m.capacity.map(|c| (i, c)));
                    Ok((m.server_id, HostStatus::Online, m.sent_at_ms))
                })
            } else {
                parse::<HostStatusUpdate>(event).and_then(|m| {
                    check_key_id(event, m.server_id).map(|_| (m.server_id, m.status, None))
                })
            };
            let report = report.and_then(|r| self.senders.check(event, r.0).map(|_| r));
            match report {
                Ok((id, status, sent)) => reports.push((i, id, status, sent)),
                Err(reason) => results[i] = Some(Handled::Rejected(reason)),
            }
        }
        // Samples only from heartbeats that passed every check, and (`store_samples` joins on
        // it) only for the host's own sessions.
        let samples: Vec<(i64, SessionSample)> = samples
            .into_iter()
            .filter(|(i, _, _)| reports.iter().any(|r| r.0 == *i))
            .map(|(_, server_id, s)| (server_id, s))
            .collect();
        let ids: Vec<i64> = reports.iter().map(|r| r.1).collect();
        let mut hosts = servers::lock_many(tx, &ids)?;
        let mut touched: Vec<servers::HostUpdate> = Vec::new();
        for (i, server_id, status, sent) in reports {
            let Some(host) = hosts.get_mut(&server_id) else {
                results[i] = Some(Handled::Rejected(format!("unknown host {server_id}")));
                continue;
            };
            let capacity = capacities.iter().find(|c| c.0 == i).map(|c| c.1);
            match touched.iter_mut().find(|t| t.server_id == server_id) {
                Some(t) => {
                    t.sent_at_ms = sent;
                    t.capacity = capacity.or(t.capacity);
                }
                None => touched.push(servers::HostUpdate {
                    server_id,
                    status,
                    sent_at_ms: sent,
                    capacity,
                }),
            }
            if host.status == status {
                results[i] = Some(Handled::Applied(Vec::new()));
                continue;
            }
            log::info!(server_id = server_id, name = host.name.as_str();
                "host {} -> {}", host.status.as_str(), status.as_str());
            let event = announce(
                status.external_event(),
                events[i],
                &HostChanged {
                    status: status.as_str().into(),
                    previous_status: host.status.as_str().into(),
                    name: host.name.clone(),
                },
            );
            host.status = status;
            results[i] = Some(Handled::Applied(vec![event]));
        }
        for t in &mut touched {
            t.status = hosts[&t.server_id].status;
        }
        servers::apply_statuses(tx, &touched)?;
        sessions::store_samples(tx, &samples, self.history_bucket_seconds)?;
        Ok(results
            .into_iter()
            .map(|r| r.expect("every event decided"))
            .collect())
    }
}

/// `status.session.{id}`: enforces the session state machine.
pub struct SessionStatusHandler {
    pub senders: SenderCheck,
}

impl EventHandler for SessionStatusHandler {
    fn handle_batch(
        &self,
        tx: &mut Tx<'_>,
        events: &[&Envelope<'_>],
    ) -> Result<Vec<Handled>, postgres::Error> {
        let mut results: Vec<Option<Handled>> = vec![None; events.len()];
        let reports = parse_all::<SessionStatusUpdate>(events, |m| m.session_id, &mut results);
        let ids: Vec<i64> = reports.iter().map(|(_, m)| m.session_id).collect();
        let mut current = sessions::lock_many(tx, &ids)?;
        let mut changes: HashMap<i64, SessionChange> = HashMap::new();
        let mut order: Vec<i64> = Vec::new();
        // (event index, session id, from, to) for each move, to announce once applied.
        let mut moves: Vec<(usize, i64, SessionStatus, SessionStatus)> = Vec::new();
        // (event index, session id, restart count) for each crash-restart.
        let mut restarts: Vec<(usize, i64, i32, Option<String>)> = Vec::new();
        for (i, msg) in reports {
            let Some(session) = current.get_mut(&msg.session_id) else {
                results[i] = Some(Handled::Rejected(format!(
                    "unknown session {}",
                    msg.session_id
                )));
                continue;
            };
            if let Err(reason) = self.senders.check(events[i], session.server_id) {
                results[i] = Some(Handled::Rejected(reason));
                continue;
            }
            if let Some(sgc) = msg.sgc_id.filter(|sgc| *sgc != session.sgc_id) {
                results[i] = Some(Handled::Rejected(format!(
                    "session {} belongs to deployment {}, not {sgc}",
                    msg.session_id, session.sgc_id
                )));
                continue;
            }
            // A crash-restart: the status stays, the count and the last exit are recorded and
            // announced (once: a repeat of the same count is nothing new).
            let restarted = msg
                .restart_count
                .map(|n| n as i32)
                .filter(|n| *n > session.restart_count && session.status.is_live());
            if let Some(n) = restarted {
                log::info!(session_id = msg.session_id, server_id = session.server_id;
                    "session restarted after a crash (restart {n}, exit {:?})", msg.exit_code);
                session.restart_count = n;
                let change = changes.entry(msg.session_id).or_insert_with(|| {
                    order.push(msg.session_id);
                    SessionChange::unchanged(msg.session_id, session.status)
                });
                change.restarted = Some(Restart {
                    count: n,
                    exit_code: msg.exit_code,
                    reason: msg.reason.clone(),
                });
                restarts.push((i, msg.session_id, n, msg.reason.clone()));
            }
            match session.status.transition_to(msg.status) {
                Transition::Repeat => {
                    results[i] = Some(Handled::Applied(Vec::new()));
                    continue;
                }
                Transition::Invalid if session.status.is_terminal() => {
                    // The session was ended here (host lost, forced stop, start timed out) and
                    // its host reports late. The session stays ended; the host's reconciliation
                    // stops whatever still runs.
                    log::info!(session_id = msg.session_id;
                        "late report {} for a session already {}; ignored", msg.status, session.status);
                    results[i] = Some(Handled::Applied(Vec::new()));
                    continue;
                }
                Transition::Invalid
                    if events[i].redelivered
                        && msg.status.lifecycle_rank() < session.status.lifecycle_rank() =>
                {
                    // A redelivered report of a state the session has already left: applied before.
                    log::info!(session_id = msg.session_id;
                        "ignoring redelivered {} (session is {})", msg.status, session.status);
                    results[i] = Some(Handled::Applied(Vec::new()));
                    continue;
                }
                Transition::Invalid => {
                    results[i] = Some(Handled::Rejected(format!(
                        "invalid transition for session {}: {} -> {}",
                        msg.session_id, session.status, msg.status
                    )));
                    continue;
                }
                Transition::Move => {}
            }
            log::info!(session_id = msg.session_id, server_id = session.server_id;
                "session {} -> {}", session.status, msg.status);
            let change = changes.entry(msg.session_id).or_insert_with(|| {
                order.push(msg.session_id);
                SessionChange::unchanged(msg.session_id, msg.status)
            });
            change.status = msg.status;
            change.started |= msg.status == SessionStatus::Running;
            if msg.status.is_terminal() {
                change.ended = true;
                change.exit_code = msg.exit_code;
                change.reason = msg.reason.clone();
            }
            moves.push((i, msg.session_id, session.status, msg.status));
            session.status = msg.status;
            results[i] = Some(Handled::Applied(Vec::new()));
        }
        let ordered: Vec<SessionChange> = order.iter().map(|id| changes[id].clone()).collect();
        let applied = sessions::apply_changes(tx, &ordered)?;
        for (i, session_id, count, reason) in restarts {
            let session = &current[&session_id];
            let event = announce(
                "manman.session.restarted",
                events[i],
                &SessionRestarted {
                    restart_count: count,
                    reason,
                    sgc_id: session.sgc_id,
                    server_id: session.server_id,
                },
            );
            results[i] = Some(Handled::Applied(vec![event]));
        }
        for (i, session_id, previous, to) in moves {
            let Some(key) = to.external_event() else {
                continue;
            };
            let session = &current[&session_id];
            let recorded = applied.get(&session_id).cloned().unwrap_or_default();
            let terminal = to.is_terminal();
            let event = announce(
                key,
                events[i],
                &SessionChanged {
                    previous_status: previous.as_str().into(),
                    sgc_id: session.sgc_id,
                    server_id: session.server_id,
                    started_at: recorded.started_at,
                    ended_at: if terminal { recorded.ended_at } else { None },
                    ports_freed: if terminal { recorded.ports_freed } else { 0 },
                },
            );
            match &mut results[i] {
                Some(Handled::Applied(events)) => events.push(event),
                other => *other = Some(Handled::Applied(vec![event])),
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every event decided"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_routes_by_pattern() {
        let registry = HandlerRegistry::standard(SenderCheck::default(), 60);
        let host = registry.route("status.host.1").unwrap();
        assert_eq!(
            registry.route("health.host.1"),
            Some(host),
            "one handler keeps host order"
        );
        let session = registry.route("status.session.7").unwrap();
        assert_ne!(host, session);
        assert!(registry.route("health.other.1").is_none());
        assert!(registry.route("logs.session.7").is_none());
    }

    #[test]
    fn permanent_errors_are_recognised_before_the_database() {
        let ev = Envelope {
            routing_key: "status.host.2",
            body: br#"{"server_id":3,"status":"online"}"#,
            message_id: None,
            user_id: None,
            redelivered: false,
        };
        let err = check_key_id(&ev, 3).unwrap_err();
        assert!(err.contains("does not match"));
        let bad = Envelope {
            body: b"{not json",
            ..ev.clone()
        };
        assert!(parse::<HostStatusUpdate>(&bad)
            .unwrap_err()
            .starts_with("malformed message"));
        let mut results = vec![None, None];
        let good = Envelope {
            routing_key: "status.host.3",
            ..ev.clone()
        };
        let parsed = parse_all::<HostStatusUpdate>(&[&bad, &good], |m| m.server_id, &mut results);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, 1);
        assert!(matches!(&results[0], Some(Handled::Rejected(r)) if r.starts_with("malformed")));
    }

    #[test]
    fn with_host_broker_users_only_a_host_speaks_for_itself() {
        let ev = |user: Option<&'static str>| Envelope {
            routing_key: "status.host.3",
            body: b"{}",
            message_id: None,
            user_id: user,
            redelivered: false,
        };
        let open = SenderCheck::default();
        assert!(open.check(&ev(None), 3).is_ok());
        let strict = SenderCheck {
            require_host_users: true,
        };
        assert!(strict.check(&ev(Some("manman-host-3")), 3).is_ok());
        let forged = strict.check(&ev(Some("manman-host-4")), 3).unwrap_err();
        assert!(
            forged.contains("\"manman-host-4\"") && forged.contains("host 3"),
            "{forged}"
        );
        assert!(strict
            .check(&ev(None), 3)
            .unwrap_err()
            .contains("not signed"));
    }

    #[test]
    fn announcements_keep_the_payload_and_add_changes() {
        let ev = Envelope {
            routing_key: "status.host.3",
            body: br#"{"server_id":3,"status":"online","extra":1}"#,
            message_id: None,
            user_id: None,
            redelivered: false,
        };
        let e = announce(
            "manman.host.online",
            &ev,
            &json!({"previous_status": "offline"}),
        );
        assert_eq!(e.payload["extra"], 1);
        assert_eq!(e.payload["previous_status"], "offline");
        assert_eq!(e.payload["server_id"], 3);
        // A host that names itself in a session report is not believed.
        let forged = Envelope {
            routing_key: "status.session.9",
            body:
                br#"{"session_id":9,"status":"crashed","name":"@everyone","previous_status":"x"}"#,
            ..ev
        };
        let e = announce("manman.session.crashed", &forged, &json!({"sgc_id": 4}));
        assert!(e.payload.get("name").is_none(), "{}", e.payload);
        assert!(e.payload.get("previous_status").is_none());
        assert_eq!(e.payload["sgc_id"], 4);
    }
}
