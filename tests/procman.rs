//! The process manager with real processes: restarts and backoff, retry limits, SIGKILL after
//! the stop timeout, whole-tree stops, stdin, output sources, 200 instances, patterns, a
//! concurrency stress test, and a manager restarted (after SIGKILL) over its stored state.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use manman::procman::{
    ChannelHistory, ChannelOutput, FileStore, HistoryEvent, Manager, OutputLine, ProcError,
    ProcessState, RestartPolicy, Source, Spec,
};
use manman::testkit::{unique_name, wait_for};
use manman::wire::probes::{LivenessProbe, ReadinessProbe};

const T: Duration = Duration::from_secs(20);

struct Fixture {
    manager: Manager,
    output: Receiver<OutputLine>,
    history: Receiver<HistoryEvent>,
}

fn manager() -> Fixture {
    let (out_tx, output) = crossbeam_channel::unbounded();
    let (hist_tx, history) = crossbeam_channel::unbounded();
    let (manager, _) = Manager::builder()
        .output(ChannelOutput(out_tx))
        .history(ChannelHistory(hist_tx))
        .reconcile_every(Duration::from_millis(50))
        .build()
        .unwrap();
    Fixture {
        manager,
        output,
        history,
    }
}

fn sh(name: &str, script: &str) -> Spec {
    let mut spec = Spec::new(name, "/bin/sh", &["-c", script]);
    spec.start_duration = Duration::ZERO;
    spec.stop_timeout = Duration::from_secs(2);
    spec
}

fn next_line(f: &Fixture, process: &str) -> OutputLine {
    loop {
        let line = f
            .output
            .recv_timeout(T)
            .unwrap_or_else(|_| panic!("no output from {process}"));
        if line.process == process {
            return line;
        }
    }
}

fn next_event(f: &Fixture, what: impl Fn(&HistoryEvent) -> bool) -> HistoryEvent {
    loop {
        let e = f.history.recv_timeout(T).expect("history event");
        if what(&e) {
            return e;
        }
    }
}

/// Whether a PID is gone (or only a zombie nobody has reaped yet).
fn pid_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
    }
}

#[test]
fn crash_restarts_with_growing_backoff_then_gives_up() {
    let f = manager();
    let mut spec = sh("crasher", "exit 3");
    spec.restart = RestartPolicy::OnFailure;
    // Delays far apart (100, 300, 900, 2700 ms) so that spawn time on a loaded machine, which
    // adds to every measured gap, cannot hide the growth.
    spec.backoff_initial = Duration::from_millis(100);
    spec.backoff_multiplier = 3.0;
    spec.backoff_max = Duration::from_secs(5);
    spec.retry_limit = 4;
    f.manager.start(spec).unwrap();

    let mut exits = Vec::new();
    let mut starts = Vec::new();
    let gave_up = loop {
        match f.history.recv_timeout(T).expect("history") {
            HistoryEvent::Exited { at, exit, .. } => {
                assert_eq!(exit.code, Some(3));
                exits.push(at);
            }
            HistoryEvent::Started { at, .. } => starts.push(at),
            e @ HistoryEvent::GaveUp { .. } => break e,
            _ => {}
        }
    };
    assert_eq!(starts.len(), 5, "one run plus retry_limit restarts");
    let gaps: Vec<i64> = (1..starts.len())
        .map(|i| (starts[i] - exits[i - 1]).num_milliseconds())
        .collect();
    for (i, gap) in gaps.iter().enumerate() {
        let expected = 100 * 3i64.pow(i as u32);
        assert!(
            *gap >= expected,
            "gap {i} was {gap} ms, backoff is {expected} ms"
        );
    }
    assert!(gaps[3] > gaps[0] * 4, "backoff grows: {gaps:?}");
    match gave_up {
        HistoryEvent::GaveUp {
            failures,
            last_exit,
            ..
        } => {
            assert_eq!(failures, 5);
            assert_eq!(last_exit.unwrap().code, Some(3));
        }
        _ => unreachable!(),
    }
    match f.history.recv_timeout(T).expect("finished event") {
        HistoryEvent::Finished {
            state, requested, ..
        } => assert_eq!((state, requested), (ProcessState::Failed, false)),
        other => panic!("expected Finished, got {other:?}"),
    }
    let status = f.manager.status("crasher").unwrap();
    assert_eq!(status.state, ProcessState::Failed);
    assert_eq!(status.restarts, 4);
    // The reconciler leaves a failed process alone.
    assert!(
        f.history.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing restarts a failed process by itself"
    );
    assert_eq!(
        f.manager.status("crasher").unwrap().state,
        ProcessState::Failed
    );
}

