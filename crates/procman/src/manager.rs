//! The process container: names → managed processes, and the operations on them (start,
//! stop by name or pattern, input, global environment, shutdown). Building it is builder.rs,
//! what a previous run left is recovery.rs, the thread that keeps it in line is reconciler.rs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::error::ProcError;
use super::history::HistorySink;
use super::launcher::Launcher;
use super::output::OutputSink;
use super::process::{Context, InputRefused, ManagedProcess};
use super::store::{Store, StoredProcess};
use super::MAX_PENDING_INPUT;
use super::{pattern_matches, ProcessState, Spec, Status};
use manman_base::shutdown::ShutdownTrigger;
use manman_base::sync::lock;

pub(super) struct Inner {
    pub(super) processes: Mutex<BTreeMap<String, Arc<ManagedProcess>>>,
    pub(super) global_env: Mutex<Vec<(String, String)>>,
    pub(super) output: Arc<dyn OutputSink>,
    pub(super) history: Arc<[Arc<dyn HistorySink>]>,
    pub(super) store: Option<Arc<dyn Store>>,
    pub(super) changed: Sender<()>,
    pub(super) shutting_down: AtomicBool,
    pub(super) launcher: Arc<dyn Launcher>,
    /// What the store holds, as last written.
    pub(super) saved: Mutex<Option<Vec<StoredProcess>>>,
}

impl Inner {
    pub(super) fn context(&self) -> Context {
        Context {
            output: self.output.clone(),
            history: self.history.clone(),
            global_env: lock(&self.global_env).clone(),
            launcher: self.launcher.clone(),
            changed: self.changed.clone(),
        }
    }

    /// The processes matching `pattern`, taken out of the map lock before anyone calls them.
    pub(super) fn matching(&self, pattern: &str) -> Vec<Arc<ManagedProcess>> {
        lock(&self.processes)
            .iter()
            .filter(|(name, _)| pattern_matches(pattern, name))
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub(super) fn get(&self, name: &str) -> Result<Arc<ManagedProcess>, ProcError> {
        lock(&self.processes)
            .get(name)
            .cloned()
            .ok_or_else(|| ProcError::NotFound(name.to_string()))
    }

    fn start(&self, spec: Spec) -> Result<(), ProcError> {
        spec.validate().map_err(ProcError::InvalidSpec)?;
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ProcError::ShuttingDown);
        }
        let process = lock(&self.processes)
            .entry(spec.name.clone())
            // Not desired until `start` says so under the process lock: otherwise the
            // reconciler could see "desired, stopped" in between and start it too.
            .or_insert_with(|| Arc::new(ManagedProcess::new(spec.clone(), false)))
            .clone();
        let name = spec.name.clone();
        match process.start(spec, self.context()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProcError::AlreadyRunning(name)),
            Err(e) => Err(ProcError::Thread("supervises the process", e)),
        }
    }

    fn stop_many(
        &self,
        processes: &[Arc<ManagedProcess>],
        timeout: Option<Duration>,
    ) -> Result<Vec<Status>, ProcError> {
        let waits: Vec<(Arc<ManagedProcess>, Option<Receiver<()>>)> = processes
            .iter()
            .map(|p| (p.clone(), p.request_stop(timeout, false)))
            .collect();
        let longest = processes
            .iter()
            .map(|p| timeout.unwrap_or_else(|| p.snapshot(|s| s.spec.stop_timeout)))
            .max()
            .unwrap_or_default();
        // The stop timeout, then SIGKILL, then a margin for the kernel to deliver it.
        let deadline = Instant::now() + longest + Duration::from_secs(5);
        let mut statuses = Vec::with_capacity(waits.len());
        for (p, wait) in waits {
            if let Some(rx) = wait {
                // The supervisor answers every stop it reads; one that raced with the
                // supervisor's own end is dropped with its channel, which wakes us as well.
                if let Err(RecvTimeoutError::Timeout) = rx.recv_deadline(deadline) {
                    return Err(ProcError::StopTimeout {
                        name: p.name().to_string(),
                        timeout: longest,
                    });
                }
                p.join_if_finished();
            }
            statuses.push(p.status());
        }
        Ok(statuses)
    }
}

/// The process manager. All methods are thread-safe; none holds the manager's lock while it
/// waits on a process.
pub struct Manager {
    pub(super) inner: Arc<Inner>,
    pub(super) reconciler: Mutex<Option<(ShutdownTrigger, JoinHandle<()>)>>,
}

impl Manager {
    /// Starts one process (or restarts a stopped/failed one under a new spec).
    pub fn start(&self, spec: Spec) -> Result<(), ProcError> {
        self.inner.start(spec)
    }

