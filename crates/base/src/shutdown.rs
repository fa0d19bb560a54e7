//! The shutdown signal every long-running thread watches: a channel that never carries a
//! value and disconnects when shutdown starts.

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

/// Seen by every worker. Never carries a value: the channel disconnects when shutdown starts,
/// so `select!` on [`ShutdownSignal::receiver`] wakes every waiting thread at once.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: Receiver<()>,
}

impl ShutdownSignal {
    /// A signal with its trigger: dropping the trigger (or calling `trigger`) starts shutdown.
    pub fn new() -> (ShutdownTrigger, ShutdownSignal) {
        let (tx, rx) = bounded(0);
        (ShutdownTrigger { tx: Some(tx) }, ShutdownSignal { rx })
    }

    pub fn is_triggered(&self) -> bool {
        matches!(
            self.rx.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// Sleeps up to `timeout`; returns true as soon as shutdown has started.
    pub fn wait(&self, timeout: Duration) -> bool {
        matches!(
            self.rx.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// For `select!`: a receive on it completes (with an error) once shutdown starts.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

/// Starts shutdown when triggered or dropped.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: Option<Sender<()>>,
}

impl ShutdownTrigger {
    pub fn trigger(&mut self) {
        self.tx.take();
    }
}
