//! A cgroup per game session, on whatever the host has: cgroup v2 (the unified hierarchy with
//! its controllers), v1 controllers (older or hybrid hosts), or both at once (hybrid hosts:
//! limits through the v1 controllers, membership, `cgroup.kill` and pressure through the
//! unified hierarchy, as systemd does there).
//!
//! - [`layout`]: which hierarchies the host mounts and where this process sits in them.
//! - [`tree`]: the subtree the agent owns (`…/sessions`), and a session's cgroup in it.
//! - [`group`]: one session's cgroup: joined between `fork` and `exec` (so the game and all
//!   it starts are inside), killed whole, emptied and removed.
//! - [`limits`]: memory, CPU, pids and IO limits written to its files.
//! - [`usage`]: what the group uses, read from its own files (one read per file, no /proc
//!   walk), and how often the kernel's OOM killer struck inside it.
//!
//! We write our own instead of using cgroups-rs: joining must happen between `fork` and
//! `exec` with nothing but `write(2)` on descriptors opened before the fork (a multithreaded
//! agent may not allocate there), hybrid hosts want the unified hierarchy for the kill beside
//! v1 controllers for limits, and the keeper that links this stays small.

pub mod group;
pub mod layout;
pub mod limits;
pub mod tree;
pub mod usage;

pub use group::{Cgroup, JoinFds};
pub use layout::{Hierarchies, Mode};
pub use limits::Limits;
pub use tree::{Tree, Unavailable};
pub use usage::{Counters, Sample, Usage};

/// Reads a cgroup file, trimmed.
pub(crate) fn read(path: &std::path::Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Writes `value` to a cgroup file in one `write(2)` (a cgroup file takes one value per write).
pub(crate) fn write(path: &std::path::Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
