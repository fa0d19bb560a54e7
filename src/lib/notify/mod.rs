//! `manman-notify`: a subscriber of the external events (`manman.host.*`,
//! `manman.session.*`). Consumes the external exchange (`manman.#`) on its own durable queue, logs every event as a JSON line, and
//! posts the ones operators care about to a Slack-compatible webhook. A webhook outage is
//! retried with backoff a bounded number of times; then the event goes to `notify-events-dlq`
//! with the reason. Nothing is acknowledged before it is delivered or dead-lettered.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use amiquip::{Channel, Delivery};
use serde_json::{json, Value};

use crate::bus::durable_queue::DurableQueue;
use crate::bus::{
    spawn_consumer, topic_matches, topology, BatchContext, BatchHandler, BusError,
    ConsumerSettings, OutgoingMessage,
};
use crate::config::{self, ConfigError, Env};
use crate::health::{HealthServer, ReadinessCheck};
use crate::lifecycle::{ShutdownSignal, Supervisor};
use crate::metrics::{render_sample, Counter};
use crate::retry::Backoff;
use crate::wire::routing;

pub const QUEUE: &str = "notify-events";
pub const DLQ: &str = "notify-events-dlq";
pub const DEFAULT_EVENTS: &str = "manman.host.offline,manman.host.stale,manman.session.crashed,\
     manman.session.lost,manman.session.restarted";

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub rabbitmq_url: String,
    pub external_exchange: String,
    pub webhook_url: String,
    /// Routing patterns worth a message (`NOTIFY_EVENTS`, comma-separated topic patterns).
    pub notify_patterns: Vec<String>,
    pub attempts: u32,
    pub backoff: Backoff,
    pub webhook_timeout: Duration,
    pub health_addr: String,
    /// Signs every post (`X-ManMan-Signature`) when set (`WEBHOOK_SECRET[_FILE]`).
    pub webhook_secret: Option<String>,
}

/// The header carrying a post's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>" with WEBHOOK_SECRET>`. A receiver recomputes it, compares in constant time,
/// and refuses a `t` more than a few minutes old (a replay).
pub const SIGNATURE_HEADER: &str = "X-ManMan-Signature";

/// The [`SIGNATURE_HEADER`] value for `body` sent at `unix_seconds`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("t={unix_seconds},v1={}", hex::encode(digest))
}

impl NotifyConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let webhook_url = env
            .get("WEBHOOK_URL")
            .ok_or_else(|| {
                ConfigError::new(
                    "WEBHOOK_URL",
                    "is required (a Slack-compatible incoming webhook)",
                )
            })?
            .to_string();
        if !(webhook_url.starts_with("https://") || webhook_url.starts_with("http://")) {
            return Err(ConfigError::new(
                "WEBHOOK_URL",
                "must be an http:// or https:// URL",
            ));
        }
        let attempts: u32 = env.parse("NOTIFY_ATTEMPTS", 8)?;
        if attempts == 0 {
            return Err(ConfigError::new("NOTIFY_ATTEMPTS", "must be at least 1"));
        }
        Ok(NotifyConfig {
            rabbitmq_url: config::rabbitmq_url(env)?,
            external_exchange: env.string("EXTERNAL_EXCHANGE", routing::DEFAULT_EXTERNAL_EXCHANGE),
            webhook_url,
            notify_patterns: env
                .string("NOTIFY_EVENTS", DEFAULT_EVENTS)
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            attempts,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 2.0),
            webhook_timeout: Duration::from_secs(10),
            health_addr: config::health_address(env, 8082)?,
            webhook_secret: crate::auth::secret::from_env(
                env,
                "WEBHOOK_SECRET",
                "WEBHOOK_SECRET_FILE",
            )?,
        })
    }
}

#[derive(Default, Debug)]
pub struct NotifyMetrics {
    pub events: Counter,
    pub delivered: Counter,
    pub retries: Counter,
    pub dead_lettered: Counter,
}

