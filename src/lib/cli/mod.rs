//! The `manman` operator CLI: argument definitions and subcommand implementations.

pub mod migrate;
pub mod output;