#[test]
fn an_exit_before_the_start_duration_is_a_failed_start() {
    let f = manager();
    let mut spec = sh("quick", "exit 0");
    spec.start_duration = Duration::from_secs(5);
    f.manager.start(spec).unwrap();
    next_event(&f, |e| matches!(e, HistoryEvent::Exited { .. }));
    wait_for("failed state", T, || {
        (f.manager.status("quick").unwrap().state == ProcessState::Failed).then_some(())
    });
}

#[test]
fn a_process_ignoring_sigterm_is_killed_after_the_timeout() {
    let f = manager();
    let spec = sh(
        "stubborn",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    );
    f.manager.start(spec).unwrap();
    assert_eq!(next_line(&f, "stubborn").line, "ready");
    let began = Instant::now();
    let status = f
        .manager
        .stop("stubborn", Duration::from_millis(300))
        .unwrap();
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert_eq!(status.state, ProcessState::Stopped);
    assert_eq!(status.last_exit.unwrap().signal, Some(libc::SIGKILL));
}

#[test]
fn stop_reaches_grandchildren() {
    let f = manager();
    f.manager
        .start(sh("tree", "sleep 1000 & echo $!; wait"))
        .unwrap();
    let grandchild: u32 = next_line(&f, "tree").line.parse().unwrap();
    assert!(!pid_is_dead(grandchild));
    let status = f.manager.stop("tree", Duration::from_secs(2)).unwrap();
    assert_eq!(status.last_exit.unwrap().signal, Some(libc::SIGTERM));
    wait_for("grandchild gone", T, || {
        pid_is_dead(grandchild).then_some(())
    });
}

#[test]
fn a_leader_exiting_on_its_own_takes_its_group_with_it() {
    let f = manager();
    f.manager
        .start(sh("leaver", "sleep 1000 & echo $!"))
        .unwrap();
    let grandchild: u32 = next_line(&f, "leaver").line.parse().unwrap();
    next_event(&f, |e| matches!(e, HistoryEvent::Exited { .. }));
    wait_for("grandchild gone", T, || {
        pid_is_dead(grandchild).then_some(())
    });
    wait_for("stopped", T, || {
        (f.manager.status("leaver").unwrap().state == ProcessState::Stopped).then_some(())
    });
}

#[test]
fn stdin_round_trip() {
    let f = manager();
    let mut spec = Spec::new("echo", "/bin/cat", &[]);
    spec.start_duration = Duration::ZERO;
    f.manager.start(spec).unwrap();
    f.manager.send_input("echo", b"hello\n").unwrap();
    f.manager.send_input("echo", b"say ").unwrap();
    f.manager.send_input("echo", b"stop\n").unwrap();
    let first = next_line(&f, "echo");
    assert_eq!(
        (first.source, first.line.as_str()),
        (Source::Stdout, "hello")
    );
    assert_eq!(next_line(&f, "echo").line, "say stop");
    f.manager.stop("echo", Duration::from_secs(2)).unwrap();
    assert!(matches!(
        f.manager.send_input("echo", b"late\n"),
        Err(ProcError::NotRunning(name)) if name == "echo"
    ));
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    let f = manager();
    f.manager
        .start(sh("both", "echo to-out; echo to-err >&2; echo more-out"))
        .unwrap();
    let mut lines: Vec<(Source, String)> = (0..3)
        .map(|_| {
            let l = next_line(&f, "both");
            (l.source, l.line)
        })
        .collect();
    lines.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        lines,
        vec![
            (Source::Stdout, "more-out".to_string()),
            (Source::Stderr, "to-err".to_string()),
            (Source::Stdout, "to-out".to_string()),
        ]
    );
}

