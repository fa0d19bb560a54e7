//! The restart policy as a pure function: how a run ended + what came before + the spec →
//! restart after a delay, stop, or give up. Semantics follow supervisord and systemd:
//! - a run that ends before `start_duration` is a failed *start*, whatever its exit code;
//! - after reaching running, a non-zero exit or a signal is a *crash*; exit 0 is clean;
//! - a stop that was asked for is never restarted;
//! - a run lasting `reset_after` forgets earlier failures (a server crashing once a day is
//!   restarted every day);
//! - every restart waits at least [`MIN_RESTART_DELAY`], growing with each quick exit, so
//!   `/bin/true` under `always` cannot spin.

use std::time::Duration;

use super::{ExitInfo, RestartPolicy, Spec};
use crate::game_process::MIN_RESTART_DELAY;

/// How one run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunOutcome {
    /// `None`: it could not be spawned at all.
    pub exit: Option<ExitInfo>,
    pub uptime: Duration,
    pub reached_running: bool,
    /// The exit followed a stop request.
    pub requested: bool,
    /// A probe stopped it (not ready in time, or not alive): a failure whatever the exit.
    pub unhealthy: bool,
}

impl RunOutcome {
    pub fn failed(&self) -> bool {
        !self.reached_running || self.unhealthy || !self.exit.is_some_and(|e| e.success())
    }
}

/// What the supervisor remembers between runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunHistory {
    /// Consecutive failed runs (reset by a stable run).
    pub failures: u32,
    /// Consecutive runs shorter than `reset_after`, clean or not (paces restarts).
    pub quick_exits: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again after `delay`.
    Restart { delay: Duration },
    /// Done, cleanly (asked to stop, or a clean exit the policy does not restart).
    Stop,
    /// Done, failed: the policy does not restart failures, or the retry limit was reached.
    Fail { gave_up: bool },
}

