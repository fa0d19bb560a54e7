//! The agent's side of `manman-keeper` (the crate `crates/keeper`): one small process per
//! session that holds the game, its console pipes and its exit status, so the host agent can
//! restart (upgrade, crash) without stopping a game. The process manager talks to it over a
//! Unix socket in the keeper protocol, which both sides take from the keeper crate.

pub mod client;

pub use client::{KeeperChild, KeeperLauncher};
pub use manman_keeper::protocol;
