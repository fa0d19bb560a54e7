//! What each game is doing, for the heartbeat and `/metrics`: CPU time, memory, processes,
//! IO and pressure read from the session's cgroup (one read per file, whatever the number of
//! processes), or, for a game without one, summed over its process group from /proc;
//! labelled with the session id so an operator can join them with the control plane's series.

use std::collections::HashMap;
use std::fmt::Write;

use manman_cgroup::{Cgroup, Counters, Sample};

use crate::wire::SessionSample;

/// A live game to sample: its session, its leader's pid, its cgroup if it has one.
#[derive(Debug, Clone)]
pub struct Game {
    pub session_id: i64,
    pub pid: u32,
    pub cgroup: Option<Cgroup>,
}

/// The machine's memory from /proc/meminfo: (MemTotal, MemAvailable) in bytes, for placement.
pub fn memory() -> Option<(u64, u64)> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|k| k * 1024)
    };
    Some((kib("MemTotal:")?, kib("MemAvailable:")?))
}

/// One game: its process group summed from /proc, or its cgroup's counters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GroupSample {
    pub processes: u64,
    pub cpu_seconds: f64,
    /// The cgroup's memory charge, or the group's resident memory.
    pub rss_bytes: u64,
    pub threads: u64,
    pub open_files: u64,
    /// From the cgroup only.
    pub memory_peak_bytes: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub memory_high_events: Option<u64>,
    pub memory_stall_seconds: Option<f64>,
}

/// Samples each game from its cgroup where it has one that answers, else from one pass over
/// /proc for the rest. Keyed by session.
pub fn sample_games(games: &[Game]) -> HashMap<i64, GroupSample> {
    let mut out = HashMap::new();
    let mut by_proc = Vec::new();
    for game in games {
        match game.cgroup.as_ref().and_then(|g| from_cgroup(g, game.pid)) {
            Some(sample) => {
                out.insert(game.session_id, sample);
            }
            None => by_proc.push((game.session_id, game.pid)),
        }
    }
    if !by_proc.is_empty() {
        let leaders: Vec<u32> = by_proc.iter().map(|(_, pid)| *pid).collect();
        let mut groups = sample_groups(&leaders);
        for (session_id, pid) in by_proc {
            if let Some(g) = groups.remove(&pid) {
                out.insert(session_id, g);
            }
        }
    }
    out
}

/// The leader's open descriptors: the size `stat` gives `/proc/PID/fd` (Linux ≥ 6.2, one
/// call), else a count of its entries. 0 when the game's fds cannot be read (another uid,
/// without CAP_SYS_PTRACE).
fn open_files(leader: u32) -> u64 {
    let dir = format!("/proc/{leader}/fd");
    match std::fs::metadata(&dir) {
        Ok(m) if m.len() > 0 => m.len(),
        _ => std::fs::read_dir(&dir)
            .map(|d| d.count() as u64)
            .unwrap_or(0),
    }
}

/// A game's sample from its cgroup's counters; `None` if the group does not answer (not made
/// yet, or a host without the files), so the caller falls back to /proc.
fn from_counters(c: &Sample, leader: u32) -> Option<GroupSample> {
    let processes = c.processes?;
    Some(GroupSample {
        processes,
        cpu_seconds: c.cpu_usec? as f64 / 1e6,
        rss_bytes: c.memory_bytes?,
        threads: c.pids.unwrap_or(processes),
        open_files: open_files(leader),
        memory_peak_bytes: c.memory_peak_bytes,
        io_read_bytes: c.io_read_bytes,
        ..GroupSample::default()
    })
}

/// A game's sample from its cgroup, with what only `/metrics` shows (OOM kills, throttling,
/// pressure).
fn from_cgroup(group: &Cgroup, leader: u32) -> Option<GroupSample> {
    let usage = group.usage();
    Some(GroupSample {
        oom_kills: usage.oom_kills,
        memory_high_events: usage.memory_high_events,
        memory_stall_seconds: usage.memory_stall_usec.map(|u| u as f64 / 1e6),
        ..from_counters(&usage.counters, leader)?
    })
}

