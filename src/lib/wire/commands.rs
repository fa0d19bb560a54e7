//! Control plane → host commands (request/reply over `host-{id}-commands`) and the reply.

use serde::{Deserialize, Serialize};

use super::game_process::GameProcess;

/// A port a session holds on its host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_port: i32,
    pub host_port: i32,
    pub protocol: String,
}

/// `command.host.{id}.session.start`: everything the host needs to run the session. The
/// game's fields are flattened into the object (`program`, `args`, `stop_command`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSession {
    pub session_id: i64,
    pub sgc_id: i64,
    #[serde(flatten)]
    pub process: GameProcess,
    #[serde(default)]
    pub ports: Vec<PortBinding>,
}

/// A command as it goes on the wire: its body with its deadline beside it. The API encodes
/// this; the host decodes the same fields (the [`Deadline`] first, then the body by kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(flatten)]
    pub command: T,
    #[serde(flatten)]
    pub deadline: Deadline,
}

/// Every command's envelope: the deadline after which the host must not act on it (unix ms;
/// the sender has given up by then). The AMQP `expiration` says the same to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

impl Deadline {
    pub fn after(timeout: std::time::Duration) -> Deadline {
        Deadline {
            expires_at_ms: Some(chrono::Utc::now().timestamp_millis() + timeout.as_millis() as i64),
        }
    }

    /// How long ago it expired, if it has.
    pub fn expired_for(&self, now_ms: i64) -> Option<i64> {
        self.expires_at_ms
            .filter(|t| now_ms > *t)
            .map(|t| now_ms - t)
    }
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
    /// `backup.create`, `backup.restore`.
    Backup,
    Restore,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Start => "start",
            CommandKind::Stop => "stop",
            CommandKind::Kill => "kill",
            CommandKind::SendInput => "send_input",
            CommandKind::Backup => "create",
            CommandKind::Restore => "restore",
        }
    }

    pub fn routing_key(self, server_id: i64) -> String {
        let noun = match self {
            CommandKind::Backup | CommandKind::Restore => "backup",
            _ => "session",
        };
        format!("command.host.{server_id}.{noun}.{}", self.as_str())
    }

    /// The kind named by a routing key `command.host.{id}.session.{verb}`.
    pub fn from_routing_key(key: &str) -> Option<CommandKind> {
        match key.rsplit('.').next()? {
            "start" => Some(CommandKind::Start),
            "stop" => Some(CommandKind::Stop),
            "kill" => Some(CommandKind::Kill),
            "send_input" => Some(CommandKind::SendInput),
            "create" => Some(CommandKind::Backup),
            "restore" => Some(CommandKind::Restore),
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
            CommandKind::Backup,
            CommandKind::Restore,
        ] {
            let key = kind.routing_key(4);
            assert!(
                key.starts_with("command.host.4.session.")
                    || key.starts_with("command.host.4.backup.")
            );
            assert_eq!(CommandKind::from_routing_key(&key), Some(kind));
        }
        assert_eq!(
            CommandKind::from_routing_key("command.host.4.session.dance"),
            None
        );
    }

    #[test]
    fn deadlines_expire() {
        let d = Deadline {
            expires_at_ms: Some(1_000),
        };
        assert_eq!(d.expired_for(999), None);
        assert_eq!(d.expired_for(1_500), Some(500));
        assert_eq!(
            Deadline {
                expires_at_ms: None
            }
            .expired_for(i64::MAX),
            None
        );
    }

    #[test]
    fn a_start_command_flattens_the_game_process() {
        let cmd = StartSession {
            session_id: 7,
            sgc_id: 3,
            process: GameProcess {
                program: "/bin/game".into(),
                stop_command: Some("quit".into()),
                ..GameProcess::default()
            },
            ports: Vec::new(),
        };
        let v = serde_json::to_value(&cmd).unwrap();
        assert_eq!(v["program"], "/bin/game");
        assert_eq!(v["stop_command"], "quit");
        assert_eq!(serde_json::from_value::<StartSession>(v).unwrap(), cmd);
    }

    #[test]
    fn a_command_and_its_deadline_decode_as_the_host_reads_them() {
        let start = StartSession {
            session_id: 9,
            sgc_id: 4,
            process: crate::wire::GameProcess {
                program: "/bin/game".into(),
                ..Default::default()
            },
            ports: vec![PortBinding {
                container_port: 25565,
                host_port: 7001,
                protocol: "tcp".into(),
            }],
        };
        let wire = serde_json::to_vec(&Envelope {
            command: &start,
            deadline: Deadline {
                expires_at_ms: Some(1_000),
            },
        })
        .unwrap();
        let deadline: Deadline = serde_json::from_slice(&wire).unwrap();
        assert_eq!(deadline.expires_at_ms, Some(1_000));
        assert_eq!(
            serde_json::from_slice::<StartSession>(&wire).unwrap(),
            start
        );
        let input = SendInput {
            session_id: 3,
            input: "say hi\n".into(),
        };
        let wire = serde_json::to_vec(&Envelope {
            command: &input,
            deadline: Deadline::after(std::time::Duration::from_secs(5)),
        })
        .unwrap();
        assert_eq!(serde_json::from_slice::<SendInput>(&wire).unwrap(), input);
        let reply = CommandReply {
            correlation_id: "c-1".into(),
            success: false,
            error: Some("no".into()),
        };
        let back: CommandReply =
            serde_json::from_slice(&serde_json::to_vec(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
    }
}