/// The Slack-compatible message for an event.
pub fn message_for(routing_key: &str, event: &Value) -> Value {
    let host = event["name"]
        .as_str()
        .map(str::to_string)
        .or_else(|| event["server_id"].as_i64().map(|id| format!("host {id}")))
        .unwrap_or_else(|| "a host".into());
    let because = event["reason"]
        .as_str()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let text = match routing_key {
        "manman.host.offline" => format!(":red_circle: {host} went offline"),
        "manman.host.stale" => format!(
            ":warning: {host} stopped sending heartbeats (last seen {}); marked offline",
            event["last_seen"].as_str().unwrap_or("never")
        ),
        "manman.host.online" => format!(":large_green_circle: {host} is online"),
        "manman.session.crashed" => format!(
            ":boom: session {} on {host} crashed (exit code {}){because}",
            event["session_id"], event["exit_code"]
        ),
        "manman.session.lost" => {
            format!(
                ":ghost: session {} on {host} was lost{because}",
                event["session_id"]
            )
        }
        "manman.session.restarted" => format!(
            ":recycle: session {} on {host} crashed (exit code {}) and was restarted (restart {}){because}",
            event["session_id"], event["exit_code"], event["restart_count"]
        ),
        "manman.session.running" => format!(
            ":rocket: session {} on {host} is running",
            event["session_id"]
        ),
        "manman.session.stopped" => format!(
            ":stop_sign: session {} on {host} stopped",
            event["session_id"]
        ),
        other => format!("{other}: {event}"),
    };
    json!({ "text": text, "event": routing_key, "payload": event })
}

struct Notifier {
    config: NotifyConfig,
    agent: ureq::Agent,
    metrics: Arc<NotifyMetrics>,
}

impl Notifier {
    fn post(&self, body: &Value) -> Result<(), String> {
        let bytes = body.to_string();
        let mut request = self
            .agent
            .post(&self.config.webhook_url)
            .set("Content-Type", "application/json");
        if let Some(secret) = &self.config.webhook_secret {
            let now = chrono::Utc::now().timestamp();
            request = request.set(SIGNATURE_HEADER, &signature(secret, now, bytes.as_bytes()));
        }
        match request.send_string(&bytes) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, _)) => Err(format!("webhook answered HTTP {code}")),
            Err(e) => Err(format!("webhook unreachable: {}", e.kind())),
        }
    }

    /// Delivers with bounded retries; `Err(reason)` once they are used up.
    fn deliver(
        &self,
        body: &Value,
        shutdown: &ShutdownSignal,
    ) -> Result<(), Result<String, BusError>> {
        let mut last = String::new();
        for attempt in 0..self.config.attempts {
            if attempt > 0 {
                self.metrics.retries.inc();
                if shutdown.wait(self.config.backoff.delay(attempt - 1)) {
                    // Not acknowledged: it will be redelivered after the restart.
                    return Err(Err(BusError::Shutdown));
                }
            }
            match self.post(body) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    log::warn!(attempt = attempt + 1; "notification not delivered: {e}");
                    last = e;
                }
            }
        }
        Err(Ok(format!(
            "gave up after {} attempts: {last}",
            self.config.attempts
        )))
    }
}

impl BatchHandler for Notifier {
    fn declare(&mut self, channel: &Channel) -> Result<(), BusError> {
        topology::declare_external_exchange(channel, &self.config.external_exchange)?;
        Ok(())
    }

    fn durable_queue(&self) -> Option<DurableQueue> {
        Some(DurableQueue {
            name: QUEUE.into(),
            dead_letters_to: Some(DLQ.into()),
            declare_dead_letter_queue: true,
            single_active_consumer: true,
            bindings: vec![(self.config.external_exchange.clone(), "manman.#".into())],
            arguments: Default::default(),
        })
    }

    fn handle(&mut self, ctx: &mut BatchContext<'_>, batch: Vec<Delivery>) -> Result<(), BusError> {
        for delivery in batch {
            self.metrics.events.inc();
            let event: Value = serde_json::from_slice(&delivery.body).unwrap_or(Value::Null);
            log::info!(event = delivery.routing_key.as_str(), payload = event.to_string().as_str();
                "external event");
            let wanted = self
                .config
                .notify_patterns
                .iter()
                .any(|p| topic_matches(p, &delivery.routing_key));
            if wanted {
                let body = message_for(&delivery.routing_key, &event);
                match self.deliver(&body, ctx.shutdown) {
                    Ok(()) => self.metrics.delivered.inc(),
                    Err(Err(e)) => return Err(e),
                    Err(Ok(reason)) => {
                        log::error!(event = delivery.routing_key.as_str(), reason = reason.as_str();
                            "dead-lettering notification");
                        let dead = OutgoingMessage::raw("", DLQ, delivery.body.clone())
                            .with_header(routing::DEAD_LETTER_REASON_HEADER, reason)
                            .with_header("x-original-routing-key", delivery.routing_key.clone());
                        ctx.publisher
                            .publish_all(&[dead], Duration::from_secs(10))?;
                        self.metrics.dead_lettered.inc();
                    }
                }
            }
            ctx.ack_through(delivery)?;
        }
        Ok(())
    }
}

