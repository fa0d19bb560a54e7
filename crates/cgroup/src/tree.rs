//! The subtree of cgroups the agent owns (`<its own cgroup>/<subtree>`), in every hierarchy
//! it can write, and a session's cgroup in it (`…/<subtree>/session-N`). Under systemd the
//! agent's unit has `Delegate=yes`: the subtree is then ours and systemd leaves it alone.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::layout::{Hierarchies, Mode, V2_CONTROLLERS};
use crate::Cgroup;

/// Where the agent's own processes go on cgroup v2 when its cgroup must hand controllers
/// down (a cgroup with controllers enabled for its children may hold no processes itself).
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// No cgroup could be made: the reason, for the agent's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The agent's subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    mode: Mode,
    unified: Option<PathBuf>,
    /// v2 controllers enabled in the subtree.
    controllers: Vec<String>,
    /// The subtree's directory in each v1 hierarchy, by controller.
    v1: BTreeMap<String, PathBuf>,
}

/// Whether `name` is one plain path component (the subtree and session names are joined to
/// cgroup paths).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Tree {
    /// Opens (creating as needed) `subtree` under this process's cgroups.
    pub fn open(subtree: &str) -> Result<Tree, Unavailable> {
        let h = Hierarchies::of_this_process()
            .map_err(|e| Unavailable(format!("cannot read /proc/self cgroup files: {e}")))?;
        Tree::open_in(&h, subtree)
    }

    pub fn open_in(h: &Hierarchies, subtree: &str) -> Result<Tree, Unavailable> {
        if !valid_name(subtree) {
            return Err(Unavailable(format!(
                "{subtree:?} is not a plain cgroup name (letters, digits, '.', '_', '-')"
            )));
        }
        let mut problems = Vec::new();
        let mut v1 = BTreeMap::new();
        for mounted in &h.v1 {
            let base = mounted.own_dir.join(subtree);
            match std::fs::create_dir_all(&base) {
                Ok(()) => {
                    for c in &mounted.controllers {
                        v1.insert(c.clone(), base.clone());
                    }
                }
                Err(e) => problems.push(format!("{}: {e}", base.display())),
            }
        }
        let mut unified = None;
        let mut controllers = Vec::new();
        if let Some(mounted) = &h.unified {
            let offered = available(&mounted.own_dir);
            // A controller is in one hierarchy only: those mounted as v1 are not offered here.
            let in_v1 = |c: &str| v1.contains_key(c) || (c == "io" && v1.contains_key("blkio"));
            let wanted: Vec<&str> = V2_CONTROLLERS
                .iter()
                .copied()
                .filter(|c| offered.iter().any(|o| o == c) && !in_v1(c))
                .collect();
            let base = mounted.own_dir.join(subtree);
            match std::fs::create_dir_all(&base) {
                Ok(()) => {
                    controllers = hand_down(&mounted.own_dir, &base, &wanted, &mut problems);
                    unified = Some(base);
                }
                Err(e) => problems.push(format!("{}: {e}", base.display())),
            }
        }
        let mode = match (unified.is_some(), v1.is_empty()) {
            (true, true) => Mode::V2,
            (true, false) => Mode::Hybrid,
            (false, false) => Mode::V1,
            (false, true) => {
                return Err(Unavailable(if problems.is_empty() {
                    "no cgroup hierarchy is mounted".into()
                } else {
                    format!("no cgroup hierarchy is writable ({})", problems.join("; "))
                }))
            }
        };
        if !problems.is_empty() {
            log::warn!(
                "cgroups: some hierarchies are not usable: {}",
                problems.join("; ")
            );
        }
        Ok(Tree {
            mode,
            unified,
            controllers,
            v1,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `controller` (v1 name, or its v2 name: `io` for `blkio`) limits sessions here.
    pub fn has(&self, controller: &str) -> bool {
        self.v1.contains_key(controller) || self.controllers.iter().any(|c| c == controller)
    }

    /// One line for the agent's log: the mode, the controllers and where.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.unified {
            parts.push(format!(
                "unified at {} (controllers: {})",
                u.display(),
                if self.controllers.is_empty() {
                    "none; membership, kill and pressure only".to_string()
                } else {
                    self.controllers.join(" ")
                }
            ));
        }
        if !self.v1.is_empty() {
            let names: Vec<&str> = self.v1.keys().map(String::as_str).collect();
            parts.push(format!("v1 {}", names.join(" ")));
        }
        format!("cgroup {}: {}", self.mode.as_str(), parts.join("; "))
    }

    /// The cgroup of the session named `name` (not created: see [`Cgroup::create`]).
    pub fn session(&self, name: &str) -> Cgroup {
        assert!(valid_name(name), "session cgroup name {name:?}");
        Cgroup {
            unified: self.unified.as_ref().map(|u| u.join(name)),
            controllers: self.controllers.clone(),
            v1: self
                .v1
                .iter()
                .map(|(c, base)| (c.clone(), base.join(name)))
                .collect(),
        }
    }

    /// The session groups left in the subtree (by name), e.g. after the agent was killed.
    pub fn sessions(&self) -> Vec<String> {
        let Some(dir) = self.unified.as_ref().or(self.v1.values().next()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Removes the subtree's directories if no session group is left in them.
    pub fn remove_if_empty(&self) {
        let mut dirs: Vec<&Path> = self.unified.iter().map(PathBuf::as_path).collect();
        dirs.extend(self.v1.values().map(PathBuf::as_path));
        dirs.dedup();
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The v2 controllers the parent offers to `dir`.
fn available(dir: &Path) -> Vec<String> {
    crate::read(&dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Enables `wanted` controllers for the children of `own` and of `base` (its child): the
/// v2 rule says a cgroup that hands controllers down holds no processes, so our own are
/// moved to a leaf of their own first (`own/supervisor`). Returns those enabled in `base`.
fn hand_down(own: &Path, base: &Path, wanted: &[&str], problems: &mut Vec<String>) -> Vec<String> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let enable =
        |dir: &Path, c: &str| crate::write(&dir.join("cgroup.subtree_control"), &format!("+{c}"));
    let mut moved = false;
    let mut enabled = Vec::new();
    for c in wanted {
        let mut result = enable(own, c);
        if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EBUSY)) && !moved {
            moved = true;
            if let Err(e) = move_processes_to_leaf(own) {
                problems.push(format!("cannot move the agent to {SUPERVISOR_LEAF}: {e}"));
            }
            result = enable(own, c);
        }
        match result.and_then(|_| enable(base, c)) {
            Ok(()) => enabled.push(c.to_string()),
            Err(e) => problems.push(format!("controller {c}: {e}")),
        }
    }
    enabled
}

/// Moves every process of the cgroup `own` (the agent, and its keepers) into `own/supervisor`.
fn move_processes_to_leaf(own: &Path) -> io::Result<()> {
    let leaf = own.join(SUPERVISOR_LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let procs = std::fs::read_to_string(own.join("cgroup.procs"))?;
    for pid in procs.lines().filter(|l| !l.trim().is_empty()) {
        // A process that exited meanwhile is fine.
        if let Err(e) = crate::write(&leaf.join("cgroup.procs"), pid.trim()) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_plain_components() {
        assert!(valid_name("sessions"));
        assert!(valid_name("manman-test-1a2b.c_d"));
        for bad in ["", ".", "..", "a/b", "../x", "sp ace", "nul\0"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(Tree::open_in(&Hierarchies::default(), "../etc").is_err());
        let none = Tree::open_in(&Hierarchies::default(), "sessions").unwrap_err();
        assert!(none.0.contains("no cgroup hierarchy"), "{none}");
    }
}
