//! What a previous run of the manager left: processes still held by their keepers are
//! re-attached; orphans (verified by PID *and* kernel start time) are ended, all at once, and
//! started again by the reconciler when they were meant to run.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::error::ProcError;
use super::history::HistoryEvent;
use super::manager::Inner;
use super::process::ManagedProcess;
use super::sys;
use manman_base::sync::lock;

/// A process found alive from a previous run of the manager: adopted (its keeper held it),
/// or ended at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub name: String,
    pub pid: u32,
    /// Still running, supervised again (a keeper held it while we were away).
    pub adopted: bool,
    /// Ended; the reconciler will start it again (it was meant to be running).
    pub restarting: bool,
}

impl Inner {
    /// Ends processes a previous run left behind; keeps their records for the reconciler.
    /// Ends processes a previous run left behind; keeps their records for the reconciler.
    pub(super) fn recover(&self, restart: bool) -> Result<Vec<Recovered>, ProcError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let records = store.load().map_err(ProcError::Store)?;
        let mut orphans = Vec::new();
        let mut adopted = Vec::new();
        for record in &records {
            if let (Some(pid), Some(t)) = (record.pid, record.pid_start_time) {
                if self.launcher.keeps_processes() {
                    if let Some(child) =
                        self.launcher.adopt(&record.spec.name, pid, record.last_seq)
                    {
                        log::info!(process = record.spec.name.as_str(), pid = child.pid();
                            "re-attached to a process its keeper held while we were away");
                        adopted.push((record, child));
                        continue;
                    }
                }
                if sys::process_start_time(pid) == Some(t) {
                    orphans.push((record, pid));
                }
            }
        }
        // SIGTERM every orphan's group at once, then wait for all, then SIGKILL what is left.
        let mut waits = Vec::new();
        for (record, pid) in &orphans {
            log::warn!(process = record.spec.name.as_str(), pid = *pid;
                "found a process from a previous run; stopping it");
            let pidfd = sys::pidfd_open(*pid).ok();
            sys::signal_group(*pid, record.spec.stop_signal);
            waits.push((record, *pid, pidfd));
        }
        let longest = orphans
            .iter()
            .map(|(r, _)| r.spec.stop_timeout)
            .max()
            .unwrap_or_default();
        let until = Instant::now() + longest;
        for (_, pid, pidfd) in &waits {
            if let Some(fd) = pidfd {
                use std::os::fd::AsRawFd;
                let left = until.saturating_duration_since(Instant::now());
                let mut fds = [libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                let _ = sys::poll(&mut fds, Some(left));
            }
            sys::signal_group(*pid, libc::SIGKILL);
        }
        let mut recovered = Vec::new();
        for (record, pid, _) in waits {
            let event = HistoryEvent::Reaped {
                name: record.spec.name.clone(),
                pid,
                at: Utc::now(),
            };
            for sink in self.history.iter() {
                sink.record(&event);
            }
            recovered.push(Recovered {
                name: record.spec.name.clone(),
                pid,
                adopted: false,
                restarting: record.desired_running && restart,
            });
        }
        let mut supervise = Vec::new();
        for (record, child) in adopted {
            recovered.push(Recovered {
                name: record.spec.name.clone(),
                pid: child.pid(),
                adopted: true,
                restarting: false,
            });
            supervise.push((record.spec.name.clone(), record.spec.clone(), child));
        }
        {
            let mut map = lock(&self.processes);
            for record in &records {
                let desired = record.desired_running && restart;
                map.insert(
                    record.spec.name.clone(),
                    Arc::new(ManagedProcess::new(record.spec.clone(), desired)),
                );
            }
        }
        for (name, spec, child) in supervise {
            let p = self.get(&name)?;
            p.snapshot_mut(|s| s.last_seq = child.last_seq());
            p.adopt(spec, self.context(), child)
                .map_err(|e| ProcError::Thread("supervises the process", e))?;
        }
        Ok(recovered)
    }
}
