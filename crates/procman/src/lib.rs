//! The process manager: a [`Manager`] of [`ManagedProcess`]es, each supervised by
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

mod builder;
mod error;
pub mod game_process;
mod history;
mod launcher;
mod manager;
mod output;
mod pattern;
pub mod players;
mod probe;
pub mod probes;
mod process;
mod reconciler;
mod recovery;
mod restart;
mod runner;
mod spec;
mod store;

pub use builder::ManagerBuilder;
pub use error::ProcError;
pub use history::{ChannelHistory, HistoryEvent, HistorySink, JsonLinesHistory};
pub use launcher::{Launcher, LocalLauncher};
pub use manager::Manager;
pub use manman_child::{sys, ChildIo, ExitInfo, LocalChild, MAX_PENDING_INPUT};
pub use output::{ChannelOutput, LineSplitter, OutputLine, OutputSink, Source, MAX_LINE_BYTES};
pub use pattern::pattern_matches;
pub use process::ManagedProcess;
pub use recovery::Recovered;
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
    pub const ALL: [ProcessState; 6] = [
        ProcessState::Stopped,
        ProcessState::Starting,
        ProcessState::Running,
        ProcessState::Stopping,
        ProcessState::Backoff,
        ProcessState::Failed,
    ];

    /// Whether a managed process may go from `self` to `next` (staying put is not a move):
    ///
    /// ```text
    /// stopped | failed → starting → running → stopping → stopped | failed
    ///                       │          │          │
    ///                       └──────────┴──────────┴──→ backoff → starting (a restart)
    /// ```
    /// plus: any live state → `stopped` or `failed` (the run ends and is not restarted),
    /// `starting → stopping` (stopped before it was up), `backoff → stopped | failed` (a stop
    /// or a give-up while waiting), and `stopped | failed → running` (a game that outlived the
    /// agent, re-attached through its keeper).
    pub fn can_move_to(self, next: ProcessState) -> bool {
        use ProcessState::*;
        matches!(
            (self, next),
            (Stopped | Failed, Starting | Running)
                | (Starting, Running | Stopping | Backoff | Stopped | Failed)
                | (Running, Stopping | Backoff | Stopped | Failed)
                | (Stopping, Backoff | Stopped | Failed)
                | (Backoff, Starting | Stopped | Failed)
        )
    }

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

#[cfg(test)]
mod state_tests {
    use super::ProcessState::{self, *};

    #[test]
    fn the_state_table_allows_exactly_the_documented_moves() {
        let allowed = [
            (Stopped, Starting),
            (Stopped, Running),
            (Failed, Starting),
            (Failed, Running),
            (Starting, Running),
            (Starting, Stopping),
            (Starting, Backoff),
            (Starting, Stopped),
            (Starting, Failed),
            (Running, Stopping),
            (Running, Backoff),
            (Running, Stopped),
            (Running, Failed),
            (Stopping, Backoff),
            (Stopping, Stopped),
            (Stopping, Failed),
            (Backoff, Starting),
            (Backoff, Stopped),
            (Backoff, Failed),
        ];
        for from in ProcessState::ALL {
            for to in ProcessState::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&(from, to)),
                    "{from:?} → {to:?}"
                );
            }
        }
        // A live process always has a way to end; an ended one only starts (or re-attaches).
        for s in ProcessState::ALL.into_iter().filter(|s| s.is_live()) {
            assert!(s.can_move_to(Stopped) && s.can_move_to(Failed), "{s:?}");
        }
        assert!(!Stopped.can_move_to(Stopping) && !Failed.can_move_to(Backoff));
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
