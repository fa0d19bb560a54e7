//! The `manman` operator CLI: argument definitions and subcommand implementations.

pub mod access;
pub mod control;
pub mod logs;
pub mod migrate;
pub mod output;
