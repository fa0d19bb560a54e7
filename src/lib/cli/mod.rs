//! The `manman` operator CLI: its arguments (args), its entry and dispatch (run), where it
//! connects (contexts: named sets of addresses, CA and token in the config file), what every
//! subcommand shares (shared: the API client, typed failures and exit codes; output: tables
//! and JSON), and one file per noun.

pub mod args;
pub mod attach;
pub mod backups;
pub mod configs;
pub mod contexts;
pub mod delete;
pub mod deployments;
pub mod docs;
pub mod doctor;
pub mod games;
pub mod hosts;
pub mod limits;
pub mod logs;
pub mod maintenance;
pub mod migrate;
pub mod output;
pub mod players;
pub mod run;
pub mod schedules;
pub mod sessions;
pub mod shared;
pub mod spans;
pub mod status;
pub mod tokens;
pub mod usage;