#[test]
fn start_n_runs_200_instances() {
    let f = manager();
    let mut spec = Spec::new("worker", "/bin/sleep", &["1000"]);
    spec.instances = 200;
    spec.start_duration = Duration::ZERO;
    let names = f.manager.start_n(spec).unwrap();
    assert_eq!(names.len(), 200);
    assert_eq!(names[199], "worker-200");
    wait_for("200 running", T, || {
        (f.manager.count("worker") == 200).then_some(())
    });
    let pids: Vec<u32> = f
        .manager
        .status_all("worker")
        .iter()
        .map(|s| s.pid.unwrap())
        .collect();
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 200);
    let stopped = f
        .manager
        .stop_all("worker", Duration::from_secs(5))
        .unwrap();
    assert_eq!(stopped.len(), 200);
    assert!(stopped.iter().all(|s| s.state == ProcessState::Stopped));
    assert!(pids.iter().all(|p| pid_is_dead(*p)));
}

#[test]
fn pattern_operations() {
    let f = manager();
    for name in ["web-1", "web-2", "web-3", "db-1", "db-2", "cache"] {
        let mut spec = Spec::new(name, "/bin/sleep", &["1000"]);
        spec.start_duration = Duration::ZERO;
        f.manager.start(spec).unwrap();
    }
    wait_for("all running", T, || {
        (f.manager.count("*") == 6).then_some(())
    });
    assert_eq!(f.manager.count("web"), 3);
    assert_eq!(f.manager.count("web*"), 3);
    assert_eq!(f.manager.count("*-1"), 2);
    assert_eq!(f.manager.count("*b-*"), 5);
    assert_eq!(f.manager.status_all("cache").len(), 1);
    let stopped = f.manager.stop_all("db*", Duration::from_secs(2)).unwrap();
    assert_eq!(stopped.len(), 2);
    assert_eq!(f.manager.count("*"), 4);
    assert!(matches!(
        f.manager.start(Spec::new("web-1", "/bin/sleep", &["1"])),
        Err(ProcError::AlreadyRunning(name)) if name == "web-1"
    ));
    assert!(matches!(
        f.manager.stop("nope", Duration::from_secs(1)),
        Err(ProcError::NotFound(_))
    ));
    assert!(matches!(
        f.manager.start(Spec::new("bad*name", "/bin/true", &[])),
        Err(ProcError::InvalidSpec(_))
    ));
}

#[test]
fn global_env_and_spec_env_reach_the_process() {
    let f = manager();
    f.manager.set_global_env(vec![
        ("MM_A".into(), "global".into()),
        ("MM_B".into(), "global".into()),
    ]);
    let mut spec = sh("env", "echo $MM_A-$MM_B");
    spec.env = vec![("MM_B".into(), "own".into())];
    f.manager.start(spec).unwrap();
    assert_eq!(next_line(&f, "env").line, "global-own");
}

#[test]
fn stress_random_starts_and_stops_leave_nothing_behind() {
    let f = manager();
    let marker = format!("{}", 1000.0 + (std::process::id() % 1000) as f64 / 1000.0);
    let started_pids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let manager = &f.manager;
            let marker = marker.as_str();
            scope.spawn(move || {
                let mut seed = t * 7919 + 1;
                for _ in 0..40 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let name = format!("s-{}", (seed >> 33) % 12);
                    match (seed >> 20) % 4 {
                        0 | 1 => {
                            let mut spec = Spec::new(&name, "/bin/sleep", &[marker]);
                            spec.start_duration = Duration::ZERO;
                            let _ = manager.start(spec);
                        }
                        2 => {
                            let _ = manager.stop(&name, Duration::from_secs(2));
                        }
                        _ => {
                            let _ = manager.status_all("s-*");
                        }
                    }
                }
            });
        }
    });
    while let Ok(e) = f.history.try_recv() {
        if let HistoryEvent::Started { pid, .. } = e {
            started_pids.lock().unwrap().push(pid);
        }
    }
    f.manager.shutdown().unwrap();
    while let Ok(e) = f.history.try_recv() {
        if let HistoryEvent::Started { pid, .. } = e {
            started_pids.lock().unwrap().push(pid);
        }
    }
    let pids = started_pids.into_inner().unwrap();
    assert!(!pids.is_empty());
    // No process, and no zombie: every PID we started is gone from /proc entirely.
    for pid in &pids {
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_err()
                || !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .contains(&marker),
            "process {pid} survived"
        );
    }
    // No supervisor thread left. Polled: a joined thread can still be listed in /proc for a
    // moment (the kernel wakes `pthread_join` before it has finished removing the task).
    let supervisors = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.starts_with("proc:s-"))
            .count()
    };
    wait_for("no supervisor thread left", Duration::from_secs(5), || {
        (supervisors() == 0).then_some(())
    });
    assert!(f.manager.status_all("*").iter().all(|s| !s.state.is_live()));
}

