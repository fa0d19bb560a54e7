//! Benchmark of issue 25 (`scripts/bench-cgroups`, release build), on this machine's real
//! cgroups:
//! 1. Start cost: 300 launches of a game stand-in (`/bin/true`) with a cgroup each (the
//!    group created, its limits written, joined between fork and exec, emptied and removed,
//!    as the agent does per session) against 300 without; p50 and p99 of each, and the
//!    difference (goal: < 1 ms at p50).
//! 2. Sampling: 200 games of three processes each, sampled as the heartbeat does, from their
//!    cgroups and from the /proc walk; CPU time per heartbeat of each (goal: cgroups at least
//!    5× cheaper).

use std::time::{Duration, Instant};

use manman::host::stats::{CpuRates, Game};
use manman::testkit::{cpu_time, percentile};
use manman_cgroup::{Limits, Tree};
use manman_child::{ChildIo, Launch, LocalChild};

const STARTS: usize = 300;
const GAMES: usize = 200;
const ROUNDS: usize = 50;

/// Runs `launch` to its end, as a supervisor would (spawn, wait for the exit, finish).
fn run(launch: &Launch) {
    let mut child = Box::new(LocalChild::spawn(launch, &[]).expect("spawn"));
    loop {
        let mut fds = Vec::new();
        child.wait_fds(&mut fds);
        let _ = manman_child::sys::poll(&mut fds, Some(Duration::from_secs(5)));
        if child.service(&mut |_, _| {}) {
            break;
        }
    }
    child.finish(&mut |_, _| {});
}

fn main() {
    let tree = Tree::open(&format!("mmbench-cgroups-{}", std::process::id()))
        .expect("a writable cgroup hierarchy");
    println!("{}", tree.describe());
    let limits = Limits {
        memory_max: Some(4 << 30),
        cpu_max_cores: Some(2.0),
        pids_max: Some(512),
        ..Limits::default()
    };
    // The same process, and the same confinement besides the cgroup (a pre-exec hook: fork).
    let mut plain = Launch::new("/bin/true", &[]);
    plain.max_open_files = Some(4096);
    let mut without = Vec::new();
    let mut with = Vec::new();
    for i in 0..STARTS {
        // Interleaved, so both see the same machine.
        let t = Instant::now();
        run(&plain);
        without.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let group = tree.session(&format!("session-{i}"));
        group.create().unwrap();
        limits.apply(&group).unwrap();
        let mut launch = plain.clone();
        launch.cgroup = Some(group.clone());
        run(&launch);
        group.remove().unwrap();
        with.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    without.sort_by(f64::total_cmp);
    with.sort_by(f64::total_cmp);
    println!("start → exit of /bin/true, {STARTS} runs each:");
    println!(
        "  without a cgroup: p50 {:.3} ms  p99 {:.3} ms",
        percentile(&without, 0.5),
        percentile(&without, 0.99)
    );
    println!(
        "  with a cgroup (create, limits, join, remove): p50 {:.3} ms  p99 {:.3} ms",
        percentile(&with, 0.5),
        percentile(&with, 0.99)
    );
    println!(
        "  the cgroup adds {:.3} ms at p50 (goal < 1 ms)",
        percentile(&with, 0.5) - percentile(&without, 0.5)
    );

    // 200 games of three processes, each in a cgroup of its own (and its own process group).
    let mut games = Vec::new();
    let mut children = Vec::new();
    for i in 0..GAMES {
        let group = tree.session(&format!("game-{i}"));
        group.create().unwrap();
        let mut launch = Launch::new("/bin/sh", &["-c", "sleep 600 & sleep 600 & wait"]);
        launch.cgroup = Some(group.clone());
        let child = LocalChild::spawn(&launch, &[]).expect("spawn a stand-in game");
        games.push(Game {
            session_id: i as i64 + 1,
            pid: child.pid(),
            cgroup: Some(group),
        });
        children.push(child);
    }
    let by_proc: Vec<Game> = games
        .iter()
        .map(|g| Game {
            cgroup: None,
            ..g.clone()
        })
        .collect();
    let mut rates = CpuRates::default();
    manman::testkit::wait_for(
        "every game's three processes",
        Duration::from_secs(20),
        || {
            let n: u32 = rates.sample(&by_proc).iter().map(|s| s.processes).sum();
            (n >= 3 * GAMES as u32).then_some(())
        },
    );
    let mut per_beat = |games: &[Game]| {
        let (cpu0, wall0) = (cpu_time(libc::RUSAGE_SELF), Instant::now());
        let mut seen = 0;
        for _ in 0..ROUNDS {
            seen = rates.sample(games).len();
        }
        assert_eq!(seen, GAMES);
        (
            (cpu_time(libc::RUSAGE_SELF) - cpu0) / ROUNDS as u32,
            wall0.elapsed() / ROUNDS as u32,
        )
    };
    let (proc_cpu, proc_wall) = per_beat(&by_proc);
    let (cg_cpu, cg_wall) = per_beat(&games);
    println!(
        "sampling {GAMES} games ({} processes), {ROUNDS} heartbeats each:",
        3 * GAMES
    );
    println!(
        "  /proc walk:  CPU {:.2} ms per heartbeat (wall {:.2} ms)",
        proc_cpu.as_secs_f64() * 1e3,
        proc_wall.as_secs_f64() * 1e3
    );
    println!(
        "  cgroups:     CPU {:.2} ms per heartbeat (wall {:.2} ms)",
        cg_cpu.as_secs_f64() * 1e3,
        cg_wall.as_secs_f64() * 1e3
    );
    println!(
        "  cgroups are {:.1}× cheaper (goal ≥ 5×)",
        proc_cpu.as_secs_f64() / cg_cpu.as_secs_f64().max(1e-9)
    );
    for (game, child) in games.iter().zip(children) {
        game.cgroup.as_ref().unwrap().kill_all();
        Box::new(child).finish(&mut |_, _| {});
        game.cgroup.as_ref().unwrap().remove().unwrap();
    }
    tree.remove_if_empty();
}
