//! One session's cgroup: its directories in each hierarchy, joined by the game between `fork`
//! and `exec`, killed whole (`cgroup.kill`, or freeze and kill on v1), emptied and removed.
//! It travels in the keeper's spec as JSON: the keeper joins the game to it and kills it.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long a v1 freeze may take before the kill goes ahead unfrozen.
const FREEZE_WAIT: Duration = Duration::from_secs(1);

/// A session's cgroup: a directory in the unified hierarchy and/or in each v1 hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// Its directory in the unified (v2) hierarchy: membership, kill, freeze, CPU time and
    /// pressure, plus every controller listed in `controllers`.
    #[serde(default)]
    pub unified: Option<PathBuf>,
    /// The v2 controllers enabled for it (`memory`, `cpu`, `io`, `pids`).
    #[serde(default)]
    pub controllers: Vec<String>,
    /// Its directory in each v1 hierarchy, by controller (`memory`, `cpu`, `cpuacct`,
    /// `pids`, `freezer`, `blkio`); co-mounted controllers share a directory.
    #[serde(default)]
    pub v1: BTreeMap<String, PathBuf>,
}

/// A controller's directory, and which hierarchy's file names it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dir {
    V1(PathBuf),
    V2(PathBuf),
}

/// Descriptors of a cgroup's `cgroup.procs` files, opened before the fork: the child writes
/// `0` (itself) to each between `fork` and `exec`, which needs nothing but `write(2)`.
pub struct JoinFds {
    fds: Vec<OwnedFd>,
}

impl JoinFds {
    pub fn raw(&self) -> Vec<RawFd> {
        self.fds.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// In the child after `fork`: moves the calling process into the cgroup. Only
    /// async-signal-safe calls.
    ///
    /// # Safety
    /// `fds` must be open descriptors of `cgroup.procs` files (from [`JoinFds::raw`]).
    pub unsafe fn join_in_child(fds: &[RawFd]) -> io::Result<()> {
        for fd in fds {
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Cgroup {
    /// The directory holding a controller's files for this group: the v1 one when the
    /// controller is mounted as v1, else the unified one when enabled there.
    pub fn locate(&self, v1_controller: &str, v2_controller: &str) -> Option<Dir> {
        if let Some(dir) = self.v1.get(v1_controller) {
            return Some(Dir::V1(dir.clone()));
        }
        let unified = self.unified.as_ref()?;
        self.controllers
            .iter()
            .any(|c| c == v2_controller)
            .then(|| Dir::V2(unified.clone()))
    }

    /// Every directory, each once (co-mounted v1 controllers share one).
    pub fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = self.unified.iter().map(PathBuf::as_path).collect();
        for dir in self.v1.values() {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// Creates its directories (those already there are kept: a restart of the agent finds
    /// its sessions' groups in place).
    pub fn create(&self) -> io::Result<()> {
        for dir in self.dirs() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot create {}: {e}", dir.display()),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Opens the `cgroup.procs` files for a child to join at `exec` ([`JoinFds`]).
    pub fn join_fds(&self) -> io::Result<JoinFds> {
        let mut fds = Vec::new();
        for dir in self.dirs() {
            let path = dir.join("cgroup.procs");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            fds.push(OwnedFd::from(file));
        }
        Ok(JoinFds { fds })
    }

    /// The processes in it.
    pub fn pids(&self) -> Vec<u32> {
        let Some(dir) = self.dirs().first().map(|d| d.to_path_buf()) else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        if let Some(u) = &self.unified {
            if let Ok(events) = crate::read(&u.join("cgroup.events")) {
                return events.lines().any(|l| l == "populated 0");
            }
        }
        self.pids().is_empty()
    }

    /// SIGKILLs every process in it at once, so none can fork away meanwhile: `cgroup.kill`
    /// (v2, Linux ≥ 5.14, also in a hybrid host's unified hierarchy), else freeze (v1
    /// freezer), kill each, thaw; else kill each until none is left.
    pub fn kill_all(&self) {
        if let Some(u) = &self.unified {
            if crate::write(&u.join("cgroup.kill"), "1").is_ok() {
                return;
            }
        }
        let freezer = self.v1.get("freezer").map(|d| d.join("freezer.state"));
        let frozen = freezer.as_ref().is_some_and(|state| freeze(state));
        for _ in 0..20 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: plain syscall on a pid read from the group.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            if frozen {
                break;
            }
        }
        if let Some(state) = freezer {
            let _ = crate::write(&state, "THAWED");
        }
    }

    /// Waits until nothing is left in it, up to `timeout`; true if it is empty.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.is_empty() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills what is left in it and removes its directories (deepest knowledge first: a
    /// group with processes cannot be removed).
    pub fn remove(&self) -> io::Result<()> {
        if !self.is_empty() {
            self.kill_all();
            self.wait_empty(Duration::from_secs(2));
        }
        let mut first_error = None;
        for dir in self.dirs() {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(io::Error::new(
                        e.kind(),
                        format!("cannot remove {}: {e}", dir.display()),
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Freezes a v1 freezer group and waits (briefly) until the kernel says it is frozen.
fn freeze(state: &Path) -> bool {
    if crate::write(state, "FROZEN").is_err() {
        return false;
    }
    let until = Instant::now() + FREEZE_WAIT;
    while Instant::now() < until {
        if crate::read(state).is_ok_and(|s| s == "FROZEN") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_found_in_v1_where_mounted_else_where_enabled_in_v2() {
        let hybrid = Cgroup {
            unified: Some("/u/s".into()),
            controllers: vec![],
            v1: BTreeMap::from([
                ("memory".into(), PathBuf::from("/m/s")),
                ("cpu".into(), PathBuf::from("/c/s")),
                ("cpuacct".into(), PathBuf::from("/c/s")),
            ]),
        };
        assert_eq!(
            hybrid.locate("memory", "memory"),
            Some(Dir::V1("/m/s".into()))
        );
        assert_eq!(hybrid.locate("pids", "pids"), None);
        assert_eq!(
            hybrid.dirs(),
            [Path::new("/u/s"), Path::new("/c/s"), Path::new("/m/s")]
        );
        let v2 = Cgroup {
            unified: Some("/u/s".into()),
            controllers: vec!["memory".into()],
            v1: BTreeMap::new(),
        };
        assert_eq!(v2.locate("memory", "memory"), Some(Dir::V2("/u/s".into())));
        assert_eq!(v2.locate("cpu", "cpu"), None, "not enabled");
        let json = serde_json::to_string(&v2).unwrap();
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), v2);
    }
}
