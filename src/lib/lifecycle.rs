//! Daemon lifecycle: SIGTERM/SIGINT as a channel, supervised named threads, a drain deadline.
//!
//! The main thread calls [`Supervisor::run`]: it waits for a signal, a stop request, or the
//! death of any worker, then tells every worker to drain and joins them within the deadline.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

/// How long workers get to drain after shutdown starts (systemd's TimeoutStopSec matches).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

pub use manman_base::shutdown::{ShutdownSignal, ShutdownTrigger};

/// Why a worker thread ended.
#[derive(Debug)]
enum WorkerExit {
    Finished,
    Failed(String),
    Panicked,
}

/// Why [`Supervisor::run`] returned, and the exit code it maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM/SIGINT or a stop request, and every worker drained in time.
    Requested,
    /// A worker died on its own; the others were drained.
    WorkerDied(String),
    /// Some worker did not finish within the drain deadline.
    DeadlineExceeded(Vec<String>),
}

impl StopReason {
    pub fn exit_code(&self) -> i32 {
        match self {
            StopReason::Requested => 0,
            StopReason::WorkerDied(_) => 1,
            StopReason::DeadlineExceeded(_) => 2,
        }
    }
}

/// Owns a daemon's worker threads.
pub struct Supervisor {
    trigger: ShutdownTrigger,
    signal: ShutdownSignal,
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
    exits_tx: Sender<(String, WorkerExit)>,
    exits_rx: Receiver<(String, WorkerExit)>,
    workers: Vec<(String, JoinHandle<()>)>,
}

/// Asks a running [`Supervisor`] to shut down (used by tests and embedding code).
#[derive(Clone)]
pub struct StopHandle(Sender<()>);

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.try_send(());
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        let (trigger, signal) = ShutdownSignal::new();
        let (stop_tx, stop_rx) = bounded(1);
        let (exits_tx, exits_rx) = unbounded();
        Supervisor {
            trigger,
            signal,
            stop_tx,
            stop_rx,
            exits_tx,
            exits_rx,
            workers: Vec::new(),
        }
    }

    pub fn signal(&self) -> ShutdownSignal {
        self.signal.clone()
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop_tx.clone())
    }

    /// Spawns a named worker. It should return when `ShutdownSignal` fires; returning earlier
    /// (or panicking) counts as the worker dying and shuts the daemon down.
    pub fn spawn<F>(&mut self, name: &str, work: F) -> Result<(), SpawnError>
    where
        F: FnOnce(ShutdownSignal) -> Result<(), String> + Send + 'static,
    {
        let signal = self.signal.clone();
        let exits = self.exits_tx.clone();
        let thread_name = name.to_string();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                SUPERVISED.with(|s| s.set(true));
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(signal)));
                let exit = match result {
                    Ok(Ok(())) => WorkerExit::Finished,
                    Ok(Err(e)) => WorkerExit::Failed(e),
                    Err(_) => WorkerExit::Panicked,
                };
                let _ = exits.send((thread_name, exit));
            })
            .map_err(|source| SpawnError {
                name: name.to_string(),
                source,
            })?;
        self.workers.push((name.to_string(), handle));
        Ok(())
    }

    /// Blocks until SIGTERM/SIGINT, a stop request or a worker's death; then drains.
    pub fn run(mut self, deadline: Duration) -> StopReason {
        let (signal_tx, signal_rx) = bounded(1);
        if let Err(e) = forward_os_signals(signal_tx) {
            log::error!("cannot install signal handlers: {e}");
        }
        let died = select! {
            recv(signal_rx) -> _ => { log::info!("shutdown signal received; draining"); None }
            recv(self.stop_rx) -> _ => { log::info!("stop requested; draining"); None }
            recv(self.exits_rx) -> exit => {
                let (name, how) = exit.expect("supervisor holds a sender");
                log::error!(worker = name.as_str(); "worker thread ended unexpectedly: {how:?}; shutting down");
                Some(name)
            }
        };
        self.trigger.trigger();
        let late = self.join_all(deadline, died.as_deref());
        match (died, late.is_empty()) {
            (_, false) => {
                log::error!("workers still running after the drain deadline: {late:?}");
                StopReason::DeadlineExceeded(late)
            }
            (Some(name), true) => StopReason::WorkerDied(name),
            (None, true) => {
                log::info!("all workers drained; bye");
                StopReason::Requested
            }
        }
    }

    /// Joins workers until the deadline; returns the names of those still running.
    fn join_all(&mut self, deadline: Duration, already_exited: Option<&str>) -> Vec<String> {
        let until = Instant::now() + deadline;
        let mut pending: Vec<String> = self.workers.iter().map(|(n, _)| n.clone()).collect();
        pending.retain(|n| Some(n.as_str()) != already_exited);
        // Exits already reported before shutdown (e.g. the worker that died).
        while let Ok((name, _)) = self.exits_rx.try_recv() {
            pending.retain(|n| n != &name);
        }
        while !pending.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            match self.exits_rx.recv_timeout(left) {
                Ok((name, exit)) => {
                    if let WorkerExit::Failed(e) = &exit {
                        log::warn!(worker = name.as_str(); "worker ended with error while draining: {e}");
                    }
                    pending.retain(|n| n != &name);
                }
                Err(_) => return pending,
            }
        }
        for (_, handle) in self.workers.drain(..) {
            let _ = handle.join();
        }
        Vec::new()
    }
}