/// Runs in a child copy of this test binary (see the next test): a manager that starts two
/// processes, prints their PIDs and waits to be killed. Ignored in a normal run: the restart
/// test runs it with `--ignored`.
#[test]
#[ignore = "a helper process of a_restarted_manager_finds_and_handles_the_processes_it_had"]
fn child_manager_for_restart_test() {
    let store = std::env::var("MANMAN_PROCMAN_CHILD_STORE")
        .expect("run by a_restarted_manager_finds_and_handles_the_processes_it_had");
    let (manager, _) = Manager::builder()
        .store(FileStore::new(&store))
        .reconcile_every(Duration::from_millis(50))
        .build()
        .unwrap();
    for name in ["game-a", "game-b"] {
        let mut spec = Spec::new(name, "/bin/sh", &["-c", "sleep 1000 & wait"]);
        spec.start_duration = Duration::ZERO;
        spec.stop_timeout = Duration::from_secs(2);
        manager.start(spec).unwrap();
    }
    manager.stop("game-b", Duration::from_secs(2)).unwrap();
    let mut spec = Spec::new("game-b", "/bin/sh", &["-c", "sleep 1000 & wait"]);
    spec.start_duration = Duration::ZERO;
    manager.start(spec).unwrap();
    wait_for("both running", T, || {
        (manager.count("game-*") == 2).then_some(())
    });
    // Wait for the store to hold both PIDs, then announce them.
    let pids: Vec<u32> = manager
        .status_all("game-*")
        .iter()
        .map(|s| s.pid.unwrap())
        .collect();
    // The store is written by the reconciler (debounced): announce once it holds both.
    wait_for("both PIDs in the store", T, || {
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&store).ok()?).ok()?;
        let stored = stored.to_string();
        pids.iter()
            .all(|p| stored.contains(&format!("\"pid\":{p},")))
            .then_some(())
    });
    println!("\nPIDS {} {}", pids[0], pids[1]);
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_restarted_manager_finds_and_handles_the_processes_it_had() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(unique_name("procman-store"));
    let store = dir.join("processes.json");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_manager_for_restart_test",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MANMAN_PROCMAN_CHILD_STORE", &store)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map(|l| l.unwrap())
        .find(|l| l.contains("PIDS "))
        .expect("child manager reports its PIDs");
    let old: Vec<u32> = line[line.find("PIDS ").unwrap() + 5..]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    child.kill().unwrap(); // SIGKILL: the manager dies, its processes live on
    child.wait().unwrap();
    assert!(
        old.iter().all(|p| !pid_is_dead(*p)),
        "orphans survive the manager"
    );

    let (hist_tx, history) = crossbeam_channel::unbounded();
    let (manager, recovered) = Manager::builder()
        .store(FileStore::new(&store))
        .history(ChannelHistory(hist_tx))
        .reconcile_every(Duration::from_millis(50))
        .build()
        .unwrap();
    let mut found: Vec<u32> = recovered.iter().map(|r| r.pid).collect();
    found.sort();
    let mut expected = old.clone();
    expected.sort();
    assert_eq!(found, expected, "both old processes are found");
    assert!(recovered.iter().all(|r| r.restarting));
    assert!(
        old.iter().all(|p| pid_is_dead(*p)),
        "old processes were ended"
    );
    let reaped = history
        .try_iter()
        .filter(|e| matches!(e, HistoryEvent::Reaped { .. }))
        .count();
    assert_eq!(reaped, 2);
    // The reconciler brings back what was meant to run, as fresh processes.
    wait_for("both restarted", T, || {
        (manager.count("game-*") == 2).then_some(())
    });
    let new: Vec<u32> = manager
        .status_all("game-*")
        .iter()
        .map(|s| s.pid.unwrap())
        .collect();
    assert!(new.iter().all(|p| !old.contains(p)));
    manager.shutdown().unwrap();
    assert!(new.iter().all(|p| pid_is_dead(*p)));
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- restart and stop semantics (sessions stay true under faults) -----------------------------

