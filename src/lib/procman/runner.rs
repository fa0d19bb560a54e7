//! The supervisor thread of one managed process: spawns the child, waits in `poll(2)` on its
//! pidfd, pipes and command eventfd, carries out the stop plan, and asks the restart policy
//! (restart.rs) what follows each exit.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{Receiver, Sender};

use super::history::HistoryEvent;
use super::output::{LineSplitter, Source};
use super::process::{lock, Context, Snapshot};
use super::restart::{decide, Decision, RunHistory, RunOutcome};
use super::sys::{self, Waker};
use super::{ExitInfo, ProcessState, Spec};

/// How long to keep reading a dead process's pipes for its last words.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// What a handle asks of its supervisor thread.
pub(crate) enum Cmd {
    /// One power action at a time: a second stop joins the first; `kill` cuts in at once.
    Stop {
        timeout: Option<Duration>,
        kill: bool,
        done: Sender<()>,
    },
    Input(Vec<u8>),
}

/// A stop asked for while draining commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StopRequest {
    kill: bool,
}

pub(crate) struct Runner {
    pub spec: Spec,
    pub state: Arc<Mutex<Snapshot>>,
    pub rx: Receiver<Cmd>,
    pub waker: Arc<Waker>,
    pub ctx: Context,
    pub stop_waiters: Vec<Sender<()>>,
    pub queued_input: Arc<AtomicUsize>,
}

struct Pipes {
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    stdin: Option<ChildStdin>,
    out_lines: LineSplitter,
    err_lines: LineSplitter,
    pending_input: Vec<u8>,
}

/// Human words for an exit, for logs, reasons and console markers.
pub fn describe_exit(exit: Option<ExitInfo>) -> String {
    match exit {
        Some(ExitInfo { code: Some(c), .. }) => format!("exited with code {c}"),
        Some(ExitInfo {
            signal: Some(s), ..
        }) => format!("was killed by signal {s}"),
        _ => "ended".into(),
    }
}

