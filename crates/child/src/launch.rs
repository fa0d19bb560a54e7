//! What to run and how to confine it: everything about a process that matters at `exec`, and
//! nothing about supervising it (restart policy, probes, stop plan stay with the manager).

use std::path::PathBuf;

use manman_cgroup::Cgroup;
use serde::{Deserialize, Serialize};

/// A numeric user and group to run a process as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// What a process that does not inherit the environment still gets from it.
pub const PASSED_THROUGH_ENV: [&str; 11] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "TZ", "TMPDIR",
    "TERM",
];

/// One process to start. The field names are those of the manager's `Spec` (of which this is
/// the part that matters at `exec`), so a `Spec` written as JSON reads as a `Launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Added after the caller's global environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Whether the process inherits our whole environment. When false it gets only
    /// [`PASSED_THROUGH_ENV`] from it, then the global and its own env: a game server never
    /// sees the agent's credentials.
    #[serde(default = "yes")]
    pub inherit_env: bool,
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// The user and group it runs as (None: ours).
    #[serde(default)]
    pub run_as: Option<RunAs>,
    /// Runs with `no_new_privs` and none of our ambient capabilities (game servers do).
    #[serde(default)]
    pub no_new_privs: bool,
    /// RLIMIT_NOFILE and RLIMIT_NPROC (soft and hard), when set.
    #[serde(default)]
    pub max_open_files: Option<u64>,
    #[serde(default)]
    pub max_processes: Option<u64>,
    /// The cgroup it starts in (joined between `fork` and `exec`, so everything it starts
    /// is inside too) and that is killed whole when it ends.
    #[serde(default)]
    pub cgroup: Option<Cgroup>,
}

fn yes() -> bool {
    true
}

impl Launch {
    /// `program` with `args`, inheriting our environment, unconfined.
    pub fn new(program: &str, args: &[&str]) -> Launch {
        Launch {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            inherit_env: true,
            working_dir: None,
            run_as: None,
            no_new_privs: false,
            max_open_files: None,
            max_processes: None,
            cgroup: None,
        }
    }

    /// Whether anything must run in the child between `fork` and `exec` (a user switch,
    /// limits, dropping privileges). Without it std can start the process with
    /// `posix_spawn` (vfork), which costs the same whatever the parent's size: forking an
    /// agent with hundreds of threads and tens of MiB mapped is several times slower.
    pub fn needs_pre_exec(&self) -> bool {
        self.run_as.is_some()
            || self.no_new_privs
            || self.max_open_files.is_some()
            || self.max_processes.is_some()
            || self.cgroup.is_some()
    }
}
