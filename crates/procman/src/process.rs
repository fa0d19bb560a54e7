//! One managed process as its callers see it: a status snapshot and a handle that sends the
//! supervisor thread (runner.rs) its commands.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::history::{HistoryEvent, HistorySink};
use super::output::OutputSink;
use super::probe::Patterns;
use super::runner::{Cmd, Runner};
use super::sys::Waker;
use super::{ChildIo, Launcher, MAX_PENDING_INPUT};
use super::{ProcessState, Spec, Status};

/// Supervisor threads do little on their own stack (buffers live on the heap).
const SUPERVISOR_STACK: usize = 64 * 1024;

/// Why input was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputRefused {
    NotRunning,
    Full,
}

/// What a supervisor thread needs from its manager.
#[derive(Clone)]
pub(crate) struct Context {
    pub output: Arc<dyn OutputSink>,
    pub history: Arc<[Arc<dyn HistorySink>]>,
    pub global_env: Vec<(String, String)>,
    pub launcher: Arc<dyn Launcher>,
    /// Wakes the manager's reconciler to persist the store.
    pub changed: Sender<()>,
}

impl Context {
    pub(crate) fn record(&self, event: HistoryEvent) {
        for sink in self.history.iter() {
            sink.record(&event);
        }
    }
}

pub(crate) struct Snapshot {
    pub status: Status,
    pub spec: Spec,
    pub desired_running: bool,
    pub pid_start_time: Option<u64>,
    /// The newest output line seen from its keeper (where to resume after a restart of ours).
    pub last_seq: u64,
}

struct Control {
    tx: Sender<Cmd>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

/// A process under supervision. Cheap to share; all methods are thread-safe.
pub struct ManagedProcess {
    name: String,
    state: Arc<Mutex<Snapshot>>,
    control: Mutex<Option<Control>>,
    /// Bytes of console input queued but not yet written.
    queued_input: Arc<AtomicUsize>,
}

pub(crate) use manman_base::sync::lock;

impl ManagedProcess {
    pub(crate) fn new(spec: Spec, desired_running: bool) -> Self {
        ManagedProcess {
            name: spec.name.clone(),
            state: Arc::new(Mutex::new(Snapshot {
                status: Status {
                    name: spec.name.clone(),
                    state: ProcessState::Stopped,
                    pid: None,
                    started_at: None,
                    stopped_at: None,
                    last_exit: None,
                    restarts: 0,
                },
                spec,
                desired_running,
                pid_start_time: None,
                last_seq: 0,
            })),
            control: Mutex::new(None),
            queued_input: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn status(&self) -> Status {
        lock(&self.state).status.clone()
    }

    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&lock(&self.state))
    }

    pub(crate) fn snapshot_mut<T>(&self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// Starts a supervisor thread for `spec`. Fails if one is already running.
    pub(crate) fn start(&self, spec: Spec, ctx: Context) -> std::io::Result<bool> {
        self.start_supervisor(spec, ctx, None)
    }

    /// Supervises a process found held by its keeper from a previous run (it is running).
    pub(crate) fn adopt(
        &self,
        spec: Spec,
        ctx: Context,
        child: Box<dyn ChildIo>,
    ) -> std::io::Result<bool> {
        self.start_supervisor(spec, ctx, Some(child))
    }

    fn start_supervisor(
        &self,
        spec: Spec,
        ctx: Context,
        adopted: Option<Box<dyn ChildIo>>,
    ) -> std::io::Result<bool> {
        let mut control = lock(&self.control);
        // A supervisor that has published a final state is on its way out: wait for it.
        let live = lock(&self.state).status.state.is_live();
        if live && control.as_ref().is_some_and(|c| !c.thread.is_finished()) {
            return Ok(false);
        }
        if let Some(old) = control.take() {
            let _ = old.thread.join();
        }
        {
            let mut s = lock(&self.state);
            s.spec = spec.clone();
            s.desired_running = true;
            s.status.state = if adopted.is_some() {
                ProcessState::Running
            } else {
                ProcessState::Starting
            };
            if adopted.is_none() {
                s.status.restarts = 0;
            }
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let waker = Arc::new(Waker::new()?);
        let runner = Runner {
            patterns: Patterns::compile(&spec),
            spec,
            state: self.state.clone(),
            rx,
            waker: waker.clone(),
            ctx,
            stop_waiters: Vec::new(),
            queued_input: self.queued_input.clone(),
            adopted,
            detaching: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("proc:{}", self.name))
            .stack_size(SUPERVISOR_STACK)
            .spawn(move || runner.run())?;
        *control = Some(Control { tx, waker, thread });
        Ok(true)
    }

    /// Asks the process to stop; returns a receiver that fires once it has. `None` if no
    /// supervisor is running (it is already stopped).
    pub(crate) fn request_stop(
        &self,
        timeout: Option<Duration>,
        kill: bool,
    ) -> Option<Receiver<()>> {
        lock(&self.state).desired_running = false;
        let control = lock(&self.control);
        let c = control.as_ref().filter(|c| !c.thread.is_finished())?;
        let (done, rx) = crossbeam_channel::bounded(1);
        c.tx.send(Cmd::Stop {
            timeout,
            kill,
            done,
        })
        .ok()?;
        c.waker.wake();
        Some(rx)
    }

    /// Lets go of the process without stopping it; the receiver fires once the supervisor
    /// thread has ended. `None` if none is running.
    pub(crate) fn request_detach(&self) -> Option<Receiver<()>> {
        let control = lock(&self.control);
        let c = control.as_ref().filter(|c| !c.thread.is_finished())?;
        let (done, rx) = crossbeam_channel::bounded(1);
        c.tx.send(Cmd::Detach { done }).ok()?;
        c.waker.wake();
        Some(rx)
    }

    /// Queues bytes for the process's stdin, up to [`MAX_PENDING_INPUT`] not yet written.
    pub(crate) fn send_input(&self, bytes: Vec<u8>) -> Result<(), InputRefused> {
        // The state is checked as well as the thread: a stop has returned (state Stopped)
        // a moment before the supervisor thread ends, and input then would be swallowed.
        if !self.status().state.is_live() {
            return Err(InputRefused::NotRunning);
        }
        let control = lock(&self.control);
        let c = control
            .as_ref()
            .filter(|c| !c.thread.is_finished())
            .ok_or(InputRefused::NotRunning)?;
        let len = bytes.len();
        if self.queued_input.fetch_add(len, Ordering::SeqCst) + len > MAX_PENDING_INPUT {
            self.queued_input.fetch_sub(len, Ordering::SeqCst);
            return Err(InputRefused::Full);
        }
        if c.tx.send(Cmd::Input(bytes)).is_err() {
            self.queued_input.fetch_sub(len, Ordering::SeqCst);
            return Err(InputRefused::NotRunning);
        }
        c.waker.wake();
        Ok(())
    }

    /// Reaps the supervisor thread if it has ended (a later `start` may already have replaced
    /// it with a new one, which must not be waited for).
    pub(crate) fn join_if_finished(&self) {
        let mut control = lock(&self.control);
        if control.as_ref().is_some_and(|c| c.thread.is_finished()) {
            if let Some(c) = control.take() {
                let _ = c.thread.join();
            }
        }
    }

    /// Waits for the supervisor thread to end (at shutdown, once nothing can start it again).
    pub(crate) fn join(&self) {
        let taken = lock(&self.control).take();
        if let Some(c) = taken {
            let _ = c.thread.join();
        }
    }
}