impl Runner {
    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut lock(&self.state));
        let _ = self.ctx.changed.try_send(());
    }

    fn set_state(&self, state: ProcessState) {
        self.update(|s| s.status.state = state);
    }

    pub fn run(mut self) {
        let mut history = RunHistory::default();
        loop {
            let (run, error) = self.run_once();
            let decision = decide(&self.spec, &run, &mut history);
            let what = match &error {
                Some(e) => e.clone(),
                None => describe_exit(run.exit),
            };
            let delay = match decision {
                Decision::Stop => {
                    let reason = (!run.requested).then(|| what.clone());
                    self.finish(ProcessState::Stopped, run.requested, reason);
                    return;
                }
                Decision::Fail { gave_up } => {
                    let reason = if gave_up {
                        self.ctx.record(HistoryEvent::GaveUp {
                            name: self.spec.name.clone(),
                            failures: history.failures,
                            last_exit: run.exit,
                            at: Utc::now(),
                        });
                        log::warn!(process = self.spec.name.as_str();
                            "giving up after {} failed runs (last: {what})", history.failures);
                        format!("{what}; gave up after {} failed runs", history.failures)
                    } else if run.reached_running || run.exit.is_none() {
                        what
                    } else {
                        format!("{what} before it was up ({:?})", self.spec.start_duration)
                    };
                    self.finish(ProcessState::Failed, false, Some(reason));
                    return;
                }
                Decision::Restart { delay } => delay,
            };
            let attempt = lock(&self.state).status.restarts + 1;
            log::info!(process = self.spec.name.as_str();
                "{what} after {:.1} s; restart {attempt} in {delay:?}", run.uptime.as_secs_f64());
            self.ctx.record(HistoryEvent::Restarting {
                name: self.spec.name.clone(),
                attempt,
                delay_ms: delay.as_millis() as u64,
                last_exit: run.exit,
                reason: what,
                at: Utc::now(),
            });
            self.set_state(ProcessState::Backoff);
            if self.wait_out_backoff(delay) {
                self.finish(ProcessState::Stopped, true, None);
                return;
            }
            self.update(|s| s.status.restarts += 1);
        }
    }

    /// Final state; desired becomes "stopped" unless the process failed for good (an operator
    /// should see that it wanted to run).
    fn finish(&mut self, state: ProcessState, requested: bool, reason: Option<String>) {
        let mut last_exit = None;
        self.update(|s| {
            s.status.state = state;
            s.status.pid = None;
            s.desired_running &= state == ProcessState::Failed;
            last_exit = s.status.last_exit;
        });
        self.ctx.record(HistoryEvent::Finished {
            name: self.spec.name.clone(),
            state,
            last_exit,
            requested,
            reason,
            at: Utc::now(),
        });
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(());
        }
    }

    /// Waits `delay`, still answering commands. Returns true if a stop was requested (which
    /// cancels the restart at once).
    fn wait_out_backoff(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.take_commands(None).is_some() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [pollfd(self.waker.raw(), libc::POLLIN)];
            let _ = sys::poll(&mut fds, Some(left));
            self.waker.clear();
        }
    }

    /// Drains queued commands. With `pipes` (a live child) input is queued and a stop is
    /// returned for the caller to act on; without, input is dropped. Returns the stop that was
    /// requested (a kill if any request was one), recording its waiters and timeout.
    fn take_commands(&mut self, mut pipes: Option<&mut Pipes>) -> Option<StopRequest> {
        let mut stop: Option<StopRequest> = None;
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Stop {
                    timeout,
                    kill,
                    done,
                } => {
                    self.stop_waiters.push(done);
                    if let Some(t) = timeout {
                        self.spec.stop_timeout = t;
                    }
                    stop = Some(StopRequest {
                        kill: kill || stop.is_some_and(|s| s.kill),
                    });
                }
                Cmd::Input(bytes) => match pipes.as_deref_mut() {
                    Some(p) if p.stdin.is_some() => p.pending_input.extend_from_slice(&bytes),
                    _ => {
                        self.queued_input.fetch_sub(bytes.len(), Ordering::SeqCst);
                        log::warn!(process = self.spec.name.as_str();
                            "input dropped: the process is not running");
                    }
                },
            }
        }
        stop
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let spec = &self.spec;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(self.ctx.global_env.iter().map(|(k, v)| (k, v)))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so signals reach the whole tree.
            .process_group(0);
        if let Some(dir) = &spec.working_dir {
            cmd.current_dir(dir);
        }
        cmd.spawn()
    }

    /// One run of the child: spawn, supervise until it exits, carry out a stop plan if asked.
    /// Returns how it ended and, if it could not be spawned, why.
    fn run_once(&mut self) -> (RunOutcome, Option<String>) {
        let name = self.spec.name.clone();
        self.set_state(ProcessState::Starting);
        let spawn_failed = |error: String| {
            (
                RunOutcome {
                    exit: None,
                    uptime: Duration::ZERO,
                    reached_running: false,
                    requested: false,
                },
                Some(error),
            )
        };
        let mut child = match self.spawn() {
            Ok(c) => c,
            Err(e) => {
                let error = format!("cannot start {}: {e}", self.spec.program);
                log::warn!(process = name.as_str(); "{error}");
                self.ctx.record(HistoryEvent::SpawnFailed {
                    name,
                    error: error.clone(),
                    at: Utc::now(),
                });
                return spawn_failed(error);
            }
        };
        let pid = child.id();
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                log::error!(process = name.as_str(); "pidfd_open failed: {e}; killing the child");
                sys::signal_group(pid, libc::SIGKILL);
                let _ = child.wait();
                return spawn_failed(format!("cannot watch the process: {e}"));
            }
        };
        let mut pipes = Pipes {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            stdin: child.stdin.take(),
            out_lines: LineSplitter::default(),
            err_lines: LineSplitter::default(),
            pending_input: Vec::new(),
        };
        for fd in [
            pipes.stdout.as_ref().map(|p| p.as_raw_fd()),
            pipes.stderr.as_ref().map(|p| p.as_raw_fd()),
            pipes.stdin.as_ref().map(|p| p.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = sys::set_nonblocking(fd);
        }
        let started = Instant::now();
        let start_time = sys::process_start_time(pid);
        let reached_running_now = self.spec.start_duration.is_zero();
        self.update(|s| {
            s.status.pid = Some(pid);
            s.status.started_at = Some(Utc::now());
            s.pid_start_time = start_time;
            if reached_running_now {
                s.status.state = ProcessState::Running;
            }
        });
        self.ctx.record(HistoryEvent::Started {
            name: name.clone(),
            pid,
            at: Utc::now(),
        });
        if reached_running_now {
            self.ctx.record(HistoryEvent::Running {
                name: name.clone(),
                pid,
                at: Utc::now(),
            });
        }

        let mut reached_running = reached_running_now;
        let start_deadline = started + self.spec.start_duration;
        // The stop plan, once a stop began: signal at `signal_at`, SIGKILL at `kill_at`.
        let mut signal_at: Option<Instant> = None;
        let mut kill_at: Option<Instant> = None;
        let mut stopping = false;
        loop {
            if let Some(stop) = self.take_commands(Some(&mut pipes)) {
                let now = Instant::now();
                if !stopping {
                    // Stopping is set before anything is sent, so nothing restarts it.
                    stopping = true;
                    self.set_state(ProcessState::Stopping);
                    let plan = self.spec.stop_plan();
                    kill_at = Some(now + plan.kill_after);
                    match (&self.spec.stop_input, &pipes.stdin) {
                        (Some(command), Some(_)) if !stop.kill => {
                            log::info!(process = name.as_str(); "stopping: console command {command:?}, signal in {:?}, SIGKILL in {:?}",
                                plan.signal_after, plan.kill_after);
                            let line = format!("{}\n", command.trim_end());
                            self.queued_input.fetch_add(line.len(), Ordering::SeqCst);
                            pipes.pending_input.extend_from_slice(line.as_bytes());
                            signal_at = Some(now + plan.signal_after);
                        }
                        _ => signal_at = Some(now),
                    }
                }
                if stop.kill {
                    log::info!(process = name.as_str(); "killing (SIGKILL)");
                    sys::signal_group(pid, libc::SIGKILL);
                    signal_at = None;
                    kill_at = None;
                }
            }
            self.write_input(&mut pipes);
            let now = Instant::now();
            if signal_at.is_some_and(|t| now >= t) {
                sys::signal_group(pid, self.spec.stop_signal);
                signal_at = None;
            }
            if kill_at.is_some_and(|k| now >= k) {
                log::warn!(process = name.as_str(); "did not stop within {:?}; sending SIGKILL",
                    self.spec.stop_timeout);
                sys::signal_group(pid, libc::SIGKILL);
                kill_at = None;
            }
            if !reached_running && now >= start_deadline && !stopping {
                reached_running = true;
                self.set_state(ProcessState::Running);
                self.ctx.record(HistoryEvent::Running {
                    name: name.clone(),
                    pid,
                    at: Utc::now(),
                });
            }
            let timeout = [
                (!reached_running && !stopping).then_some(start_deadline),
                signal_at,
                kill_at,
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now));
            let mut fds = vec![
                pollfd(pidfd.as_raw_fd(), libc::POLLIN),
                pollfd(self.waker.raw(), libc::POLLIN),
            ];
            if let Some(p) = &pipes.stdout {
                fds.push(pollfd(p.as_raw_fd(), libc::POLLIN));
            }
            if let Some(p) = &pipes.stderr {
                fds.push(pollfd(p.as_raw_fd(), libc::POLLIN));
            }
            if let (Some(p), false) = (&pipes.stdin, pipes.pending_input.is_empty()) {
                fds.push(pollfd(p.as_raw_fd(), libc::POLLOUT));
            }
            if let Err(e) = sys::poll(&mut fds, timeout) {
                log::error!(process = name.as_str(); "poll failed: {e}");
            }
            self.read_output(&mut pipes);
            if fds[1].revents != 0 {
                self.waker.clear();
            }
            if fds[0].revents != 0 {
                break;
            }
        }
        // The leader has exited (a zombie until reaped, so its group id cannot be reused yet):
        // end whatever else is left in its group, then reap it.
        sys::signal_group(pid, libc::SIGKILL);
        let status = child.wait();
        self.drain_output(&mut pipes);
        self.queued_input
            .fetch_sub(pipes.pending_input.len(), Ordering::SeqCst);
        pipes.pending_input.clear();
        let exit = match status {
            Ok(s) => ExitInfo {
                code: s.code(),
                signal: s.signal(),
            },
            Err(_) => ExitInfo {
                code: None,
                signal: None,
            },
        };
        let uptime = started.elapsed();
        self.ctx.record(HistoryEvent::Exited {
            name: name.clone(),
            pid,
            exit,
            uptime_ms: uptime.as_millis() as u64,
            requested: stopping,
            at: Utc::now(),
        });
        self.update(|s| {
            s.status.pid = None;
            s.status.stopped_at = Some(Utc::now());
            s.status.last_exit = Some(exit);
            s.pid_start_time = None;
        });
        (
            RunOutcome {
                exit: Some(exit),
                uptime,
                reached_running,
                requested: stopping,
            },
            None,
        )
    }

    /// Reads whatever the pipes hold now; closes a pipe at EOF.
    fn read_output(&self, pipes: &mut Pipes) {
        let name = &self.spec.name;
        let sink = &self.ctx.output;
        read_stream(&mut pipes.stdout, &mut pipes.out_lines, &mut |l| {
            sink.line(name, Source::Stdout, l)
        });
        read_stream(&mut pipes.stderr, &mut pipes.err_lines, &mut |l| {
            sink.line(name, Source::Stderr, l)
        });
    }

    /// After exit: read until both pipes close (or briefly, if something escaped the group and
    /// holds them open), then flush partial lines.
    fn drain_output(&self, pipes: &mut Pipes) {
        let until = Instant::now() + DRAIN_AFTER_EXIT;
        while pipes.stdout.is_some() || pipes.stderr.is_some() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds: Vec<libc::pollfd> = [
                pipes.stdout.as_ref().map(|p| p.as_raw_fd()),
                pipes.stderr.as_ref().map(|p| p.as_raw_fd()),
            ]
            .into_iter()
            .flatten()
            .map(|fd| pollfd(fd, libc::POLLIN))
            .collect();
            let _ = sys::poll(&mut fds, Some(left));
            self.read_output(pipes);
        }
        let name = &self.spec.name;
        let sink = &self.ctx.output;
        pipes
            .out_lines
            .finish(&mut |l| sink.line(name, Source::Stdout, l));
        pipes
            .err_lines
            .finish(&mut |l| sink.line(name, Source::Stderr, l));
        pipes.stdout = None;
        pipes.stderr = None;
    }

    fn write_input(&self, pipes: &mut Pipes) {
        let Some(stdin) = pipes.stdin.as_mut() else {
            self.queued_input
                .fetch_sub(pipes.pending_input.len(), Ordering::SeqCst);
            pipes.pending_input.clear();
            return;
        };
        while !pipes.pending_input.is_empty() {
            match stdin.write(&pipes.pending_input) {
                Ok(n) => {
                    pipes.pending_input.drain(..n);
                    self.queued_input.fetch_sub(n, Ordering::SeqCst);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!(process = self.spec.name.as_str(); "stdin closed: {e}");
                    pipes.stdin = None;
                    self.queued_input
                        .fetch_sub(pipes.pending_input.len(), Ordering::SeqCst);
                    pipes.pending_input.clear();
                    return;
                }
            }
        }
    }
}

fn read_stream<R: Read>(
    stream: &mut Option<R>,
    lines: &mut LineSplitter,
    emit: &mut dyn FnMut(&str),
) {
    let Some(reader) = stream.as_mut() else {
        return;
    };
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                *stream = None;
                return;
            }
            Ok(n) => lines.feed(&buf[..n], emit),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                *stream = None;
                return;
            }
        }
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
