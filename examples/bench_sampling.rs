//! Benchmark of the host agent's per-session sampling (run by `scripts/bench-sampling`, release
//! build): 200 games, each a process group of three processes, sampled from /proc as the
//! heartbeat does (`CpuRates::sample`). Prints the CPU time per heartbeat and what it costs
//! at the default 5 s heartbeat, as a share of one core.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use manman::host::stats::{CpuRates, Game};
use manman::testkit::cpu_time;

const GAMES: usize = 200;
const ROUNDS: usize = 50;
const HEARTBEAT: Duration = Duration::from_secs(5);

fn main() {
    // Each game leads its own process group with two children, as a server with helpers would.
    let mut games: Vec<Child> = (0..GAMES)
        .map(|_| {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", "sleep 600 & sleep 600 & wait"]);
            // SAFETY: setpgid is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setpgid(0, 0);
                    Ok(())
                });
            }
            cmd.spawn().expect("spawn a stand-in game")
        })
        .collect();
    // Sampled from /proc, as a game without a cgroup is (scripts/bench-cgroups compares the two).
    let sessions: Vec<Game> = games
        .iter()
        .enumerate()
        .map(|(i, c)| Game {
            session_id: i as i64 + 1,
            pid: c.id(),
            cgroup: None,
        })
        .collect();
    // Wait until every group has its two children.
    let mut rates = CpuRates::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rates
        .sample(&sessions)
        .iter()
        .map(|s| s.processes)
        .sum::<u32>()
        < 3 * GAMES as u32
    {
        assert!(
            Instant::now() < deadline,
            "the stand-in games did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (cpu0, wall0) = (cpu_time(libc::RUSAGE_SELF), Instant::now());
    let mut seen = 0;
    for _ in 0..ROUNDS {
        seen = rates.sample(&sessions).len();
    }
    let (cpu, wall) = (cpu_time(libc::RUSAGE_SELF) - cpu0, wall0.elapsed());
    let per_beat = cpu / ROUNDS as u32;
    println!(
        "host agent sampling — {GAMES} games ({} processes), {ROUNDS} heartbeats' worth",
        3 * GAMES
    );
    println!(
        "CPU per heartbeat:  {:.2} ms  (wall {:.2} ms; {seen} sessions sampled)",
        per_beat.as_secs_f64() * 1000.0,
        wall.as_secs_f64() * 1000.0 / ROUNDS as f64
    );
    println!(
        "at a {} s heartbeat: {:.3} % of one core (goal < 1 %)",
        HEARTBEAT.as_secs(),
        100.0 * per_beat.as_secs_f64() / HEARTBEAT.as_secs_f64()
    );

    for g in &mut games {
        // SAFETY: signalling the process group this benchmark created.
        unsafe {
            libc::kill(-(g.id() as i32), libc::SIGKILL);
        }
        let _ = g.wait();
    }
}
