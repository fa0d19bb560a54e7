//! Benchmark for the CLI's exit (run by `scripts/bench-cli`, release build): CALLS (default
//! 1,000) runs of `manman --json game list` against an in-process API on a scratch database;
//! for each, the time from the answer's first byte on stdout to the process's exit, and the
//! whole call.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use manman::api::{self, ApiConfig};
use manman::auth::Role;
use manman::lifecycle::Supervisor;
use manman::testkit::{sibling_binary, ScratchDb, ScratchVhost};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() {
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let vhost = ScratchVhost::new("mmbench_cli");
    let db = ScratchDb::new("mmbench_cli");
    let mut sup = Supervisor::new();
    let running = api::start(
        ApiConfig::embedded(vhost.url(), db.config.clone()),
        &mut sup,
    )
    .expect("the API starts");
    let (_, token) = api::create_token(&mut db.client(), "bench", Role::Admin, 0).unwrap();
    db.client()
        .batch_execute("INSERT INTO games (name) SELECT 'game-' || i FROM generate_series(1, 5) i")
        .unwrap();
    let bin = sibling_binary("manman");
    let (mut exits, mut totals) = (Vec::new(), Vec::new());
    for _ in 0..calls {
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .args(["--json", "game", "list"])
            .env("API_ADDRESS", format!("127.0.0.1:{}", running.port))
            .env("MANMAN_TOKEN", &token)
            .stdout(Stdio::piped())
            .spawn()
            .expect("manman (built by scripts/bench-cli)");
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 1];
        stdout.read_exact(&mut first).expect("an answer");
        let answered = Instant::now();
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "manman failed: {status}");
        exits.push(answered.elapsed());
        totals.push(started.elapsed());
    }
    exits.sort_unstable();
    totals.sort_unstable();
    println!("manman --json game list × {calls}");
    println!(
        "answer → exit   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal: max < 50 ms)",
        percentile(&exits, 0.5),
        percentile(&exits, 0.99),
        percentile(&exits, 1.0)
    );
    println!(
        "whole call      p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&totals, 0.5),
        percentile(&totals, 0.99),
        percentile(&totals, 1.0)
    );
    let slow = exits
        .iter()
        .filter(|d| **d > Duration::from_millis(50))
        .count();
    println!("calls slower than 50 ms to exit: {slow}");
    // The API's threads end with the process.
    std::process::exit(0);
}
