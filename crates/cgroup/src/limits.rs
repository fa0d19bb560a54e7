//! The limits a session's cgroup enforces, written to its files: v2 names where the unified
//! hierarchy carries the controller, v1 names where a v1 hierarchy does. A limit the host
//! cannot enforce is not silently dropped: [`Limits::apply`] says which, for the console.

use serde::{Deserialize, Serialize};

use crate::group::Dir;
use crate::{write, Cgroup};

/// The CFS period ManMan writes quotas against (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// What one session may use. `None`: no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Hard memory limit: past it the kernel reclaims, then OOM-kills inside the group.
    pub memory_max: Option<u64>,
    /// Throttle point below the hard limit (v2 `memory.high`).
    pub memory_high: Option<u64>,
    /// Whether the game may swap (off by default: a swapping game server is a lagging one).
    pub swap: bool,
    /// CPU quota in cores (`2.5`: two and a half cores' time per period).
    pub cpu_max_cores: Option<f64>,
    /// Relative CPU share, 1–10000 (100 is every group's default).
    pub cpu_weight: Option<u32>,
    /// Processes and threads in the group.
    pub pids_max: Option<u64>,
    /// Relative IO share, 1–10000 (v2 `io.weight`).
    pub io_weight: Option<u32>,
}

fn missing(what: &str, controller: &str) -> String {
    format!("{what} is not enforced: this host gives ManMan no {controller} controller")
}

impl Limits {
    /// Writes the limits to `group`'s files. Returns what could not be enforced on this host
    /// (each a sentence for the console); failing to write a file the host has is an error.
    pub fn apply(&self, group: &Cgroup) -> std::io::Result<Vec<String>> {
        let mut not_enforced = Vec::new();
        let memory = group.locate("memory", "memory");
        if let Some(bytes) = self.memory_max {
            match &memory {
                Some(Dir::V1(d)) => write(&d.join("memory.limit_in_bytes"), &bytes.to_string())?,
                Some(Dir::V2(d)) => write(&d.join("memory.max"), &bytes.to_string())?,
                None => not_enforced.push(missing("the memory limit", "memory")),
            }
        }
        if let Some(bytes) = self.memory_high {
            match &memory {
                Some(Dir::V2(d)) => write(&d.join("memory.high"), &bytes.to_string())?,
                Some(Dir::V1(_)) => {
                    not_enforced.push("memory_high is not enforced: it needs cgroup v2".into())
                }
                None => not_enforced.push(missing("memory_high", "memory")),
            }
        }
        if !self.swap {
            match &memory {
                // v1 counts memory and swap together in memsw: equal to the memory limit means
                // no swap; without a limit (or without swap accounting) swappiness 0 keeps the
                // group out of swap.
                Some(Dir::V1(d)) => {
                    let memsw = d.join("memory.memsw.limit_in_bytes");
                    match self.memory_max {
                        Some(bytes) if memsw.exists() => write(&memsw, &bytes.to_string())?,
                        _ => write(&d.join("memory.swappiness"), "0")?,
                    }
                }
                Some(Dir::V2(d)) => {
                    let swap = d.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                None => {}
            }
        }
        let cpu = group.locate("cpu", "cpu");
        if let Some(cores) = self.cpu_max_cores {
            let quota = ((cores * CPU_PERIOD_US as f64).round() as u64).max(1000);
            match &cpu {
                Some(Dir::V1(d)) => {
                    write(&d.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                Some(Dir::V2(d)) => write(&d.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?,
                None => not_enforced.push(missing("the CPU limit", "cpu")),
            }
        }
        if let Some(weight) = self.cpu_weight {
            match &cpu {
                // v1 shares: 1024 is the default weight of 100.
                Some(Dir::V1(d)) => write(
                    &d.join("cpu.shares"),
                    &(u64::from(weight) * 1024 / 100).max(2).to_string(),
                )?,
                Some(Dir::V2(d)) => write(&d.join("cpu.weight"), &weight.to_string())?,
                None => not_enforced.push(missing("the CPU weight", "cpu")),
            }
        }
        if let Some(n) = self.pids_max {
            match group.locate("pids", "pids") {
                Some(Dir::V1(d) | Dir::V2(d)) => write(&d.join("pids.max"), &n.to_string())?,
                None => not_enforced.push(missing("the process limit", "pids")),
            }
        }
        if let Some(weight) = self.io_weight {
            match group.locate("blkio", "io") {
                Some(Dir::V2(d)) => write(&d.join("io.weight"), &format!("default {weight}"))?,
                // v1 blkio.weight exists only with the CFQ/BFQ schedulers (range 10–1000).
                Some(Dir::V1(d)) if d.join("blkio.weight").exists() => {
                    write(&d.join("blkio.weight"), &weight.clamp(10, 1000).to_string())?
                }
                Some(Dir::V1(_)) => not_enforced.push(
                    "io_weight is not enforced: this host's v1 blkio has no weight (it needs cgroup v2 or the BFQ scheduler)".into(),
                ),
                None => not_enforced.push(missing("io_weight", "io")),
            }
        }
        Ok(not_enforced)
    }
}
