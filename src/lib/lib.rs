//! ManMan: a self-hosted game-server manager for bare-metal Linux. One crate, several daemons;
//! this is the module map. Imports flow one way, from the daemons down to the ground floor
//! (config, wire, ...): `tests/layout.rs` holds the layers and checks every import.

/// `manman-api`: the control-plane gRPC API.
pub mod api;
/// API tokens, roles and the check every RPC makes.
pub mod auth;
/// RabbitMQ: connect, topology, consumer, confirmed publisher, topic matching.
pub mod bus;
/// The `manman` operator CLI.
pub mod cli;
/// Typed environment configuration.
pub mod config;
/// PostgreSQL: pool, migrations, repositories.
pub mod db;
/// Checks that name what is wrong and its fix (`manman doctor`, `manman-host --check`).
pub mod diagnosis;
/// Errors with their sources on one line, for the edges where people read them.
pub mod errors;
/// gRPC serving and client channels.
pub mod grpc;
/// `/healthz`, `/readyz`, `/metrics`.
pub mod health;
/// `manman-host`: the agent running game servers on each host.
pub mod host;
/// tiny_http JSON helpers and the JSON error shape.
pub mod http;
/// `manman-keeper`: the per-session process that holds a game across agent restarts.
pub mod keeper;
/// Signals, supervised threads, drain deadline.
pub mod lifecycle;
/// `manman-log-processor`: live log fan-out over gRPC and per-minute archival to S3.
pub mod logs;
/// Archived session logs: S3 objects and their line format.
pub mod logstore;
/// Prometheus counters, gauges, histograms.
pub mod metrics;
/// `manman-notify`: external events → webhook notifications.
pub mod notify;
/// `manman-processor`: host events → session state machine → PostgreSQL → external events.
pub mod processor;
/// Process manager: a thread per managed OS process (the `manman-procman` crate).
pub use manman_procman as procman;
/// Generated gRPC code (`proto/`).
pub mod proto;
/// The one exponential backoff (from `manman-base`).
pub use manman_base::retry;
/// Secrets: generating them, hashing them for storage, 0600 files, `*_FILE` variables.
pub mod secret;
/// A cap on the threads given to long-lived streams (consoles, history streams).
pub mod slots;
/// `manman-status-api`: read-only HTTP status.
pub mod status;
/// The one lock helper (a poisoned mutex stays usable; from `manman-base`).
pub use manman_base::sync;
/// JSON log lines on stderr.
pub mod telemetry;
/// Scratch databases and vhosts for tests and benchmarks.
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
/// JSON views of the control API's messages (the CLI's `--json`, the dashboard).
pub mod views;
/// `manman-web`: the dashboard.
pub mod web;
/// Message payloads, statuses, routing keys.
pub mod wire;
