//! The process manager's half of `scripts/bench-procman` (release build). Prints one JSON
//! object: time for N `sleep` processes to reach Running, idle CPU and RSS with them running,
//! and crash→restart latency (the child prints a timestamp as its last act and as its first).

use std::time::{Duration, Instant};

use manman_procman::{ChannelHistory, ChannelOutput, HistoryEvent, Manager, RestartPolicy, Spec};

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: u32 = std::env::var("PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let idle_secs: u64 = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let baseline_rss = rss_kib();
    let (out_tx, out_rx) = crossbeam_channel::unbounded();
    let (hist_tx, hist_rx) = crossbeam_channel::unbounded();
    let (manager, _) = Manager::builder()
        .output(ChannelOutput(out_tx))
        .history(ChannelHistory(hist_tx))
        .build()
        .unwrap();

    // 1. N processes to Running.
    let mut spec = Spec::new("sleeper", "/bin/sleep", &["3600"]);
    spec.instances = n;
    spec.start_duration = Duration::ZERO;
    let began = Instant::now();
    manager.start_n(spec).unwrap();
    while manager.count("sleeper") < n as usize {
        std::thread::sleep(Duration::from_micros(200));
    }
    let to_running = began.elapsed().as_secs_f64();

    // 2. Idle CPU and RSS with N running.
    let cpu0 = cpu_seconds();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_cpu = (cpu_seconds() - cpu0) / idle_secs as f64 * 100.0;
    let rss = rss_kib();
    manager
        .stop_all("sleeper", Duration::from_secs(10))
        .unwrap();
    while hist_rx.try_recv().is_ok() {}

    // 3. Crash → restart: the child prints its start and its end; detection is our Exited
    // event minus the child's last timestamp.
    let mut spec = Spec::new(
        "crasher",
        "/bin/sh",
        &["-c", "date +start%s%N; sleep 0.05; date +end%s%N; exit 1"],
    );
    spec.start_duration = Duration::ZERO;
    spec.restart = RestartPolicy::Always;
    spec.backoff_initial = Duration::ZERO;
    spec.retry_limit = u32::MAX;
    manager.start(spec).unwrap();
    let mut restart_ms = Vec::new();
    let mut detect_ms = Vec::new();
    let mut last_end: Option<i64> = None;
    while restart_ms.len() < 50 {
        let line = out_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        if let Some(ts) = line.line.strip_prefix("start") {
            if let Some(end) = last_end.take() {
                restart_ms.push((ts.parse::<i64>().unwrap() - end) as f64 / 1e6);
            }
        } else if let Some(ts) = line.line.strip_prefix("end") {
            let end: i64 = ts.parse().unwrap();
            last_end = Some(end);
            loop {
                if let HistoryEvent::Exited { at, .. } =
                    hist_rx.recv_timeout(Duration::from_secs(10)).unwrap()
                {
                    detect_ms.push((at.timestamp_nanos_opt().unwrap() - end) as f64 / 1e6);
                    break;
                }
            }
        }
    }
    let _ = now_ns();
    manager.shutdown().unwrap();
    println!(
        "{}",
        serde_json::json!({
            "procs": n,
            "to_running_s": to_running,
            "idle_cpu_pct": idle_cpu,
            "rss_kib": rss,
            "baseline_rss_kib": baseline_rss,
            "restart_ms_p50": median(&mut restart_ms),
            "detect_ms_p50": median(&mut detect_ms),
            "detect_ms_max": detect_ms.iter().cloned().fold(0.0, f64::max),
        })
    );
}
