//! Commands to a host by request/reply over RabbitMQ. Each carries its deadline
//! (`expires_at_ms` in the body, and the AMQP expiration): once the API has given up waiting,
//! the host must not act on it, so a late command never starts a game nobody tracks.

use std::time::Duration;

use super::error::ApiError;
use super::ApiService;
use crate::bus::{OutgoingMessage, RpcError};
use crate::wire::commands::{CommandKind, CommandReply, Deadline, Envelope};
use crate::wire::routing;

impl ApiService {
    /// Sends a command to a host and waits up to the command timeout for its reply.
    pub(crate) fn command(
        &self,
        server_id: i64,
        kind: CommandKind,
        body: &impl serde::Serialize,
    ) -> Result<(), ApiError> {
        self.command_within(server_id, kind, body, self.inner.command_timeout)
    }

    pub(crate) fn command_within(
        &self,
        server_id: i64,
        kind: CommandKind,
        body: &impl serde::Serialize,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let envelope = Envelope {
            command: body,
            deadline: Deadline::after(timeout),
        };
        let message = OutgoingMessage::json(
            routing::MANMAN_EXCHANGE,
            &kind.routing_key(server_id),
            &serde_json::to_value(&envelope).expect("a command serialises"),
        )
        .expiring_after(timeout);
        let raw = self.inner.rpc.call(message, timeout).map_err(|e| match e {
            RpcError::Timeout(t) => {
                ApiError::Unavailable(format!("host {server_id} did not answer within {t:?}"))
            }
            RpcError::Unavailable(m) => ApiError::Unavailable(m),
        })?;
        let reply: CommandReply = serde_json::from_slice(&raw).map_err(|e| {
            ApiError::Internal(format!("host {server_id} sent a malformed reply: {e}"))
        })?;
        if reply.success {
            Ok(())
        } else {
            Err(ApiError::FailedPrecondition(format!(
                "host {server_id} refused: {}",
                reply.error.unwrap_or_else(|| "no reason given".into())
            )))
        }
    }
}