#[test]
fn a_tight_exit_loop_under_always_is_paced() {
    let f = manager();
    let mut spec = Spec::new("spinner", "/bin/true", &[]);
    spec.restart = RestartPolicy::Always;
    spec.start_duration = Duration::ZERO;
    spec.backoff_initial = Duration::from_millis(100);
    spec.backoff_max = Duration::from_secs(5);
    f.manager.start(spec).unwrap();
    let mut exits = Vec::new();
    let mut starts = Vec::new();
    while starts.len() < 4 {
        match f.history.recv_timeout(T).expect("history") {
            HistoryEvent::Exited { at, .. } => exits.push(at),
            HistoryEvent::Started { at, .. } => starts.push(at),
            _ => {}
        }
    }
    for i in 1..4 {
        let gap = (starts[i] - exits[i - 1]).num_milliseconds();
        let backoff = 100 * 2i64.pow(i as u32 - 1);
        assert!(
            gap >= backoff,
            "restart {i} came {gap} ms after the exit, not after {backoff} ms"
        );
    }
    let stopped = f.manager.stop("spinner", Duration::from_secs(1)).unwrap();
    assert_eq!(stopped.state, ProcessState::Stopped);
}

#[test]
fn the_failure_count_resets_after_a_stable_run() {
    let f = manager();
    let mut spec = sh("daily-crasher", "sleep 0.3; exit 1");
    spec.restart = RestartPolicy::OnFailure;
    spec.start_duration = Duration::from_millis(50);
    spec.backoff_initial = Duration::from_millis(100);
    spec.retry_limit = 1;
    // Every run outlives reset_after: each crash is the first in a while.
    spec.reset_after = Duration::from_millis(200);
    f.manager.start(spec.clone()).unwrap();
    let mut restarts = 0;
    while restarts < 4 {
        match f.history.recv_timeout(T).expect("history") {
            HistoryEvent::Restarting { .. } => restarts += 1,
            e @ (HistoryEvent::GaveUp { .. } | HistoryEvent::Finished { .. }) => {
                panic!("gave up although every run was stable: {e:?}")
            }
            _ => {}
        }
    }
    f.manager
        .stop("daily-crasher", Duration::from_secs(2))
        .unwrap();

    // The same crashes without the reset exhaust retry_limit 1 after two runs.
    spec.name = "quick-crasher".into();
    spec.reset_after = Duration::from_secs(600);
    f.manager.start(spec).unwrap();
    next_event(
        &f,
        |e| matches!(e, HistoryEvent::GaveUp { name, .. } if name == "quick-crasher"),
    );
}

#[test]
fn a_stop_under_always_with_a_console_command_stops_once_and_never_restarts() {
    let f = manager();
    let mut spec = sh(
        "console-game",
        "echo ready; while read l; do [ \"$l\" = stop ] && { echo bye; exit 0; }; done",
    );
    spec.restart = RestartPolicy::Always;
    spec.stop_input = Some("stop".into());
    spec.stop_timeout = Duration::from_secs(10);
    f.manager.start(spec).unwrap();
    assert_eq!(next_line(&f, "console-game").line, "ready");
    let status = f.manager.stop("console-game", None).unwrap();
    assert_eq!(status.state, ProcessState::Stopped);
    assert_eq!(
        status.last_exit.unwrap().code,
        Some(0),
        "it exited by its console command, before any signal"
    );
    assert_eq!(status.restarts, 0);
    let events: Vec<HistoryEvent> = f.history.try_iter().collect();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, HistoryEvent::Started { .. }))
            .count(),
        1
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, HistoryEvent::Restarting { .. })));
}

