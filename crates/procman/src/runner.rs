//! The supervisor thread of one managed process: launches the child (child.rs: our own
//! process, or one held by a keeper), waits in `poll(2)` on it and on its command eventfd,
//! carries out the stop plan, and asks the restart policy (restart.rs) what follows each exit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{Receiver, Sender};

use super::history::HistoryEvent;
use super::output::Source;
use super::probe::{Patterns, Probes, Verdict};
use super::process::{lock, Context, Snapshot};
use super::restart::{decide, Decision, RunHistory, RunOutcome};
use super::sys::{self, pollfd, Waker};
use super::{ChildIo, ExitInfo, ProcessState, Spec};

/// What a handle asks of its supervisor thread.
pub(crate) enum Cmd {
    /// One power action at a time: a second stop joins the first; `kill` cuts in at once.
    Stop {
        timeout: Option<Duration>,
        kill: bool,
        done: Sender<()>,
    },
    Input(Vec<u8>),
    /// Let go of the process without stopping it (its keeper keeps it; the agent is leaving).
    Detach {
        done: Sender<()>,
    },
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
    /// A child found running (held by its keeper) when the manager started: the first run
    /// supervises it instead of launching one.
    pub adopted: Option<Box<dyn ChildIo>>,
    /// A detach was asked for: leave the child running and end the thread.
    pub detaching: bool,
    /// The spec's probe patterns, compiled by the starting thread.
    pub patterns: Patterns,
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

/// The reason a run killed by the OOM killer in its cgroup ended with.
pub fn out_of_memory_reason(limit: Option<u64>) -> String {
    match limit {
        Some(bytes) => format!(
            "out of memory: the server used its {} limit",
            crate::game_process::human_bytes(bytes)
        ),
        None => "out of memory: the kernel killed the server".into(),
    }
}

/// Moves `state` to `next`; a move the state table does not allow is logged as the bug it
/// is (the move still happens: the supervisor's view follows the process, not the model).
fn move_state(process: &str, state: &mut ProcessState, next: ProcessState) {
    if *state != next && !state.can_move_to(next) {
        log::error!(process = process; "unexpected process state change {:?} → {:?}", *state, next);
    }
    *state = next;
}

impl Runner {
    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut lock(&self.state));
        let _ = self.ctx.changed.try_send(());
    }

    fn set_state(&self, state: ProcessState) {
        let name = &self.spec.name;
        self.update(|s| move_state(name, &mut s.status.state, state));
    }

    pub fn run(mut self) {
        let mut history = RunHistory::default();
        loop {
            let (run, error) = self.run_once();
            if self.detaching {
                log::info!(process = self.spec.name.as_str(); "detached; its keeper keeps it running");
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
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
                    } else if run.reached_running || run.exit.is_none() || error.is_some() {
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
                if self.detaching {
                    for w in self.stop_waiters.drain(..) {
                        let _ = w.send(());
                    }
                    return;
                }
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
        let name = &self.spec.name;
        self.update(|s| {
            move_state(name, &mut s.status.state, state);
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
            if self.take_commands(None).is_some() || self.detaching {
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

    /// Drains queued commands. With a live child input is queued and a stop is returned for
    /// the caller to act on; without, input is dropped. Returns the stop that was requested (a
    /// kill if any request was one), recording its waiters and timeout.
    fn take_commands(&mut self, mut child: Option<&mut dyn ChildIo>) -> Option<StopRequest> {
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
                Cmd::Detach { done } => {
                    self.stop_waiters.push(done);
                    self.detaching = true;
                }
                Cmd::Input(bytes) => match child.as_deref_mut().map(|c| c.queue_input(&bytes)) {
                    Some(true) => {}
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

    /// One run: spawn the child (or take the one adopted from a previous agent), supervise it
    /// until it exits, carry out a stop plan if asked. Returns how it ended and, if it could
    /// not be spawned, why.
    fn run_once(&mut self) -> (RunOutcome, Option<String>) {
        let name = self.spec.name.clone();
        let adopted = self.adopted.take();
        let was_adopted = adopted.is_some();
        if !was_adopted {
            self.set_state(ProcessState::Starting);
        }
        // The OOM kills counted before this run: more after it means the kernel killed it.
        let oom_before = self.spec.cgroup.as_ref().and_then(|g| g.oom_kills());
        let launched = match adopted {
            Some(child) => Ok(child),
            None => self
                .prepare_cgroup()
                .and_then(|()| self.ctx.launcher.launch(&self.spec, &self.ctx.global_env)),
        };
        let mut child = match launched {
            Ok(c) => c,
            Err(e) => {
                let error = format!("cannot start {}: {e}", self.spec.program);
                log::warn!(process = name.as_str(); "{error}");
                self.ctx.record(HistoryEvent::SpawnFailed {
                    name,
                    error: error.clone(),
                    at: Utc::now(),
                });
                return (
                    RunOutcome {
                        exit: None,
                        uptime: Duration::ZERO,
                        reached_running: false,
                        requested: false,
                        unhealthy: false,
                    },
                    Some(error),
                );
            }
        };
        let pid = child.pid();
        let started = Instant::now();
        let probes = std::cell::RefCell::new(Probes::new(
            &self.spec,
            &self.patterns,
            started,
            was_adopted,
        ));
        let by_start_duration = !probes.borrow().decides_readiness();
        // An adopted game was running before the agent went away: it is up.
        let reached_running_now =
            was_adopted || (by_start_duration && self.spec.start_duration.is_zero());
        let start_time = child.start_time();
        self.update(|s| {
            s.status.pid = Some(pid);
            if !was_adopted || s.status.started_at.is_none() {
                s.status.started_at = Some(Utc::now());
            }
            s.pid_start_time = start_time;
            if reached_running_now {
                move_state(&name, &mut s.status.state, ProcessState::Running);
            }
        });
        if !was_adopted {
            self.ctx.record(HistoryEvent::Started {
                name: name.clone(),
                pid,
                at: Utc::now(),
            });
        }
        if reached_running_now {
            self.ctx.record(HistoryEvent::Running {
                name: name.clone(),
                pid,
                at: Utc::now(),
            });
        }

        let sink = self.ctx.output.clone();
        let mut emit = |source: Source, line: &str| {
            sink.line(&name, source, line);
            probes.borrow_mut().on_line(line);
        };
        let mut reached_running = reached_running_now;
        let start_deadline = started + self.spec.start_duration;
        // The stop plan, once a stop began: signal at `signal_at`, SIGKILL at `kill_at`.
        let mut signal_at: Option<Instant> = None;
        let mut kill_at: Option<Instant> = None;
        let mut stopping = false;
        // Why a probe had it stopped: the run is then a failure with this reason.
        let mut unhealthy: Option<String> = None;
        let mut last_seq = child.last_seq();
        loop {
            if let Some(stop) = self.take_commands(Some(child.as_mut())) {
                // An operator's stop is what ends the run, even one a probe had begun.
                unhealthy = None;
                let now = Instant::now();
                if !stopping {
                    // Stopping is set before anything is sent, so nothing restarts it.
                    stopping = true;
                    self.set_state(ProcessState::Stopping);
                    let plan = self.spec.stop_plan();
                    kill_at = Some(now + plan.kill_after);
                    match &self.spec.stop_input {
                        Some(command) if !stop.kill && child.has_stdin() => {
                            log::info!(process = name.as_str(); "stopping: console command {command:?}, signal in {:?}, SIGKILL in {:?}",
                                plan.signal_after, plan.kill_after);
                            let line = format!("{}\n", command.trim_end());
                            self.queued_input.fetch_add(line.len(), Ordering::SeqCst);
                            child.queue_input(line.as_bytes());
                            signal_at = Some(now + plan.signal_after);
                        }
                        _ => signal_at = Some(now),
                    }
                }
                if stop.kill {
                    log::info!(process = name.as_str(); "killing (SIGKILL)");
                    child.signal_group(libc::SIGKILL);
                    signal_at = None;
                    kill_at = None;
                }
            }
            let before = child.pending_input();
            let exited = child.service(&mut emit);
            self.account_input(before, child.pending_input());
            if child.last_seq() != last_seq {
                last_seq = child.last_seq();
                lock(&self.state).last_seq = last_seq;
            }
            if exited {
                break;
            }
            let now = Instant::now();
            if signal_at.is_some_and(|t| now >= t) {
                child.signal_group(self.spec.stop_signal);
                signal_at = None;
            }
            if kill_at.is_some_and(|k| now >= k) {
                log::warn!(process = name.as_str(); "did not stop within {:?}; sending SIGKILL",
                    self.spec.stop_timeout);
                child.signal_group(libc::SIGKILL);
                kill_at = None;
            }
            let verdict = if stopping {
                None
            } else if by_start_duration && !reached_running {
                (now >= start_deadline).then_some(Verdict::Ready)
            } else {
                if let Some(command) = probes.borrow_mut().due_command(now, reached_running) {
                    let line = format!("{command}\n");
                    self.queued_input.fetch_add(line.len(), Ordering::SeqCst);
                    child.queue_input(line.as_bytes());
                }
                probes.borrow_mut().check(now, reached_running, &name)
            };
            if let Some(Verdict::Fail(reason)) = verdict {
                // Not ready in time, or no longer alive: its stop signal now, SIGKILL at the
                // stop timeout (a hung server would not read a console command).
                log::warn!(process = name.as_str(); "the server {reason}; stopping it");
                stopping = true;
                self.set_state(ProcessState::Stopping);
                signal_at = Some(now);
                kill_at = Some(now + self.spec.stop_timeout);
                unhealthy = Some(reason);
            } else if verdict == Some(Verdict::Ready) && !reached_running {
                reached_running = true;
                self.set_state(ProcessState::Running);
                self.ctx.record(HistoryEvent::Running {
                    name: name.clone(),
                    pid,
                    at: Utc::now(),
                });
            }
            if self.detaching {
                // The agent is going away and leaves the game to its keeper.
                self.update(|s| s.last_seq = last_seq);
                return (
                    RunOutcome {
                        exit: None,
                        uptime: started.elapsed(),
                        reached_running,
                        requested: true,
                        unhealthy: false,
                    },
                    None,
                );
            }
            let timeout = [
                (by_start_duration && !reached_running && !stopping).then_some(start_deadline),
                (!stopping)
                    .then(|| probes.borrow().next_moment(reached_running))
                    .flatten(),
                signal_at,
                kill_at,
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now));
            let mut fds = vec![pollfd(self.waker.raw(), libc::POLLIN)];
            child.wait_fds(&mut fds);
            if let Err(e) = sys::poll(&mut fds, timeout) {
                log::error!(process = name.as_str(); "poll failed: {e}");
            }
            if fds[0].revents != 0 {
                self.waker.clear();
            }
        }
        let pending = child.pending_input();
        self.account_input(pending, 0);
        let failure = child.failure();
        let exit = child.finish(&mut emit);
        let failure = self.out_of_memory(oom_before).or(failure);
        let uptime = started.elapsed();
        self.ctx.record(HistoryEvent::Exited {
            name: name.clone(),
            pid,
            exit,
            uptime_ms: uptime.as_millis() as u64,
            requested: stopping && unhealthy.is_none(),
            at: Utc::now(),
        });
        self.update(|s| {
            s.status.pid = None;
            s.status.stopped_at = Some(Utc::now());
            s.status.last_exit = Some(exit);
            s.pid_start_time = None;
            s.last_seq = 0;
        });
        (
            RunOutcome {
                exit: Some(exit),
                uptime,
                reached_running,
                requested: stopping && unhealthy.is_none(),
                unhealthy: unhealthy.is_some(),
            },
            unhealthy.or(failure),
        )
    }

    /// Creates the run's cgroup and writes its limits; what this host cannot enforce is
    /// said in the console (the game still starts).
    fn prepare_cgroup(&self) -> std::io::Result<()> {
        let Some(group) = &self.spec.cgroup else {
            return Ok(());
        };
        group.create()?;
        for warning in self.spec.limits.apply(group)? {
            log::warn!(process = self.spec.name.as_str(); "{warning}");
            self.ctx.output.line(
                &self.spec.name,
                Source::Host,
                &format!("[manman] {warning}"),
            );
        }
        Ok(())
    }

    /// Why the run ended when the kernel's OOM killer struck in its cgroup during it.
    fn out_of_memory(&self, before: Option<u64>) -> Option<String> {
        let after = self.spec.cgroup.as_ref()?.oom_kills()?;
        (after > before.unwrap_or(0)).then(|| out_of_memory_reason(self.spec.limits.memory_max))
    }

    /// Input handed over since the last look no longer counts against the pending cap.
    fn account_input(&self, before: usize, after: usize) {
        if before > after {
            self.queued_input
                .fetch_sub(before - after, Ordering::SeqCst);
        }
    }
}
