//! The soft disk limit (`disk_max`, as Pterodactyl Wings does it): each live deployment's
//! directory is sized on an interval by a walk with a budget (lstat only, links never
//! followed), its size goes into the heartbeat sample and `/metrics`, the console is warned
//! when it crosses 90 % of the limit, and a session does not start above it. A hard quota
//! (XFS or ext4 project quotas) would stop writes at the limit; that is a later step.

use std::collections::HashMap;
use std::fmt::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::console::ConsoleLines;
use super::sessions::{live_games, process_name};
use crate::lifecycle::ShutdownSignal;
use crate::procman::Manager;
use crate::wire::game_process::human_bytes;

/// The most entries one sizing reads: a deployment with more is reported as at least the
/// size counted so far (and the next pass reads the same budget again).
pub const WALK_BUDGET: usize = 1_000_000;
/// The console is warned once the deployment reaches this share of its limit.
pub const WARN_AT: f64 = 0.9;

/// Labels the agent keeps with each session's spec (procman `Spec::labels`).
pub const LABEL_DIR: &str = "deployment_dir";
pub const LABEL_DISK_MAX: &str = "disk_max_bytes";

/// One sizing of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Bytes allocated on disk (st_blocks × 512, as `du`).
    pub bytes: u64,
    /// False when the budget ran out first: the real size is larger.
    pub complete: bool,
}

/// Sizes `dir` without following links, reading at most `budget` entries.
pub fn measure(dir: &Path, budget: usize) -> Size {
    let mut size = Size {
        bytes: 0,
        complete: true,
    };
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > budget {
                size.complete = false;
                return size;
            }
            // DirEntry::metadata is lstat: a link is counted as itself, never followed.
            let Ok(meta) = entry.metadata() else { continue };
            size.bytes += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    size
}

/// Refuses a start when the deployment is at or above its limit.
pub fn admit(dir: &Path, limit: Option<u64>) -> Result<(), String> {
    let Some(limit) = limit else { return Ok(()) };
    let size = measure(dir, WALK_BUDGET);
    if size.bytes >= limit {
        return Err(format!(
            "disk limit: the deployment's directory holds {}{} of its {} limit (disk_max); \
             free some space or raise the limit",
            if size.complete { "" } else { "at least " },
            human_bytes(size.bytes),
            human_bytes(limit)
        ));
    }
    Ok(())
}

/// The last size of each live session's deployment, by session.
#[derive(Default)]
pub struct DiskUsage {
    readings: Mutex<HashMap<i64, Reading>>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    bytes: u64,
    limit: Option<u64>,
    /// Whether the console was told it is over [`WARN_AT`] (told again only after it was
    /// below it once).
    warned: bool,
}

impl DiskUsage {
    /// Sessions' last sizes, for the heartbeat.
    pub fn sizes(&self) -> HashMap<i64, u64> {
        crate::sync::lock(&self.readings)
            .iter()
            .map(|(id, r)| (*id, r.bytes))
            .collect()
    }

    /// Sizes every live session's deployment once; warns the console of those crossing 90 %.
    pub fn measure_all(&self, manager: &Manager, console: &ConsoleLines) {
        let mut fresh = HashMap::new();
        for (session_id, _) in live_games(manager) {
            let Ok(spec) = manager.spec(&process_name(session_id)) else {
                continue;
            };
            let Some(dir) = spec.labels.get(LABEL_DIR) else {
                continue;
            };
            let limit = spec.labels.get(LABEL_DISK_MAX).and_then(|v| v.parse().ok());
            let size = measure(Path::new(dir), WALK_BUDGET);
            let was_warned = crate::sync::lock(&self.readings)
                .get(&session_id)
                .is_some_and(|r| r.warned);
            let over = limit.is_some_and(|l: u64| size.bytes as f64 >= WARN_AT * l as f64);
            if over && !was_warned {
                let limit = limit.unwrap_or_default();
                console.host_line(
                    session_id,
                    &format!(
                        "[manman] disk: the deployment uses {} of its {} limit ({:.0} %); the next start is refused at the limit",
                        human_bytes(size.bytes),
                        human_bytes(limit),
                        100.0 * size.bytes as f64 / limit as f64
                    ),
                );
            }
            fresh.insert(
                session_id,
                Reading {
                    bytes: size.bytes,
                    limit,
                    warned: over,
                },
            );
        }
        *crate::sync::lock(&self.readings) = fresh;
    }

    /// `/metrics`: each live deployment's size and limit.
    pub fn metrics(&self) -> String {
        let readings = crate::sync::lock(&self.readings);
        let mut out = String::from(
            "# HELP manman_host_session_disk_bytes Size of the session's deployment directory, as last measured.\n\
             # TYPE manman_host_session_disk_bytes gauge\n",
        );
        for (id, r) in readings.iter() {
            let _ = writeln!(
                out,
                "manman_host_session_disk_bytes{{session_id=\"{id}\"}} {}",
                r.bytes
            );
        }
        out.push_str(
            "# HELP manman_host_session_disk_max_bytes The session's soft disk limit (disk_max).\n\
             # TYPE manman_host_session_disk_max_bytes gauge\n",
        );
        for (id, r) in readings.iter() {
            if let Some(limit) = r.limit {
                let _ = writeln!(
                    out,
                    "manman_host_session_disk_max_bytes{{session_id=\"{id}\"}} {limit}"
                );
            }
        }
        out
    }
}

/// The `disk` thread: sizes the live deployments every `every` until shutdown.
pub(super) fn run(
    usage: Arc<DiskUsage>,
    manager: Arc<Manager>,
    console: Arc<ConsoleLines>,
    every: Duration,
    shutdown: &ShutdownSignal,
) -> Result<(), String> {
    loop {
        usage.measure_all(&manager, &console);
        if shutdown.wait(every) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_a_tree_without_following_links_and_within_its_budget() {
        let dir = std::env::temp_dir().join(format!("mm-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("world/region")).unwrap();
        std::fs::write(dir.join("world/region/r.0.0.mca"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.join("server.properties"), vec![1u8; 5_000]).unwrap();
        // A link to a big host directory counts as the link only.
        std::os::unix::fs::symlink("/usr", dir.join("escape")).unwrap();
        let size = measure(&dir, WALK_BUDGET);
        assert!(size.complete);
        assert!(
            (305_000..400_000).contains(&size.bytes),
            "allocated bytes of two files and two directories: {size:?}"
        );
        let partial = measure(&dir, 2);
        assert!(
            !partial.complete && partial.bytes < size.bytes,
            "{partial:?}"
        );
        admit(&dir, None).unwrap();
        admit(&dir, Some(10 << 20)).unwrap();
        let refused = admit(&dir, Some(1 << 17)).unwrap_err();
        assert!(
            refused.contains("disk limit") && refused.contains("128 KiB limit"),
            "{refused}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