/// Samples the process groups led by `leaders` (the games' pids) in one pass over /proc.
pub fn sample_groups(leaders: &[u32]) -> HashMap<u32, GroupSample> {
    let mut samples: HashMap<u32, GroupSample> = HashMap::new();
    if leaders.is_empty() {
        return samples;
    }
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
        )
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return samples;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // gone meanwhile
        };
        // After "pid (comm)": the comm may hold spaces and parentheses, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is the state (field 3 of stat(5)); pgrp is field 5, utime 14, stime 15,
        // num_threads 20, rss 24.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let Some(pgrp) = field(5).map(|g| g as u32) else {
            continue;
        };
        if !leaders.contains(&pgrp) {
            continue;
        }
        let s = samples.entry(pgrp).or_default();
        s.processes += 1;
        s.cpu_seconds += (field(14).unwrap_or(0) + field(15).unwrap_or(0)) as f64 / ticks;
        s.threads += field(20).unwrap_or(0);
        s.rss_bytes += field(24).unwrap_or(0) * page;
        s.open_files += std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
    }
    samples
}

/// CPU use between heartbeats: each sample's CPU time against the previous one's. Holds
/// each session's cgroup counter files open between heartbeats ([`Counters`]).
#[derive(Default)]
pub struct CpuRates {
    previous: HashMap<i64, (f64, std::time::Instant)>,
    counters: HashMap<i64, Counters>,
    buf: Vec<u8>,
}

impl CpuRates {
    /// Samples the live games for a heartbeat (what the agent knows besides, the disk size
    /// and the players, the heartbeat adds). A game's first sample has no rate yet (0 %); the
    /// next ones are CPU seconds per wall second, in percent of a core.
    pub fn sample(&mut self, games: &[Game]) -> Vec<SessionSample> {
        let groups = self.sample_all(games);
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for game in games {
            let session_id = game.session_id;
            let Some(g) = groups.get(&session_id) else {
                continue;
            };
            let cpu_percent = match self.previous.get(&session_id) {
                Some((cpu, at)) if g.cpu_seconds >= *cpu => {
                    let wall = now.duration_since(*at).as_secs_f64();
                    if wall > 0.0 {
                        (g.cpu_seconds - cpu) / wall * 100.0
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            };
            seen.insert(session_id, (g.cpu_seconds, now));
            let small = |n: u64| n.min(u64::from(u32::MAX)) as u32;
            out.push(SessionSample {
                session_id,
                cpu_percent: (cpu_percent * 10.0).round() / 10.0,
                rss_bytes: g.rss_bytes,
                threads: small(g.threads),
                open_files: small(g.open_files),
                processes: small(g.processes),
                memory_peak_bytes: g.memory_peak_bytes,
                io_read_bytes: g.io_read_bytes,
                ..SessionSample::default()
            });
        }
        // Ended sessions are forgotten.
        self.counters.retain(|id, _| seen.contains_key(id));
        self.previous = seen;
        out
    }

    /// Each game from its cgroup's counters (opened once, read with one call each), the rest
    /// from one pass over /proc.
    fn sample_all(&mut self, games: &[Game]) -> HashMap<i64, GroupSample> {
        let mut out = HashMap::new();
        let mut by_proc = Vec::new();
        for game in games {
            let from_group = game.cgroup.as_ref().and_then(|group| {
                let counters = self
                    .counters
                    .entry(game.session_id)
                    .or_insert_with(|| Counters::open(group));
                from_counters(&counters.read(&mut self.buf), game.pid)
            });
            match from_group {
                Some(sample) => {
                    out.insert(game.session_id, sample);
                }
                None => {
                    // Not made yet, or gone: opened again next time, /proc meanwhile.
                    self.counters.remove(&game.session_id);
                    by_proc.push(Game {
                        cgroup: None,
                        ..game.clone()
                    });
                }
            }
        }
        out.extend(sample_games(&by_proc));
        out
    }
}

/// A metric: name, type, help, and its value in a sample (`None`: not known for it).
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&GroupSample) -> Option<String>,
);

