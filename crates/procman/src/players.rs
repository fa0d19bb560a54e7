//! How a config asks its game server who is playing: the Steam A2S query (UDP), the
//! Minecraft Java status ping (TCP), or a console command with a reply pattern. The API
//! validates it with the config; the host agent runs it on an interval (host/players).

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::game_process::{field as error, FieldError};

/// The query itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlayerQuery {
    /// A2S_INFO (count, maximum) and A2S_PLAYER (names) over UDP to 127.0.0.1:`port` (a
    /// config port, mapped to the deployment's host port): Source, Valheim, Rust, ARK and most
    /// Steam games.
    A2s { port: u16 },
    /// The Minecraft Java server list ping over TCP to 127.0.0.1:`port`.
    Minecraft { port: u16 },
    /// `command` written to the console; the first line matching `reply_pattern` answers,
    /// its groups `online` and `max` (named, or the first two) the numbers.
    Console {
        command: String,
        reply_pattern: String,
    },
}

/// A config's player count: the query and how often it runs once the server is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerCount {
    #[serde(flatten)]
    pub query: PlayerQuery,
    #[serde(default = "thirty")]
    pub interval_seconds: u32,
}

fn thirty() -> u32 {
    30
}

/// What a query said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Players {
    pub online: u32,
    pub max: Option<u32>,
    /// Names when the protocol gives them (A2S_PLAYER, Minecraft's sample): maybe a part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl PlayerCount {
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(5..=3600).contains(&self.interval_seconds) {
            return Err(error("players", "interval_seconds must be 5 to 3600"));
        }
        match &self.query {
            PlayerQuery::A2s { port } | PlayerQuery::Minecraft { port } if *port == 0 => {
                Err(error("players", "port must be 1 to 65535"))
            }
            PlayerQuery::Console {
                command,
                reply_pattern,
            } => {
                if command.trim().is_empty() || command.contains(['\n', '\r', '\0']) {
                    return Err(error("players", "command must be one non-empty line"));
                }
                reply_regex(reply_pattern).map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// The console reply pattern, compiled; it needs a group for the count.
pub fn reply_regex(pattern: &str) -> Result<Regex, FieldError> {
    let re = Regex::new(pattern)
        .map_err(|e| error("players", format!("reply_pattern is not a regex: {e}")))?;
    if re.captures_len() < 2 {
        return Err(error(
            "players",
            "reply_pattern needs a group for the count: (?P<online>\\d+), and (?P<max>\\d+) if it says",
        ));
    }
    Ok(re)
}

/// The numbers in a console reply that matched `re`: `online`/`max` groups by name, else the
/// first and second groups.
pub fn from_console(re: &Regex, line: &str) -> Option<Players> {
    let caps = re.captures(line)?;
    let group = |name: &str, index: usize| {
        caps.name(name)
            .or_else(|| caps.get(index))
            .and_then(|m| m.as_str().trim().parse::<u32>().ok())
    };
    Some(Players {
        online: group("online", 1)?,
        max: group("max", 2),
        names: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked_and_console_replies_read() {
        let console = |pattern: &str| PlayerCount {
            query: PlayerQuery::Console {
                command: "list".into(),
                reply_pattern: pattern.into(),
            },
            interval_seconds: 30,
        };
        console(r"There are (\d+) of a max of (\d+) players online")
            .validate()
            .unwrap();
        assert!(console("no groups here").validate().is_err());
        assert!(console("(unclosed").validate().is_err());
        let bad_port = PlayerCount {
            query: PlayerQuery::A2s { port: 0 },
            interval_seconds: 30,
        };
        assert!(bad_port.validate().is_err());
        let json: PlayerCount =
            serde_json::from_str(r#"{"kind":"minecraft","port":25565}"#).unwrap();
        assert_eq!(json.interval_seconds, 30);
        assert_eq!(json.query, PlayerQuery::Minecraft { port: 25565 });

        let re = reply_regex(r"There are (\d+) of a max of (\d+) players online").unwrap();
        assert_eq!(
            from_console(
                &re,
                "[12:00:01 INFO]: There are 3 of a max of 20 players online: a, b, c"
            ),
            Some(Players {
                online: 3,
                max: Some(20),
                names: vec![]
            })
        );
        let named = reply_regex(r"max (?P<max>\d+), now (?P<online>\d+)").unwrap();
        assert_eq!(from_console(&named, "max 64, now 7").unwrap().max, Some(64));
        assert_eq!(from_console(&re, "Done!"), None);
    }
}
