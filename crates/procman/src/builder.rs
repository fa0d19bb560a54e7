//! Building a [`Manager`]: its sinks, store, launcher and reconciler interval, then the
//! recovery of what a previous run left and the start of the reconciler thread.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::ProcError;
use super::history::HistorySink;
use super::launcher::{Launcher, LocalLauncher};
use super::manager::{Inner, Manager};
use super::output::{NullOutput, OutputSink};
use super::recovery::Recovered;
use super::store::Store;
use super::sys;
use manman_base::shutdown::ShutdownSignal;

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
                .map_err(|e| ProcError::Thread("reconciles the processes", e))?
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