    /// Starts `spec.instances` processes named `name-1` … `name-N`.
    pub fn start_n(&self, spec: Spec) -> Result<Vec<String>, ProcError> {
        spec.validate().map_err(ProcError::InvalidSpec)?;
        (1..=spec.instances)
            .map(|i| {
                let one = spec.instance(i);
                let name = one.name.clone();
                self.inner.start(one).map(|_| name)
            })
            .collect()
    }

    /// Stops a process and waits until it has: its stop plan (console stop input, then the
    /// stop signal to the whole group, SIGKILL at the stop timeout), with `timeout` replacing
    /// the spec's stop timeout if given. A stop during a restart wait cancels the restart.
    pub fn stop(
        &self,
        name: &str,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Status, ProcError> {
        let p = self.inner.get(name)?;
        Ok(self.inner.stop_many(&[p], timeout.into())?.remove(0))
    }

    /// Starts a stop (or, with `kill`, SIGKILLs the group at once, cutting into a stop under
    /// way) and returns without waiting. Repeated stops join the one under way.
    pub fn request_stop(&self, name: &str, kill: bool) -> Result<(), ProcError> {
        let p = self.inner.get(name)?;
        match p.request_stop(None, kill) {
            Some(_) => Ok(()),
            None => Err(ProcError::NotRunning(name.to_string())),
        }
    }

    /// Stops every matching process, all at once.
    pub fn stop_all(
        &self,
        pattern: &str,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Vec<Status>, ProcError> {
        let matching = self.inner.matching(pattern);
        self.inner.stop_many(&matching, timeout.into())
    }

    pub fn status(&self, name: &str) -> Result<Status, ProcError> {
        Ok(self.inner.get(name)?.status())
    }

    /// The spec a process was (last) started with.
    pub fn spec(&self, name: &str) -> Result<Spec, ProcError> {
        Ok(self.inner.get(name)?.snapshot(|s| s.spec.clone()))
    }

    pub fn status_all(&self, pattern: &str) -> Vec<Status> {
        self.inner
            .matching(pattern)
            .iter()
            .map(|p| p.status())
            .collect()
    }

    /// How many matching processes are `Running`.
    pub fn count(&self, pattern: &str) -> usize {
        self.status_all(pattern)
            .iter()
            .filter(|s| s.state == ProcessState::Running)
            .count()
    }

    /// Environment added to every process started from now on (before its own `env`).
    pub fn set_global_env(&self, env: Vec<(String, String)>) {
        *lock(&self.inner.global_env) = env;
    }

    /// Writes bytes to a running process's stdin (queued, up to [`MAX_PENDING_INPUT`] bytes
    /// not yet read by the process; never blocks the caller).
    pub fn send_input(&self, name: &str, bytes: &[u8]) -> Result<(), ProcError> {
        match self.inner.get(name)?.send_input(bytes.to_vec()) {
            Ok(()) => Ok(()),
            Err(InputRefused::NotRunning) => Err(ProcError::NotRunning(name.to_string())),
            Err(InputRefused::Full) => Err(ProcError::InputFull {
                name: name.to_string(),
                limit: MAX_PENDING_INPUT,
            }),
        }
    }

    /// Forgets a process that is not running.
    pub fn remove(&self, name: &str) -> Result<(), ProcError> {
        let p = self.inner.get(name)?;
        if p.status().state.is_live() {
            return Err(ProcError::AlreadyRunning(name.to_string()));
        }
        lock(&self.inner.processes).remove(name);
        let _ = self.inner.changed.try_send(());
        Ok(())
    }

    /// Lets go of every process without stopping it (their keepers keep them running; a
    /// manager started later re-attaches), persists, and ends the reconciler. Only with a
    /// launcher that keeps processes; otherwise it stops them as [`Manager::shutdown`] does.
    pub fn leave_running(&self) -> Result<(), ProcError> {
        if !self.inner.launcher.keeps_processes() {
            return self.shutdown();
        }
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let all = self.inner.matching("*");
        let waits: Vec<Receiver<()>> = all.iter().filter_map(|p| p.request_detach()).collect();
        for w in waits {
            let _ = w.recv_timeout(Duration::from_secs(5));
        }
        if let Some((mut trigger, thread)) = lock(&self.reconciler).take() {
            trigger.trigger();
            let _ = thread.join();
        }
        for p in &all {
            p.join();
        }
        Ok(())
    }

    /// Stops every process (each with its own stop timeout), persists, and ends the
    /// reconciler. Further starts are refused.
    pub fn shutdown(&self) -> Result<(), ProcError> {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let all = self.inner.matching("*");
        let result = self.inner.stop_many(&all, None).map(|_| ());
        if let Some((mut trigger, thread)) = lock(&self.reconciler).take() {
            trigger.trigger();
            let _ = thread.join();
        }
        if result.is_ok() {
            for p in &all {
                p.join();
            }
        }
        result
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if !self.inner.shutting_down.load(Ordering::SeqCst) {
            let _ = self.shutdown();
        }
    }
}
