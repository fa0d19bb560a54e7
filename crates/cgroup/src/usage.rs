//! What a session's group uses, read from its own files (one read per file, whatever the
//! number of processes), and how often the kernel's OOM killer struck inside it.

use std::fs::File;
use std::path::PathBuf;

use crate::group::Dir;
use crate::Cgroup;

/// One reading of a group for `/metrics`: the heartbeat's counters and what only the scrape
/// wants. `None`: this host does not say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub counters: Sample,
    /// Times the OOM killer killed a process in it.
    pub oom_kills: Option<u64>,
    /// Times it went over `memory.high` and was throttled (v2).
    pub memory_high_events: Option<u64>,
    /// Time some of its tasks stalled on memory, in microseconds (PSI `some total`).
    pub memory_stall_usec: Option<u64>,
}

/// The value of `key` in a flat-keyed file (`key value` lines: cpu.stat, memory.events,
/// memory.oom_control).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Sum of `rbytes=` over the devices of a v2 `io.stat`.
pub fn io_stat_read_bytes(text: &str) -> u64 {
    text.split_whitespace()
        .filter_map(|f| f.strip_prefix("rbytes="))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Sum of the `Read` lines of a v1 `blkio.throttle.io_service_bytes_recursive`.
pub fn blkio_read_bytes(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_device, op, value) = (f.next()?, f.next()?, f.next()?);
            (op == "Read").then(|| value.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// `total=` of the `some` line of a PSI file (`memory.pressure`).
pub fn pressure_some_total(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

impl Cgroup {
    /// Reads what the group uses now.
    pub fn usage(&self) -> Usage {
        // The counters the heartbeat reads, opened for this one reading; then what only
        // `/metrics` wants.
        let counters = Counters::open(self).read(&mut Vec::new());
        let memory_high_events = match self.locate("memory", "memory") {
            Some(Dir::V2(d)) => crate::read(&d.join("memory.events"))
                .ok()
                .and_then(|t| keyed(&t, "high")),
            _ => None,
        };
        Usage {
            counters,
            oom_kills: self.oom_kills(),
            memory_high_events,
            memory_stall_usec: self
                .unified
                .as_ref()
                .and_then(|d| crate::read(&d.join("memory.pressure")).ok())
                .and_then(|t| pressure_some_total(&t)),
        }
    }

    /// Times the OOM killer killed a process in the group (v2 `memory.events`, v1
    /// `memory.oom_control`, Linux ≥ 4.13); `None` without a memory controller.
    pub fn oom_kills(&self) -> Option<u64> {
        match self.locate("memory", "memory")? {
            Dir::V1(d) => keyed(
                &crate::read(&d.join("memory.oom_control")).ok()?,
                "oom_kill",
            ),
            Dir::V2(d) => keyed(&crate::read(&d.join("memory.events")).ok()?, "oom_kill"),
        }
    }
}

/// A group's counter files held open and read again with `pread` at offset 0 (cgroup files
/// are regenerated on each read from the start): one system call per counter per sample
/// instead of open, stat, read, read and close. What the heartbeat samples of every session.
pub struct Counters {
    cpu: Option<(File, bool)>,
    memory: Option<File>,
    peak: Option<File>,
    pids: Option<File>,
    io: Option<(File, bool)>,
    procs: Option<File>,
}

/// What [`Counters::read`] gives (the heartbeat's reading of a group). `None`: this host
/// does not say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// CPU time of every process that ran in it, in microseconds.
    pub cpu_usec: Option<u64>,
    /// Memory charged to it now (v2 `memory.current`, v1 `memory.usage_in_bytes`).
    pub memory_bytes: Option<u64>,
    /// The most it was ever charged (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`).
    pub memory_peak_bytes: Option<u64>,
    /// Processes and threads in it.
    pub pids: Option<u64>,
    /// Bytes read from block devices.
    pub io_read_bytes: Option<u64>,
    /// Processes in it.
    pub processes: Option<u64>,
}

fn open(path: PathBuf) -> Option<File> {
    File::open(path).ok()
}

/// The file's whole content from offset 0 into `buf` (grown as needed).
fn pread_all<'a>(file: &File, buf: &'a mut Vec<u8>) -> Option<&'a str> {
    use std::os::unix::fs::FileExt;
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len().max(4096) * 2, 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
        // A counter fits in one read; a short read with room left is the end.
        if len < buf.len() {
            break;
        }
    }
    std::str::from_utf8(&buf[..len]).ok()
}

