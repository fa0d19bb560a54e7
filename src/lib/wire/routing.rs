//! Exchange, queue and routing-key names from the RabbitMQ contract.

/// The internal topic exchange hosts publish to.
pub const MANMAN_EXCHANGE: &str = "manman";
/// The default name of the external topic exchange (`EXTERNAL_EXCHANGE`).
pub const DEFAULT_EXTERNAL_EXCHANGE: &str = "external";

pub const PROCESSOR_QUEUE: &str = "processor-events";
pub const PROCESSOR_DLQ: &str = "processor-events-dlq";
pub const PROCESSOR_BINDINGS: [&str; 3] = ["status.host.#", "status.session.#", "health.#"];

/// Unreadable `logs.session.*` messages, with the reason header.
pub const LOG_DLQ: &str = "log-processor-dlq";
/// Header carrying why a message was dead-lettered.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-manman-dead-letter-reason";

pub fn host_status(server_id: i64) -> String {
    format!("status.host.{server_id}")
}

pub fn session_status(session_id: i64) -> String {
    format!("status.session.{session_id}")
}

pub fn host_health(server_id: i64) -> String {
    format!("health.host.{server_id}")
}

pub fn session_logs(session_id: i64) -> String {
    format!("logs.session.{session_id}")
}

/// What a log processor's queue is bound with: every session's console batches.
pub const SESSION_LOGS_PATTERN: &str = "logs.session.*";

/// One log processor's own queue for every session's lines. Each instance consumes its own
/// copy, so replicas never split the lines between them.
pub fn log_ingest_queue(instance: &str) -> String {
    format!("logs.ingest.{instance}")
}

pub fn host_commands_queue(server_id: i64) -> String {
    format!("host-{server_id}-commands")
}

/// Commands a host refused as not signed by the API, with the reason (`x-dead-letter-reason`).
pub fn host_refused_commands_queue(server_id: i64) -> String {
    format!("host-{server_id}-commands-refused")
}

/// The id at the end of a routing key such as `status.session.7`.
pub fn trailing_id(routing_key: &str) -> Option<i64> {
    routing_key.rsplit('.').next()?.parse().ok()
}

/// The broker user of host `server_id` when each host has its own
/// (`scripts/provision-host-broker-user`): the processor accepts its reports only from it.
pub fn host_broker_user(server_id: i64) -> String {
    format!("manman-host-{server_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        assert_eq!(host_status(1), "status.host.1");
        assert_eq!(session_status(7), "status.session.7");
        assert_eq!(host_health(1), "health.host.1");
        assert_eq!(session_logs(7), "logs.session.7");
        assert_eq!(host_commands_queue(2), "host-2-commands");
        assert_eq!(trailing_id("status.session.42"), Some(42));
        assert_eq!(trailing_id("status.session.x"), None);
    }
}
