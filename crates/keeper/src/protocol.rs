//! The keeper's socket protocol: one JSON object per line each way, over a Unix stream
//! socket (`keeper.sock`, 0600) in the session's keeper directory.
//!
//! Agent → keeper: `attach` (resume output after a sequence number), `input`, `signal`,
//! `release` (the agent has recorded the exit: clean up and go).
//! Keeper → agent: `hello` (the game's pid), `line` (output with its sequence number), `gap`
//! (lines that fell out of the buffer before the agent came back), `exit`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use manman_child::Launch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Attach { after: u64 },
    Input { data: String },
    Signal { signal: i32 },
    Release,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    Hello {
        pid: u32,
        start_time: Option<u64>,
    },
    Line {
        seq: u64,
        source: String,
        line: String,
    },
    Gap {
        missed: u64,
    },
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
        at_ms: i64,
    },
}

/// One message as a line.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("protocol messages serialise");
    line.push(b'\n');
    line
}

/// What the agent writes for the keeper to run (`spec.json`): the process, and the agent's
/// global environment to add before the process's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeeperSpec {
    pub spec: Launch,
    pub env: Vec<(String, String)>,
}

/// The files of one keeper, all in its directory.
#[derive(Debug, Clone, PartialEq)]
pub struct KeeperDir(pub PathBuf);

impl KeeperDir {
    pub fn new(root: &Path, name: &str) -> KeeperDir {
        KeeperDir(root.join(name))
    }
    pub fn spec(&self) -> PathBuf {
        self.0.join("spec.json")
    }
    pub fn socket(&self) -> PathBuf {
        self.0.join("keeper.sock")
    }
    /// The exit status, written atomically once the game has ended (kept until released).
    pub fn exit(&self) -> PathBuf {
        self.0.join("exit.json")
    }
    /// The keeper's own log (its stderr).
    pub fn log(&self) -> PathBuf {
        self.0.join("keeper.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_lines() {
        let r = encode(&Request::Attach { after: 7 });
        assert_eq!(r, b"{\"op\":\"attach\",\"after\":7}\n");
        let e: Event =
            serde_json::from_str(r#"{"t":"exit","code":7,"signal":null,"at_ms":5}"#).unwrap();
        assert_eq!(
            e,
            Event::Exit {
                code: Some(7),
                signal: None,
                at_ms: 5
            }
        );
    }
}