impl Counters {
    /// Opens the group's counter files (those the host has).
    pub fn open(group: &Cgroup) -> Counters {
        let cpu = match (group.v1.get("cpuacct"), &group.unified) {
            (Some(d), _) => open(d.join("cpuacct.usage")).map(|f| (f, true)),
            (None, Some(d)) => open(d.join("cpu.stat")).map(|f| (f, false)),
            (None, None) => None,
        };
        let (memory, peak) = match group.locate("memory", "memory") {
            Some(Dir::V1(d)) => (
                open(d.join("memory.usage_in_bytes")),
                open(d.join("memory.max_usage_in_bytes")),
            ),
            Some(Dir::V2(d)) => (open(d.join("memory.current")), open(d.join("memory.peak"))),
            None => (None, None),
        };
        let pids = match group.locate("pids", "pids") {
            Some(Dir::V1(d) | Dir::V2(d)) => open(d.join("pids.current")),
            None => None,
        };
        let io = match group.locate("blkio", "io") {
            Some(Dir::V1(d)) => {
                open(d.join("blkio.throttle.io_service_bytes_recursive")).map(|f| (f, true))
            }
            Some(Dir::V2(d)) => open(d.join("io.stat")).map(|f| (f, false)),
            None => None,
        };
        let procs = group
            .dirs()
            .first()
            .and_then(|d| open(d.join("cgroup.procs")));
        Counters {
            cpu,
            memory,
            peak,
            pids,
            io,
            procs,
        }
    }

    /// Reads every counter once.
    pub fn read(&self, buf: &mut Vec<u8>) -> Sample {
        let number = |f: &Option<File>, buf: &mut Vec<u8>| {
            f.as_ref()
                .and_then(|f| pread_all(f, buf)?.trim().parse::<u64>().ok())
        };
        let cpu_usec = self.cpu.as_ref().and_then(|(f, v1)| {
            let text = pread_all(f, buf)?;
            if *v1 {
                text.trim().parse::<u64>().ok().map(|ns| ns / 1000)
            } else {
                keyed(text, "usage_usec")
            }
        });
        let io_read_bytes = self.io.as_ref().and_then(|(f, v1)| {
            let text = pread_all(f, buf)?;
            Some(if *v1 {
                blkio_read_bytes(text)
            } else {
                io_stat_read_bytes(text)
            })
        });
        let processes = self
            .procs
            .as_ref()
            .and_then(|f| pread_all(f, buf))
            .map(|t| t.lines().count() as u64);
        Sample {
            cpu_usec,
            memory_bytes: number(&self.memory, buf),
            memory_peak_bytes: number(&self.peak, buf),
            pids: number(&self.pids, buf),
            io_read_bytes,
            processes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_formats_parse() {
        let cpu = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n";
        assert_eq!(keyed(cpu, "usage_usec"), Some(1_234_567));
        assert_eq!(keyed(cpu, "usage"), None);
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(3));
        let events = "low 0\nhigh 17\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed(events, "high"), Some(17));
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        let io = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                  8:0 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
        assert_eq!(io_stat_read_bytes(io), 1_459_300);
        let blkio = "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\n8:16 Read 100\nTotal 12388\n";
        assert_eq!(blkio_read_bytes(blkio), 4196);
        let psi = "some avg10=0.00 avg60=0.00 avg300=0.00 total=5721\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=5000\n";
        assert_eq!(pressure_some_total(psi), Some(5721));
        assert_eq!(pressure_some_total(""), None);
    }
}
