//! What can go wrong when asking the process manager for something.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no process named {0:?}")]
    NotFound(String),
    #[error("process {0:?} is already running")]
    AlreadyRunning(String),
    #[error("process {0:?} is not running")]
    NotRunning(String),
    #[error("process {name:?} is not reading its console: {limit} bytes are already waiting")]
    InputFull { name: String, limit: usize },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("the manager is shutting down")]
    ShuttingDown,
    #[error("process {name:?} did not stop within {timeout:?}")]
    StopTimeout { name: String, timeout: Duration },
    #[error("cannot start the thread that {0}")]
    Thread(&'static str, #[source] std::io::Error),
    #[error("cannot read the process store")]
    Store(#[source] std::io::Error),
}
