//! The process container: names → managed processes, pattern operations, global environment,
//! the store, and the reconciler thread that persists state and makes the running set match
//! the desired one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{select, Receiver, Sender};

use super::history::{HistoryEvent, HistorySink};
use super::launcher::{Launcher, LocalLauncher};
use super::output::{NullOutput, OutputSink};
use super::process::{Context, InputRefused, ManagedProcess};
use super::store::{Store, StoredProcess};
use super::MAX_PENDING_INPUT;
use super::{pattern_matches, sys, ProcessState, Spec, Status};
use crate::lifecycle::{ShutdownSignal, ShutdownTrigger};
use crate::sync::lock;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcError {
    #[error("no process named {0:?}")]
    NotFound(String),
    #[error("process {0:?} is already running")]
    AlreadyRunning(String),
    #[error("process {0:?} is not running")]
    NotRunning(String),
    #[error("process {name:?} is not reading its console: {limit} bytes are already waiting")]
    InputFull { name: String, limit: usize },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("the manager is shutting down")]
    ShuttingDown,
    #[error("process {name:?} did not stop within {timeout:?}")]
    StopTimeout { name: String, timeout: Duration },
    #[error("{0}")]
    Io(String),
}

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

pub struct ManagerBuilder {
    output: Arc<dyn OutputSink>,
    history: Vec<Arc<dyn HistorySink>>,
    store: Option<Arc<dyn Store>>,
    reconcile_every: Duration,
    restart_recovered: bool,
    launcher: Arc<dyn Launcher>,
}

impl ManagerBuilder {
    /// How processes are started (default: as our own children). A launcher whose processes
    /// are held by keepers lets them outlive the manager, which then re-attaches to them.
    pub fn launcher(mut self, launcher: impl Launcher + 'static) -> Self {
        self.launcher = Arc::new(launcher);
        self
    }

    /// Whether processes found alive from a previous run are started again after being ended
    /// (default yes). The host agent says no: a session whose process was lost is over.
    pub fn restart_recovered(mut self, restart: bool) -> Self {
        self.restart_recovered = restart;
        self
    }

    pub fn output(mut self, sink: impl OutputSink + 'static) -> Self {
        self.output = Arc::new(sink);
        self
    }

    pub fn history(mut self, sink: impl HistorySink + 'static) -> Self {
        self.history.push(Arc::new(sink));
        self
    }

    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    pub fn reconcile_every(mut self, interval: Duration) -> Self {
        self.reconcile_every = interval;
        self
    }

    /// Builds the manager. With a store, processes left alive by a previous run (verified by
    /// PID *and* kernel start time) are ended, and those meant to run are started again by the
    /// reconciler.
    pub fn build(self) -> Result<(Manager, Vec<Recovered>), ProcError> {
        sys::raise_fd_limit();
        let (changed_tx, changed_rx) = crossbeam_channel::bounded(1);
        let inner = Arc::new(Inner {
            processes: Mutex::new(BTreeMap::new()),
            global_env: Mutex::new(Vec::new()),
            output: self.output,
            history: self.history.into(),
            store: self.store,
            changed: changed_tx,
            shutting_down: AtomicBool::new(false),
            launcher: self.launcher,
            saved: Mutex::new(None),
        });
        let recovered = inner.recover(self.restart_recovered)?;
        let (trigger, signal) = ShutdownSignal::new();
        let reconciler = {
            let inner = inner.clone();
            let every = self.reconcile_every;
            std::thread::Builder::new()
                .name("procman-reconciler".into())
                .spawn(move || inner.reconcile_loop(&changed_rx, &signal, every))
                .map_err(|e| ProcError::Io(e.to_string()))?
        };
        Ok((
            Manager {
                inner,
                reconciler: Mutex::new(Some((trigger, reconciler))),
            },
            recovered,
        ))
    }
}

struct Inner {
    processes: Mutex<BTreeMap<String, Arc<ManagedProcess>>>,
    global_env: Mutex<Vec<(String, String)>>,
    output: Arc<dyn OutputSink>,
    history: Arc<[Arc<dyn HistorySink>]>,
    store: Option<Arc<dyn Store>>,
    changed: Sender<()>,
    shutting_down: AtomicBool,
    launcher: Arc<dyn Launcher>,
    /// What the store holds, as last written.
    saved: Mutex<Option<Vec<StoredProcess>>>,
}