const SERIES: [Series; 10] = [
    (
        "manman_host_session_cpu_seconds_total",
        "counter",
        "CPU time (user + system) of the session's cgroup, or of its process group.",
        |s| Some(format!("{:.2}", s.cpu_seconds)),
    ),
    (
        "manman_host_session_rss_bytes",
        "gauge",
        "Memory of the session: its cgroup's charge, or its process group's resident memory.",
        |s| Some(s.rss_bytes.to_string()),
    ),
    (
        "manman_host_session_memory_peak_bytes",
        "gauge",
        "The most memory the session's cgroup was ever charged.",
        |s| s.memory_peak_bytes.map(|v| v.to_string()),
    ),
    (
        "manman_host_session_threads",
        "gauge",
        "Threads (tasks) in the session.",
        |s| Some(s.threads.to_string()),
    ),
    (
        "manman_host_session_open_files",
        "gauge",
        "Open file descriptors of the session's game (its whole process group without a cgroup).",
        |s| Some(s.open_files.to_string()),
    ),
    (
        "manman_host_session_processes",
        "gauge",
        "Processes in the session.",
        |s| Some(s.processes.to_string()),
    ),
    (
        "manman_host_session_io_read_bytes_total",
        "counter",
        "Bytes the session's cgroup read from block devices.",
        |s| s.io_read_bytes.map(|v| v.to_string()),
    ),
    (
        "manman_host_session_oom_kills_total",
        "counter",
        "Processes of the session the kernel's OOM killer killed (its memory limit).",
        |s| s.oom_kills.map(|v| v.to_string()),
    ),
    (
        "manman_host_session_memory_high_events_total",
        "counter",
        "Times the session went over memory_high and was throttled (cgroup v2).",
        |s| s.memory_high_events.map(|v| v.to_string()),
    ),
    (
        "manman_host_session_memory_pressure_seconds_total",
        "counter",
        "Time some of the session's tasks stalled waiting for memory (PSI).",
        |s| s.memory_stall_seconds.map(|v| format!("{v:.3}")),
    ),
];

/// `/metrics` lines for the live games.
pub fn session_metrics(games: &[Game]) -> String {
    let samples = sample_games(games);
    let mut out = String::new();
    for (name, kind, help, value) in SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for game in games {
            if let Some(v) = samples.get(&game.session_id).and_then(value) {
                let _ = writeln!(
                    out,
                    "{name}{{session_id=\"{}\",pid=\"{}\"}} {v}",
                    game.session_id, game.pid
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_total_and_available_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some((24_576_000 * 1024, 20_000_000 * 1024))
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        let (total, available) = memory().expect("this machine's /proc/meminfo");
        assert!(total >= available && available > 0);
    }
    use std::os::unix::process::CommandExt;

    #[test]
    fn samples_a_real_process_group() {
        // A child in a group of its own, as the agent starts games; it holds a file open.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exec 3</proc/self/stat; exec sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the shell has exec'd `sleep` with the file still open (a moment after spawn,
        // the process may not have its memory mapped yet).
        let sample = crate::testkit::wait_for(
            "the group in /proc",
            std::time::Duration::from_secs(10),
            || {
                sample_groups(&[pid])
                    .remove(&pid)
                    .filter(|s| s.rss_bytes > 100 * 1024 && s.open_files >= 4)
            },
        );
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(sample.processes, 1);
        assert!(sample.rss_bytes > 100 * 1024, "{sample:?}");
        assert!(sample.threads >= 1 && sample.open_files >= 4, "{sample:?}");
        let text = session_metrics(&[Game {
            session_id: 7,
            pid: std::process::id(),
            cgroup: None,
        }]);
        assert!(text.contains("# TYPE manman_host_session_rss_bytes gauge"));
    }
}