/// The whole `main` of a daemon: JSON logs; configuration from the environment (a bad value
/// exits 78 with one line naming the variable); its threads started (a failure exits 1 with
/// the reason); then wait for a signal, drain, and exit with the supervisor's code.
pub fn run_daemon<C>(
    from_env: impl FnOnce(&crate::config::Env) -> Result<C, crate::config::ConfigError>,
    start: impl FnOnce(C, &mut Supervisor) -> Result<(), String>,
) -> ! {
    run_daemon_draining(DRAIN_DEADLINE, from_env, start)
}

/// [`run_daemon`] with its own drain deadline (the host agent's covers its games' stop
/// timeouts).
pub fn run_daemon_draining<C>(
    deadline: Duration,
    from_env: impl FnOnce(&crate::config::Env) -> Result<C, crate::config::ConfigError>,
    start: impl FnOnce(C, &mut Supervisor) -> Result<(), String>,
) -> ! {
    crate::telemetry::init();
    exit_on_panic();
    let config = match from_env(&crate::config::Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(78); // EX_CONFIG
        }
    };
    let mut supervisor = Supervisor::new();
    if let Err(e) = start(config, &mut supervisor) {
        log::error!("cannot start: {e}");
        std::process::exit(1);
    }
    // Started means: configuration read, ports bound, dependencies checked, threads running.
    notify_systemd("READY=1");
    std::process::exit(supervisor.run(deadline).exit_code());
}

/// A worker thread the OS would not start (out of memory or of threads).
#[derive(Debug, thiserror::Error)]
#[error("cannot spawn thread {name}: {source}")]
pub struct SpawnError {
    pub name: String,
    #[source]
    pub source: std::io::Error,
}

crate::errors::read_as_one_line!(SpawnError);

/// Marks this process non-dumpable (see `manman_child::sys::forbid_inspection`).
pub use manman_child::sys::forbid_inspection;

/// A panic in any thread ends the daemon with one clear log line and exit code 70, so systemd
/// restarts it, instead of leaving it half alive (a dead supervisor thread of a game, a dead
/// relay...). Worker threads under [`Supervisor`] catch theirs first and drain the daemon.
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        log::error!(thread = name, at = place.as_str(); "panic: {message}; exiting");
        if !is_supervised_worker(name) {
            std::process::exit(70); // EX_SOFTWARE
        }
    }));
}

thread_local! {
    static SUPERVISED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is a [`Supervisor`] worker (its panic drains the daemon).
fn is_supervised_worker(_name: &str) -> bool {
    SUPERVISED.with(|s| s.get())
}

/// Tells systemd our state (`Type=notify` units); a no-op outside systemd. The protocol is one
/// datagram to the socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract
/// namespace).
pub fn notify_systemd(state: &str) {
    if let Some(target) = std::env::var_os("NOTIFY_SOCKET") {
        let target = target.to_string_lossy();
        if let Err(e) = send_notify(&target, state) {
            log::warn!("cannot notify systemd ({target}): {e}");
        }
    }
}

fn send_notify(target: &str, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = match target.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
        None => SocketAddr::from_pathname(target),
    }?;
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

fn forward_os_signals(tx: Sender<()>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = tx.try_send(());
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_systemd_sends_the_state_to_the_socket() {
        let dir = std::env::temp_dir().join(crate::testkit::unique_name("notify"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send_notify(path.to_str().unwrap(), "READY=1").unwrap();
        assert!(send_notify("@no-such-manman-socket", "READY=1").is_err());
        let mut buf = [0u8; 64];
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stop_request_drains_workers() {
        let mut sup = Supervisor::new();
        sup.spawn("waiter", |s| {
            while !s.wait(Duration::from_secs(5)) {}
            Ok(())
        })
        .unwrap();
        let stop = sup.stop_handle();
        stop.stop();
        assert_eq!(sup.run(Duration::from_secs(5)), StopReason::Requested);
    }

    #[test]
    fn a_dying_worker_stops_the_others() {
        let mut sup = Supervisor::new();
        sup.spawn("waiter", |s| {
            while !s.wait(Duration::from_secs(5)) {}
            Ok(())
        })
        .unwrap();
        sup.spawn("crasher", |_| Err("boom".into())).unwrap();
        assert_eq!(
            sup.run(Duration::from_secs(5)),
            StopReason::WorkerDied("crasher".into())
        );
    }

    #[test]
    fn a_stuck_worker_is_reported_after_the_deadline() {
        let mut sup = Supervisor::new();
        let (_keep, never) = bounded::<()>(0);
        sup.spawn("stuck", move |_| {
            let _ = never.recv_timeout(Duration::from_secs(3));
            Ok(())
        })
        .unwrap();
        sup.stop_handle().stop();
        let reason = sup.run(Duration::from_millis(50));
        assert_eq!(reason, StopReason::DeadlineExceeded(vec!["stuck".into()]));
        assert_eq!(reason.exit_code(), 2);
    }
}
