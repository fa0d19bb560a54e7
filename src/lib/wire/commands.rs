//! Control plane → host commands (request/reply over `host-{id}-commands`) and the reply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A port a session holds on its host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_port: i32,
    pub host_port: i32,
    pub protocol: String,
}

/// `command.host.{id}.session.start`: everything the host needs to run the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSession {
    pub session_id: i64,
    pub sgc_id: i64,
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    pub stop_signal: String,
    #[serde(default)]
    pub stop_command: Option<String>,
    pub stop_timeout_seconds: u32,
    pub restart_policy: String,
    pub start_duration_ms: u32,
    #[serde(default)]
    pub ports: Vec<PortBinding>,
}

/// `command.host.{id}.session.stop|kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRef {
    pub session_id: i64,
}

/// `command.host.{id}.session.send_input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendInput {
    pub session_id: i64,
    pub input: String,
}

/// The host's answer to any command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    pub correlation_id: String,
    pub success: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// The verb at the end of a command routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Start,
    Stop,
    Kill,
    SendInput,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Start => "start",
            CommandKind::Stop => "stop",
            CommandKind::Kill => "kill",
            CommandKind::SendInput => "send_input",
        }
    }

    pub fn routing_key(self, server_id: i64) -> String {
        format!("command.host.{server_id}.session.{}", self.as_str())
    }

    /// The kind named by a routing key `command.host.{id}.session.{verb}`.
    pub fn from_routing_key(key: &str) -> Option<CommandKind> {
        match key.rsplit('.').next()? {
            "start" => Some(CommandKind::Start),
            "stop" => Some(CommandKind::Stop),
            "kill" => Some(CommandKind::Kill),
            "send_input" => Some(CommandKind::SendInput),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_keys_round_trip() {
        for kind in [
            CommandKind::Start,
            CommandKind::Stop,
            CommandKind::Kill,
            CommandKind::SendInput,
        ] {
            let key = kind.routing_key(4);
            assert!(key.starts_with("command.host.4.session."));
            assert_eq!(CommandKind::from_routing_key(&key), Some(kind));
        }
        assert_eq!(
            CommandKind::from_routing_key("command.host.4.session.dance"),
            None
        );
    }
}