pub struct RunningNotifier {
    pub metrics: Arc<NotifyMetrics>,
    pub connected: Arc<AtomicBool>,
    pub health_port: u16,
}

pub fn start(config: NotifyConfig, supervisor: &mut Supervisor) -> Result<RunningNotifier, String> {
    log::info!(broker = config::redact_url(&config.rabbitmq_url).as_str(),
        events = config.notify_patterns.join(",").as_str(); "starting notifier");
    if config.webhook_secret.is_none() {
        log::warn!(
            "WEBHOOK_SECRET is not set: posts are not signed, and the receiver cannot \
                    tell them from forgeries"
        );
    }
    let metrics = Arc::new(NotifyMetrics::default());
    let connected = Arc::new(AtomicBool::new(false));
    let health = {
        let connected = connected.clone();
        let m = metrics.clone();
        HealthServer::bind(
            &config.health_addr,
            vec![ReadinessCheck::flag(
                "broker",
                connected,
                "consumer is not connected",
            )],
            Some(Arc::new(move || {
                let mut out = String::new();
                render_sample(
                    &mut out,
                    "manman_notify_events_total",
                    "counter",
                    "External events seen, and what became of the notifications.",
                    &[
                        ("outcome=\"received\"", m.events.get()),
                        ("outcome=\"delivered\"", m.delivered.get()),
                        ("outcome=\"dead_lettered\"", m.dead_lettered.get()),
                    ],
                );
                render_sample(
                    &mut out,
                    "manman_notify_webhook_retries_total",
                    "counter",
                    "Webhook posts retried.",
                    &[("", m.retries.get())],
                );
                out
            })),
        )?
    };
    let health_port = health.start(supervisor)?;
    let settings = ConsumerSettings {
        url: config.rabbitmq_url.clone(),
        queue: QUEUE.into(),
        prefetch: 10,
        max_batch: 10,
        who: "notify-consumer",
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(config.webhook_timeout)
        .build();
    let notifier = Notifier {
        config,
        agent,
        metrics: metrics.clone(),
    };
    spawn_consumer(
        supervisor,
        "consumer",
        settings,
        notifier,
        connected.clone(),
    )?;
    Ok(RunningNotifier {
        metrics,
        connected,
        health_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_host_and_what_happened() {
        let m = message_for(
            "manman.session.crashed",
            &json!({"session_id": 7, "server_id": 1, "exit_code": 137}),
        );
        assert_eq!(
            m["text"],
            ":boom: session 7 on host 1 crashed (exit code 137)"
        );
        let m = message_for(
            "manman.session.restarted",
            &json!({"session_id": 7, "server_id": 1, "exit_code": 3, "restart_count": 2}),
        );
        assert_eq!(
            m["text"],
            ":recycle: session 7 on host 1 crashed (exit code 3) and was restarted (restart 2)"
        );
        let m = message_for(
            "manman.session.restarted",
            &json!({"session_id": 7, "server_id": 1, "exit_code": 143, "restart_count": 3,
                    "reason": "failed its liveness probe 3 times in a row"}),
        );
        assert!(m["text"]
            .as_str()
            .unwrap()
            .ends_with("(restart 3): failed its liveness probe 3 times in a row"));
        let m = message_for(
            "manman.session.lost",
            &json!({"session_id": 8, "server_id": 1, "reason": "host offline for more than 120 s"}),
        );
        assert!(m["text"]
            .as_str()
            .unwrap()
            .ends_with(": host offline for more than 120 s"));
        let m = message_for(
            "manman.host.stale",
            &json!({"name": "alpha", "last_seen": "2026-11-23T10:00:00Z"}),
        );
        assert!(m["text"]
            .as_str()
            .unwrap()
            .contains("alpha stopped sending heartbeats"));
    }

    #[test]
    fn config_requires_a_webhook() {
        let err = NotifyConfig::from_env(&Env::from_pairs(&[])).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_URL");
        let err =
            NotifyConfig::from_env(&Env::from_pairs(&[("WEBHOOK_URL", "ftp://x")])).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_URL");
        let ok = NotifyConfig::from_env(&Env::from_pairs(&[
            ("WEBHOOK_URL", "https://hooks.example/x"),
            ("NOTIFY_EVENTS", "manman.session.*, manman.host.stale"),
        ]))
        .unwrap();
        assert_eq!(
            ok.notify_patterns,
            vec!["manman.session.*", "manman.host.stale"]
        );
    }
}