impl Inner {
    fn context(&self) -> Context {
        Context {
            output: self.output.clone(),
            history: self.history.clone(),
            global_env: lock(&self.global_env).clone(),
            launcher: self.launcher.clone(),
            changed: self.changed.clone(),
        }
    }

    /// The processes matching `pattern`, taken out of the map lock before anyone calls them.
    fn matching(&self, pattern: &str) -> Vec<Arc<ManagedProcess>> {
        lock(&self.processes)
            .iter()
            .filter(|(name, _)| pattern_matches(pattern, name))
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn get(&self, name: &str) -> Result<Arc<ManagedProcess>, ProcError> {
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
            Err(e) => Err(ProcError::Io(e.to_string())),
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
                // Done when the supervisor says so, or when the process is no longer live (a
                // request that raced with the supervisor's own exit is never answered).
                loop {
                    select! {
                        recv(rx) -> _ => break,
                        default(Duration::from_millis(20)) => {
                            if !p.status().state.is_live() {
                                break;
                            }
                            if Instant::now() >= deadline {
                                return Err(ProcError::StopTimeout {
                                    name: p.name().to_string(),
                                    timeout: longest,
                                });
                            }
                        }
                    }
                }
                p.join_if_finished();
            }
            statuses.push(p.status());
        }
        Ok(statuses)
    }

    /// Ends processes a previous run left behind; keeps their records for the reconciler.
    fn recover(&self, restart: bool) -> Result<Vec<Recovered>, ProcError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let records = store
            .load()
            .map_err(|e| ProcError::Io(format!("cannot read the process store: {e}")))?;
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
                .map_err(|e| ProcError::Io(e.to_string()))?;
        }
        Ok(recovered)
    }

    fn reconcile_loop(&self, changed: &Receiver<()>, shutdown: &ShutdownSignal, every: Duration) {
        let mut dirty = true;
        loop {
            self.reconcile();
            if dirty {
                self.persist();
                dirty = false;
            }
            select! {
                recv(changed) -> _ => dirty = true,
                recv(shutdown.receiver()) -> _ => { self.persist(); return; }
                // Keepers' output positions move without a state change: keep them current.
                default(every) => dirty |= self.launcher.keeps_processes(),
            }
        }
    }

    /// Starts what should run and is not running (never a `Failed` process: that needs an
    /// operator).
    fn reconcile(&self) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        for p in self.matching("*") {
            let (want, state, spec) =
                p.snapshot(|s| (s.desired_running, s.status.state, s.spec.clone()));
            if want && state == ProcessState::Stopped {
                log::info!(process = p.name(); "reconciler: starting (desired running)");
                if let Err(e) = p.start(spec, self.context()) {
                    log::error!(process = p.name(); "reconciler could not start: {e}");
                }
            }
        }
    }

    fn persist(&self) {
        let Some(store) = &self.store else { return };
        let records: Vec<StoredProcess> = self
            .matching("*")
            .iter()
            .map(|p| {
                p.snapshot(|s| StoredProcess {
                    spec: s.spec.clone(),
                    desired_running: s.desired_running,
                    pid: s.status.pid,
                    pid_start_time: s.pid_start_time,
                    last_seq: s.last_seq,
                })
            })
            .collect();
        // A keeper's output position is looked at every tick: write only what changed.
        let mut saved = lock(&self.saved);
        if saved.as_ref() == Some(&records) {
            return;
        }
        match store.save(&records) {
            Ok(()) => *saved = Some(records),
            Err(e) => log::error!("cannot write the process store: {e}"),
        }
    }
}

/// The process manager. All methods are thread-safe; none holds the manager's lock while it
/// waits on a process.
pub struct Manager {
    inner: Arc<Inner>,
    reconciler: Mutex<Option<(ShutdownTrigger, JoinHandle<()>)>>,
}

impl Manager {
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            output: Arc::new(NullOutput),
            history: Vec::new(),
            store: None,
            reconcile_every: Duration::from_secs(1),
            restart_recovered: true,
            launcher: Arc::new(LocalLauncher),
        }
    }

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
