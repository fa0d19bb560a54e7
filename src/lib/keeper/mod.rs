//! `manman-keeper`: one small process per session that holds the game, its console pipes and
//! its exit status, so the host agent can restart (upgrade, crash) without stopping a game.
//! The agent's process manager talks to it over a Unix socket (client.rs); the keeper itself
//! (server.rs) runs the game with the process manager's own child code.

mod buffer;
pub mod client;
pub mod protocol;
pub mod server;

pub use client::{KeeperChild, KeeperLauncher};
