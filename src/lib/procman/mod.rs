//! The process manager (seed 004): a [`Manager`] of [`ManagedProcess`]es, each supervised by
//! one plain thread that waits in `poll(2)` on the child's pidfd, its stdout/stderr pipes and a
//! command eventfd. Exit is seen the instant it happens (no polling interval), output is read
//! as it is written, and no lock is ever held across a blocking call.
//!
//! Lock hierarchy: the manager's map lock is taken only to find or insert processes and is
//! released before any call into a process; a process's own lock guards its status snapshot
//! and is never held while waiting. Supervisor threads never take the manager's lock.
//!
//! States: `Stopped → Starting → Running → Stopping → Stopped`, plus `Backoff` (waiting to
//! restart after an exit) and `Failed` (the retry limit was reached; needs an operator).

mod child;
mod history;
mod manager;
mod output;
mod pattern;
mod probe;
mod process;
mod restart;
mod runner;
mod spec;
mod store;
pub mod sys;

pub use child::{ChildIo, Launcher, LocalChild, LocalLauncher};
pub use history::{ChannelHistory, HistoryEvent, HistorySink, JsonLinesHistory};
pub use manager::{Manager, ManagerBuilder, ProcError, Recovered};
pub use output::{ChannelOutput, LineSplitter, OutputLine, OutputSink, Source, MAX_LINE_BYTES};
pub use pattern::pattern_matches;
pub use process::{ManagedProcess, MAX_PENDING_INPUT};
pub use restart::{decide, Decision, RunHistory, RunOutcome};
pub use runner::describe_exit;
pub use spec::{parse_signal, RestartPolicy, RunAs, Spec, StopPlan, PASSED_THROUGH_ENV};
pub use store::{FileStore, Store, StoredProcess};

use serde::{Deserialize, Serialize};

/// Where a managed process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    Stopped,
    Starting,
    Running,
    Stopping,
    /// Exited and waiting out the backoff before the next start.
    Backoff,
    /// Gave up after the retry limit; stays here until started again.
    Failed,
}

impl ProcessState {
    /// Whether a supervisor thread is (or should be) attached.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ProcessState::Starting
                | ProcessState::Running
                | ProcessState::Stopping
                | ProcessState::Backoff
        )
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A snapshot of one managed process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub stopped_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_exit: Option<ExitInfo>,
    pub restarts: u32,
}
