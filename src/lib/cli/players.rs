//! The `--players` flags of `config create|update`: how the host asks the server who is
//! playing (`--players a2s:27015`, `--players minecraft:25565`, or `--players console
//! --players-command list --players-reply 'There are (\d+) of a max of (\d+)'`).

use clap::Args;

use crate::proto::v1 as pb;

#[derive(Args, Default)]
pub struct PlayerFlags {
    /// How to count players: `a2s:PORT` (Steam games), `minecraft:PORT` (Java status ping),
    /// or `console` with --players-command and --players-reply. PORT is a config port.
    #[arg(long, value_name = "QUERY", help_heading = "Players")]
    pub players: Option<String>,
    /// Console query: the command that makes the server say its count (`list`).
    #[arg(long, value_name = "COMMAND", help_heading = "Players")]
    pub players_command: Option<String>,
    /// Console query: a regex for the reply, its groups the count and the maximum
    /// (`There are (\d+) of a max of (\d+) players online`).
    #[arg(long, value_name = "REGEX", help_heading = "Players")]
    pub players_reply: Option<String>,
    /// Seconds between queries while the session runs [default: 30].
    #[arg(long, value_name = "SECONDS", help_heading = "Players")]
    pub players_interval: Option<i32>,
}

impl PlayerFlags {
    pub fn into_query(self) -> Result<Option<pb::PlayerQuery>, String> {
        let Some(spec) = self.players else {
            if self.players_command.is_some() || self.players_reply.is_some() {
                return Err(
                    "--players-command and --players-reply go with --players console".into(),
                );
            }
            return Ok(None);
        };
        let (kind, port) = match spec.split_once(':') {
            Some((kind, port)) => (
                kind.to_string(),
                port.parse::<i32>()
                    .map_err(|_| format!("--players {spec:?}: the port is not a number"))?,
            ),
            None => (spec.clone(), 0),
        };
        if (kind == "a2s" || kind == "minecraft") && port == 0 {
            return Err(format!("--players {kind} needs a port: {kind}:PORT"));
        }
        Ok(Some(pb::PlayerQuery {
            kind,
            port,
            command: self.players_command.unwrap_or_default(),
            reply_pattern: self.players_reply.unwrap_or_default(),
            interval_seconds: self.players_interval,
        }))
    }
}
