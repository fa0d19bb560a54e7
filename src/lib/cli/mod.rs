//! The `manman` operator CLI: its arguments (args), its entry and dispatch (run), and the
//! subcommands' implementations by subject.

pub mod access;
pub mod args;
pub mod control;
pub mod logs;
pub mod migrate;
pub mod output;
pub mod run;
