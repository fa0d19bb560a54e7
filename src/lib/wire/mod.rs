//! Wire contracts shared by every daemon: message payloads, statuses and routing keys (serde).

pub mod backup;
pub mod commands;
pub mod external;
pub mod host_status;
pub mod log_batch;
pub mod messages;
pub mod ports;
pub mod routing;
pub mod schedule;
pub mod session_status;

pub use game_process::{GameProcess, RestartPolicy};
pub use host_status::HostStatus;
pub use log_batch::{ConsoleBatch, ConsoleLine};
/// How a game runs and how it is probed: the process manager's contract, in its crate.
pub use manman_procman::{game_process, players, probes};
pub use messages::{
    HealthUpdate, HostCapacity, HostStatusUpdate, LogLine, SessionSample, SessionStats,
    SessionStatusUpdate,
};
pub use session_status::SessionStatus;
