//! The agent's cgroup subtree: a cgroup per session (`…/sessions/session-N`), opened once at
//! start (its mode said once in the log and on `/metrics`), handed to each session's spec,
//! removed when the session has ended for good, and swept of groups no session owns.

use std::fmt::Write;

use manman_cgroup::{Cgroup, Tree};

use super::sessions::{process_name, session_of};
use super::stats::Game;

/// The subtree, or why there is none (games then run unlimited, sampled from /proc).
pub struct SessionCgroups {
    tree: Option<Tree>,
}

impl SessionCgroups {
    /// Opens `subtree` under the agent's cgroups (`None`: cgroups are off).
    pub fn open(subtree: Option<&str>) -> SessionCgroups {
        let tree = match subtree {
            None => {
                log::warn!(
                    "HOST_CGROUP=off: games run without limits; their stats come from /proc"
                );
                None
            }
            Some(name) => match Tree::open(name) {
                Ok(tree) => {
                    log::info!("sessions get a cgroup each: {}", tree.describe());
                    Some(tree)
                }
                Err(e) => {
                    log::warn!("no cgroups for sessions ({e}): games run without limits; their stats come from /proc");
                    None
                }
            },
        };
        SessionCgroups { tree }
    }

    pub fn off() -> SessionCgroups {
        SessionCgroups { tree: None }
    }

    /// The cgroup of a session (not created: the process manager creates it at each launch).
    pub fn of(&self, session_id: i64) -> Option<Cgroup> {
        Some(self.tree.as_ref()?.session(&process_name(session_id)))
    }

    /// The live games `(session, pid)` with their cgroups, for sampling.
    pub fn games(&self, live: &[(i64, u32)]) -> Vec<Game> {
        live.iter()
            .map(|&(session_id, pid)| Game {
                session_id,
                pid,
                cgroup: self.of(session_id),
            })
            .collect()
    }

    /// Removes a session's group once it has ended for good (anything left in it is killed).
    pub fn release(&self, session_id: i64) {
        if let Some(group) = self.of(session_id) {
            if let Err(e) = group.remove() {
                log::warn!(session_id = session_id; "cannot remove the session's cgroup: {e}");
            }
        }
    }

    /// Removes the groups of sessions not in `keep` (left by an agent that was killed).
    pub fn sweep(&self, keep: &[i64]) {
        let Some(tree) = &self.tree else { return };
        for name in tree.sessions() {
            match session_of(&name) {
                Some(id) if !keep.contains(&id) => self.release(id),
                _ => {}
            }
        }
    }

    /// Removes the subtree if no session is left in it (at the agent's exit).
    pub fn close(&self) {
        if let Some(tree) = &self.tree {
            tree.remove_if_empty();
        }
    }

    /// `/metrics`: which cgroup mode sessions run under (`none` without cgroups).
    pub fn metrics(&self) -> String {
        let mode = self.tree.as_ref().map_or("none", |t| t.mode().as_str());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP manman_host_cgroup_mode How sessions are confined: v2, hybrid, v1, or none.\n\
             # TYPE manman_host_cgroup_mode gauge\nmanman_host_cgroup_mode{{mode=\"{mode}\"}} 1"
        );
        out
    }
}