/// Decides what follows `run`, updating `history`.
pub fn decide(spec: &Spec, run: &RunOutcome, history: &mut RunHistory) -> Decision {
    if run.requested {
        return Decision::Stop;
    }
    if run.uptime >= spec.reset_after {
        *history = RunHistory::default();
    }
    let failed = run.failed();
    if failed {
        history.failures += 1;
    }
    history.quick_exits += 1;
    let restart = match spec.restart {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Always => true,
    };
    if !restart {
        return if failed {
            Decision::Fail { gave_up: false }
        } else {
            Decision::Stop
        };
    }
    if history.failures > spec.retry_limit {
        return Decision::Fail { gave_up: true };
    }
    let delay = spec
        .backoff()
        .delay(history.quick_exits - 1)
        .max(MIN_RESTART_DELAY);
    Decision::Restart { delay }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: RestartPolicy) -> Spec {
        let mut s = Spec::new("game", "/bin/game", &[]);
        s.restart = policy;
        s.retry_limit = 3;
        s.backoff_initial = Duration::from_secs(1);
        s.backoff_max = Duration::from_secs(8);
        s.start_duration = Duration::from_secs(1);
        s.reset_after = Duration::from_secs(600);
        s
    }

    fn run(code: i32, uptime_s: u64) -> RunOutcome {
        RunOutcome {
            exit: Some(ExitInfo {
                code: Some(code),
                signal: None,
            }),
            uptime: Duration::from_secs(uptime_s),
            reached_running: uptime_s >= 1,
            requested: false,
            unhealthy: false,
        }
    }

    #[test]
    fn a_run_a_probe_stopped_is_a_failure_even_if_it_exited_cleanly() {
        let mut h = RunHistory::default();
        let unhealthy = RunOutcome {
            unhealthy: true,
            ..run(0, 60)
        };
        assert!(matches!(
            decide(&spec(RestartPolicy::OnFailure), &unhealthy, &mut h),
            Decision::Restart { .. }
        ));
        assert_eq!(h.failures, 1);
        assert_eq!(
            decide(&spec(RestartPolicy::Never), &unhealthy, &mut h),
            Decision::Fail { gave_up: false }
        );
    }

    #[test]
    fn a_requested_stop_is_never_restarted() {
        let mut h = RunHistory::default();
        let stopped = RunOutcome {
            requested: true,
            ..run(143, 5)
        };
        assert_eq!(
            decide(&spec(RestartPolicy::Always), &stopped, &mut h),
            Decision::Stop
        );
        assert_eq!(h, RunHistory::default());
    }

    #[test]
    fn policies() {
        let mut h = RunHistory::default();
        assert_eq!(
            decide(&spec(RestartPolicy::Never), &run(0, 5), &mut h),
            Decision::Stop
        );
        let mut h = RunHistory::default();
        assert_eq!(
            decide(&spec(RestartPolicy::Never), &run(3, 5), &mut h),
            Decision::Fail { gave_up: false }
        );
        let mut h = RunHistory::default();
        assert_eq!(
            decide(&spec(RestartPolicy::OnFailure), &run(0, 5), &mut h),
            Decision::Stop
        );
        let mut h = RunHistory::default();
        assert!(matches!(
            decide(&spec(RestartPolicy::OnFailure), &run(3, 5), &mut h),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn an_early_clean_exit_is_a_failed_start() {
        let mut h = RunHistory::default();
        let early = run(0, 0);
        assert!(early.failed());
        assert!(matches!(
            decide(&spec(RestartPolicy::OnFailure), &early, &mut h),
            Decision::Restart { .. }
        ));
        assert_eq!(h.failures, 1);
    }

    #[test]
    fn failures_give_up_after_the_retry_limit_with_growing_delays() {
        let s = spec(RestartPolicy::OnFailure);
        let mut h = RunHistory::default();
        let delays: Vec<Decision> = (0..4).map(|_| decide(&s, &run(1, 5), &mut h)).collect();
        assert_eq!(
            delays,
            vec![
                Decision::Restart {
                    delay: Duration::from_secs(1)
                },
                Decision::Restart {
                    delay: Duration::from_secs(2)
                },
                Decision::Restart {
                    delay: Duration::from_secs(4)
                },
                Decision::Fail { gave_up: true },
            ]
        );
    }

    #[test]
    fn a_stable_run_resets_the_failure_count() {
        let s = spec(RestartPolicy::OnFailure);
        let mut h = RunHistory::default();
        for _ in 0..3 {
            assert!(matches!(
                decide(&s, &run(1, 5), &mut h),
                Decision::Restart { .. }
            ));
        }
        // A day later it crashes again: the earlier crashes are forgotten.
        assert_eq!(
            decide(&s, &run(1, 86_400), &mut h),
            Decision::Restart {
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(
            h,
            RunHistory {
                failures: 1,
                quick_exits: 1
            }
        );
    }

    #[test]
    fn clean_exits_under_always_are_paced_not_spun() {
        let mut s = spec(RestartPolicy::Always);
        s.start_duration = Duration::ZERO;
        s.backoff_initial = Duration::from_millis(100);
        let mut h = RunHistory::default();
        let instant_exit = RunOutcome {
            reached_running: true,
            uptime: Duration::ZERO,
            ..run(0, 0)
        };
        let d: Vec<Decision> = (0..3).map(|_| decide(&s, &instant_exit, &mut h)).collect();
        assert_eq!(
            d,
            vec![
                Decision::Restart {
                    delay: Duration::from_millis(100)
                },
                Decision::Restart {
                    delay: Duration::from_millis(200)
                },
                Decision::Restart {
                    delay: Duration::from_millis(400)
                },
            ]
        );
        assert_eq!(h.failures, 0, "clean exits are not failures");
    }

    #[test]
    fn a_spawn_failure_is_a_failure() {
        let mut h = RunHistory::default();
        let none = RunOutcome {
            exit: None,
            uptime: Duration::ZERO,
            reached_running: false,
            requested: false,
            unhealthy: false,
        };
        assert_eq!(
            decide(&spec(RestartPolicy::Never), &none, &mut h),
            Decision::Fail { gave_up: false }
        );
    }
}
