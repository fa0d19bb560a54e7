//! One child process, run the way ManMan runs game servers: confined at spawn (user, no new
//! privileges, rlimits, its own process group), watched through a pidfd, its output split into
//! lines. Shared by the host agent's process manager and `manman-keeper`, so the keeper stays
//! small (no gRPC, TLS or database) and there is one place that knows how to run a process.

mod launch;
mod lines;
mod local;
pub mod sys;

pub use launch::{Launch, RunAs, PASSED_THROUGH_ENV};
pub use lines::{LineSplitter, Source, MAX_LINE_BYTES};
pub use local::{ready_now, LocalChild};

use serde::{Deserialize, Serialize};

/// Console input waiting for a process that does not read it is capped here: beyond it,
/// input is refused instead of growing the agent's (or keeper's) memory.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

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

/// A running process as its supervisor sees it: the seam between a supervisor thread and
/// the process it supervises. [`LocalChild`] is our own child; the agent's keeper-backed child
/// talks to a `manman-keeper` that holds the process across restarts of the agent.
pub trait ChildIo: Send {
    fn pid(&self) -> u32;
    /// The kernel start time of `pid` (a recycled PID is never mistaken for it).
    fn start_time(&self) -> Option<u64>;
    /// Adds what to wait on: output to read, input to write, the exit.
    fn wait_fds(&self, fds: &mut Vec<libc::pollfd>);
    /// Does the I/O that is ready, emitting output lines; true once the process has exited.
    fn service(&mut self, emit: &mut dyn FnMut(Source, &str)) -> bool;
    /// Queues console input; false if the process has no stdin any more (it is dropped).
    fn queue_input(&mut self, bytes: &[u8]) -> bool;
    /// Input bytes queued and not yet handed over.
    fn pending_input(&self) -> usize;
    fn has_stdin(&self) -> bool;
    /// Sends `signal` to the process's whole group.
    fn signal_group(&mut self, signal: i32);
    /// The newest output sequence number seen (keeper-backed children; 0 otherwise).
    fn last_seq(&self) -> u64 {
        0
    }
    /// Why it ended, when the exit status cannot say (its keeper died, ...).
    fn failure(&self) -> Option<String> {
        None
    }
    /// After `service` reported the exit: the last output, then the exit status. Nothing of
    /// its process group is left running afterwards.
    fn finish(self: Box<Self>, emit: &mut dyn FnMut(Source, &str)) -> ExitInfo;
}
