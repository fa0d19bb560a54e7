//! What each game is doing, read from /proc when `/metrics` is scraped: CPU time, memory,
//! threads and open files of its process group (the game and whatever it started), labelled
//! with the session id so an operator can join them with the control plane's series.

use std::collections::HashMap;
use std::fmt::Write;

use crate::wire::SessionSample;

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

/// One game's process group, summed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GroupSample {
    pub processes: u64,
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub threads: u64,
    pub open_files: u64,
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

/// CPU use between heartbeats: each sample's CPU time against the previous one's.
#[derive(Default)]
pub struct CpuRates {
    previous: HashMap<i64, (f64, std::time::Instant)>,
}

impl CpuRates {
    /// Samples the games `(session_id, pid)` for a heartbeat. A game's first sample has no
    /// rate yet (0 %); the next ones are CPU seconds per wall second, in percent of a core.
    pub fn sample(&mut self, games: &[(i64, u32)]) -> Vec<SessionSample> {
        let leaders: Vec<u32> = games.iter().map(|(_, pid)| *pid).collect();
        let groups = sample_groups(&leaders);
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for (session_id, pid) in games {
            let Some(g) = groups.get(pid) else { continue };
            let cpu_percent = match self.previous.get(session_id) {
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
            seen.insert(*session_id, (g.cpu_seconds, now));
            out.push(SessionSample {
                session_id: *session_id,
                cpu_percent: (cpu_percent * 10.0).round() / 10.0,
                rss_bytes: g.rss_bytes,
                threads: g.threads.min(u64::from(u32::MAX)) as u32,
                open_files: g.open_files.min(u64::from(u32::MAX)) as u32,
                processes: g.processes.min(u64::from(u32::MAX)) as u32,
            });
        }
        // Ended sessions are forgotten.
        self.previous = seen;
        out
    }
}

/// A metric: name, type, help, and its value in a sample.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&GroupSample) -> String,
);

/// `/metrics` lines for the live sessions `(session_id, game pid)`.
pub fn session_metrics(sessions: &[(i64, u32)]) -> String {
    let leaders: Vec<u32> = sessions.iter().map(|(_, pid)| *pid).collect();
    let samples = sample_groups(&leaders);
    let mut out = String::new();
    let series: [Series; 5] = [
        (
            "manman_host_session_cpu_seconds_total",
            "counter",
            "CPU time (user + system) of the session's game process group.",
            |s| format!("{:.2}", s.cpu_seconds),
        ),
        (
            "manman_host_session_rss_bytes",
            "gauge",
            "Resident memory of the session's game process group.",
            |s| s.rss_bytes.to_string(),
        ),
        (
            "manman_host_session_threads",
            "gauge",
            "Threads in the session's game process group.",
            |s| s.threads.to_string(),
        ),
        (
            "manman_host_session_open_files",
            "gauge",
            "Open file descriptors in the session's game process group.",
            |s| s.open_files.to_string(),
        ),
        (
            "manman_host_session_processes",
            "gauge",
            "Processes in the session's game process group.",
            |s| s.processes.to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (session_id, pid) in sessions {
            if let Some(s) = samples.get(pid) {
                let _ = writeln!(
                    out,
                    "{name}{{session_id=\"{session_id}\",pid=\"{pid}\"}} {}",
                    value(s)
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
        let text = session_metrics(&[(7, std::process::id())]);
        assert!(text.contains("# TYPE manman_host_session_rss_bytes gauge"));
    }
}
