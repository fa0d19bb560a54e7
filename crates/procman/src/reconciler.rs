//! The reconciler thread: makes the running set match the desired one (never restarting a
//! `Failed` process: that needs an operator) and persists the state to the store when it
//! changes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{select, Receiver};

use super::manager::Inner;
use super::store::StoredProcess;
use super::ProcessState;
use manman_base::shutdown::ShutdownSignal;
use manman_base::sync::lock;

impl Inner {
    pub(super) fn reconcile_loop(
        &self,
        changed: &Receiver<()>,
        shutdown: &ShutdownSignal,
        every: Duration,
    ) {
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
            // The spec is cloned only for a process to start: this runs after every change,
            // over every process.
            let spec = p.snapshot(|s| {
                (s.desired_running && s.status.state == ProcessState::Stopped)
                    .then(|| s.spec.clone())
            });
            if let Some(spec) = spec {
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