/// A stop that arrives as the process ends on its own races with its supervisor's end: the
/// supervisor may return without reading the request. The caller must hear back at once
/// (the channel closes), not wait out the stop timeout's margin (5 s) into `StopTimeout`.
#[test]
fn a_stop_racing_with_the_process_own_exit_is_answered() {
    let f = manager();
    for i in 0..100 {
        let name = format!("racer-{i}");
        let mut spec = sh(&name, "exit 0");
        spec.stop_timeout = Duration::from_millis(100);
        f.manager.start(spec).unwrap();
        // Some stops find it running, some ending, some ended: every one answers.
        match f.manager.stop(&name, None) {
            Ok(status) => assert!(!status.state.is_live(), "{name}: {:?}", status.state),
            Err(ProcError::NotRunning(_)) => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn a_stop_during_the_restart_wait_cancels_the_restart() {
    let f = manager();
    let mut spec = sh("crash-then-wait", "exit 9");
    spec.restart = RestartPolicy::OnFailure;
    spec.backoff_initial = Duration::from_secs(5);
    f.manager.start(spec).unwrap();
    next_event(&f, |e| matches!(e, HistoryEvent::Restarting { .. }));
    let asked = Instant::now();
    let status = f.manager.stop("crash-then-wait", None).unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the stop waited out the backoff"
    );
    assert_eq!(status.state, ProcessState::Stopped);
    match next_event(&f, |e| matches!(e, HistoryEvent::Finished { .. })) {
        HistoryEvent::Finished { requested, .. } => assert!(requested),
        _ => unreachable!(),
    }
    assert!(
        f.history.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing started after the stop"
    );
}

#[test]
fn the_stop_timeline_kills_at_the_stop_timeout_however_it_is_split() {
    let f = manager();
    // Ignores its console and TERM (it says when TERM came), so only SIGKILL ends it.
    let mut spec = sh(
        "stubborn-game",
        "trap 'echo got-term' TERM; echo ready; while :; do read l; sleep 0.05; done",
    );
    spec.stop_input = Some("stop".into());
    spec.stop_timeout = Duration::from_millis(1200);
    f.manager.start(spec).unwrap();
    assert_eq!(next_line(&f, "stubborn-game").line, "ready");
    let began = Instant::now();
    let manager = &f.manager;
    let status = std::thread::scope(|s| {
        let stop = s.spawn(|| manager.stop("stubborn-game", None).unwrap());
        assert_eq!(next_line(&f, "stubborn-game").line, "got-term");
        let term_at = began.elapsed();
        assert!(
            term_at >= Duration::from_millis(850) && term_at < Duration::from_millis(1150),
            "the signal comes at 3/4 of the stop timeout, came at {term_at:?}"
        );
        stop.join().unwrap()
    });
    let took = began.elapsed();
    assert_eq!(status.last_exit.unwrap().signal, Some(libc::SIGKILL));
    assert!(
        took >= Duration::from_millis(1200) && took < Duration::from_millis(1600),
        "SIGKILL comes at the stop timeout, not twice it: {took:?}"
    );
}

#[test]
fn input_for_a_process_that_never_reads_is_bounded() {
    let f = manager();
    f.manager.start(sh("deaf", "exec sleep 1000")).unwrap();
    let chunk = vec![b'x'; 1024];
    let refused = (0..1000).find_map(|i| match f.manager.send_input("deaf", &chunk) {
        Ok(()) => None,
        Err(e) => Some((i, e)),
    });
    let (sent, err) = refused.expect("input must be refused once the queue is full");
    assert!(matches!(err, ProcError::InputFull { .. }), "{err}");
    assert!(
        sent * 1024 <= manman::procman::MAX_PENDING_INPUT + 256 * 1024,
        "{sent} KiB accepted"
    );
    f.manager.stop("deaf", Duration::from_secs(2)).unwrap();
}

/// The stand-in game server of the demo and the e2e tests, with `env` set.
fn test_game(name: &str, env: &[(&str, String)]) -> Spec {
    let mut spec = Spec::new(
        name,
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-game"),
        &[],
    );
    spec.start_duration = Duration::ZERO;
    spec.stop_timeout = Duration::from_secs(5);
    spec.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    spec
}

fn ready_when_line(pattern: &str, timeout_seconds: u32) -> Option<ReadinessProbe> {
    Some(ReadinessProbe {
        console_pattern: Some(pattern.into()),
        timeout_seconds,
        ..ReadinessProbe::default()
    })
}

#[test]
fn readiness_by_console_line_keeps_it_starting_until_the_line() {
    let f = manager();
    let mut spec = test_game("ready-line", &[("READY_AFTER", "1".into())]);
    spec.readiness = ready_when_line("^Done! Ready", 30);
    f.manager.start(spec).unwrap();
    assert!(next_line(&f, "ready-line")
        .line
        .starts_with("test-game starting"));
    assert_eq!(
        f.manager.status("ready-line").unwrap().state,
        ProcessState::Starting,
        "up only once the line is printed (a second later)"
    );
    next_event(&f, |e| matches!(e, HistoryEvent::Running { .. }));
    let printed: Vec<String> = f.output.try_iter().map(|l| l.line).collect();
    assert!(
        printed.iter().any(|l| l.starts_with("Done! Ready")),
        "running came after the line: {printed:?}"
    );
    f.manager.stop("ready-line", None).unwrap();
}

#[test]
fn readiness_by_port_waits_for_the_port_to_accept() {
    let f = manager();
    let port = manman::testkit::free_port();
    let mut spec = test_game(
        "ready-port",
        &[("LISTEN_AFTER", "1".into()), ("PORT", port.to_string())],
    );
    spec.readiness = Some(ReadinessProbe {
        tcp_port: Some(port),
        ..ReadinessProbe::default()
    });
    f.manager.start(spec).unwrap();
    next_event(&f, |e| matches!(e, HistoryEvent::Started { .. }));
    assert_eq!(
        f.manager.status("ready-port").unwrap().state,
        ProcessState::Starting
    );
    next_event(&f, |e| matches!(e, HistoryEvent::Running { .. }));
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the port accepts once running");
    f.manager.stop("ready-port", None).unwrap();
}

#[test]
fn a_server_not_ready_in_time_fails_with_the_reason_and_is_stopped() {
    let f = manager();
    let mut spec = test_game("never-ready", &[("READY_AFTER", "60".into())]);
    spec.readiness = ready_when_line("^Done!", 1);
    f.manager.start(spec).unwrap();
    let pid = match next_event(&f, |e| matches!(e, HistoryEvent::Started { .. })) {
        HistoryEvent::Started { pid, .. } => pid,
        _ => unreachable!(),
    };
    match next_event(&f, |e| matches!(e, HistoryEvent::Finished { .. })) {
        HistoryEvent::Finished {
            state,
            reason,
            requested,
            ..
        } => {
            assert_eq!(state, ProcessState::Failed);
            assert!(!requested);
            assert_eq!(
                reason.as_deref(),
                Some("was not ready within 1 s (waiting for a console line matching \"^Done!\")")
            );
        }
        _ => unreachable!(),
    }
    assert!(pid_is_dead(pid), "the unready server was stopped");
}

#[test]
fn a_failed_liveness_probe_restarts_the_server_once_with_the_reason() {
    let f = manager();
    let mut spec = test_game("hangs", &[]);
    spec.restart = RestartPolicy::OnFailure;
    spec.backoff_initial = Duration::from_millis(100);
    spec.liveness = Some(LivenessProbe {
        command: Some("list".into()),
        reply_pattern: Some("players online$".into()),
        interval_seconds: 1,
        timeout_seconds: 1,
        failure_threshold: 2,
        ..LivenessProbe::default()
    });
    f.manager.start(spec).unwrap();
    let answered = |f: &Fixture| loop {
        let line = next_line(f, "hangs").line;
        if line.ends_with("players online") {
            return;
        }
    };
    answered(&f);
    f.manager.send_input("hangs", b"hang\n").unwrap();
    match next_event(&f, |e| matches!(e, HistoryEvent::Restarting { .. })) {
        HistoryEvent::Restarting {
            attempt, reason, ..
        } => {
            assert_eq!(attempt, 1);
            assert!(
                reason.starts_with("failed its liveness probe 2 times in a row (no reply matching"),
                "{reason}"
            );
        }
        _ => unreachable!(),
    }
    // The new run answers its probes: three answers later it has still restarted only once.
    for _ in 0..3 {
        answered(&f);
    }
    let status = f.manager.status("hangs").unwrap();
    assert_eq!((status.state, status.restarts), (ProcessState::Running, 1));
    assert!(!f
        .history
        .try_iter()
        .any(|e| matches!(e, HistoryEvent::Restarting { .. })));
    f.manager.stop("hangs", None).unwrap();
}
