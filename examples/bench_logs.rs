//! Benchmark for the console-line path (run by `scripts/bench-logs`, release build).
//!
//! Lines go through the host agent's own console code (per-session throttle, per-session
//! batches, one confirmed publisher) to RabbitMQ and a `manman-log-processor` child process on
//! a scratch vhost and database; everything shares this machine's cores. Phases:
//! Clients use `StreamSessionLogBatches` (one gRPC message per read of the ring).
//! 1. throughput: RATE lines/s (default 50,000) over 100 sessions for DURATION s (default 30),
//!    10 clients streaming session 1: lines/s consumed, lines lost, CPU per line, latency;
//! 2. fan-out: one session at 20,000 lines/s for 10 s streamed to 100 clients: does every
//!    client get every line, in order;
//! 3. latency: 5,000 lines/s offered on one session, 10 clients: publish → client p50/p99;
//! 4. memory: 1,000 sessions with full buffers (500 lines of ~100 bytes): RSS;
//! 5. history: 60 archived minutes of a session at 1,000 lines/s read back with
//!    `manman logs --since` through a `manman-api` child: time to the last line, the API's
//!    peak RSS.

use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use manman::host::console::ConsoleSettings;
use manman::host::publisher::{self, Outbound};
use manman::lifecycle::ShutdownSignal;
use manman::logstore::{encode_lines, object_key, ArchivedLine};
use manman::proto::v1 as pb;
use manman::testkit::{
    cpu_seconds, free_port, http_get, percentile_ms, rss_kib, sibling_binary, wait_for,
    ScratchBucket, ScratchDb, ScratchVhost,
};

const SESSIONS: i64 = 100;
const MANY_SESSIONS: i64 = 1_000;
/// The clients' token, stored (as a digest) in the scratch database.
const VIEWER: &str = "mm_tok_bench_logs_viewer";

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A daemon run as a child process, ended (by pid) on drop.
struct Daemon {
    child: std::process::Child,
    health: u16,
    grpc: u16,
}

impl Daemon {
    fn spawn(binary: &str, env: &[(&str, String)]) -> Daemon {
        let (health, grpc) = (free_port(), free_port());
        let child = std::process::Command::new(sibling_binary(binary))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("GRPC_PORT", grpc.to_string())
            .env("HEALTH_PORT", health.to_string())
            .env("LOG_LEVEL", "warn")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary} (built by scripts/bench-logs): {e}"));
        let d = Daemon {
            child,
            health,
            grpc,
        };
        wait_for(binary, Duration::from_secs(30), || {
            http_get(d.health, "/readyz")
                .starts_with("HTTP/1.1 200")
                .then_some(())
        });
        d
    }

    fn metric(&self, name: &str) -> u64 {
        let text = http_get(self.health, "/metrics");
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn lines_in(&self) -> u64 {
        self.metric("manman_log_lines_total{direction=\"in\"}")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host agent's console path: throttle, batches, one confirmed publisher.
struct HostConsole {
    out: Outbound,
    publisher: std::thread::JoinHandle<()>,
}

impl HostConsole {
    fn start(url: String, settings: ConsoleSettings) -> HostConsole {
        let (out, inbound) = publisher::channels(&settings);
        let publisher = std::thread::spawn(move || {
            let (_keep, never) = ShutdownSignal::new();
            publisher::run(&url, inbound, &Vec::new, &never).unwrap();
        });
        HostConsole { out, publisher }
    }

    /// Prints `rate` lines/s for `secs` s, sessions round-robin over `sessions`, each line
    /// carrying its time (µs) for the clients' latency. Returns the lines offered.
    fn offer(&self, sessions: &[i64], rate: u64, secs: u64, padding: usize) -> u64 {
        let total = rate * secs;
        let pad = "x".repeat(padding);
        let t0 = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            if sent >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            while sent < due {
                let session = sessions[(sent % sessions.len() as u64) as usize];
                self.out
                    .console
                    .game_output(session, "stdout", &format!("{} {pad}", now_us()));
                sent += 1;
            }
        }
        sent
    }

    /// Ends the publisher once everything queued is published; returns (dropped, throttled).
    fn finish(self) -> (u64, u64) {
        let dropped = self.out.console.dropped.load(Ordering::Relaxed);
        let throttled = self.out.console.throttled.load(Ordering::Relaxed);
        drop(self.out);
        self.publisher.join().unwrap();
        (dropped, throttled)
    }
}

/// Announces sessions as their hosts would (`status.session.{id}` running), so the log
/// processor buffers them before any line (clients can attach), and waits until it does.
/// `buffered_after`: how many sessions the daemon buffers then (default: these are new).
fn announce(daemon: &Daemon, vhost: &ScratchVhost, sessions: &[i64], buffered_after: Option<u64>) {
    let want = buffered_after
        .unwrap_or(daemon.metric("manman_log_buffered_sessions") + sessions.len() as u64);
    let mut conn = vhost.connect();
    let channel = conn.open_channel(None).unwrap();
    manman::bus::topology::declare_manman_exchange(&channel).unwrap();
    for s in sessions {
        let body = format!(r#"{{"session_id":{s},"sgc_id":1,"status":"running"}}"#);
        channel
            .basic_publish(
                "manman",
                amiquip::Publish::new(body.as_bytes(), format!("status.session.{s}")),
            )
            .unwrap();
    }
    let _ = conn.close();
    wait_for("the sessions buffered", Duration::from_secs(60), || {
        (daemon.metric("manman_log_buffered_sessions") >= want).then_some(())
    });
}

/// What one streaming client saw.
#[derive(Default)]
struct ClientResult {
    latencies: Vec<i64>,
    lines: u64,
    gaps: u64,
    in_order: bool,
}

/// `n` clients streaming `session` until they read the line `END`.
fn clients(
    daemon: &Daemon,
    session: i64,
    n: usize,
    since_us: i64,
) -> Vec<std::thread::JoinHandle<ClientResult>> {
    let env = Arc::new(grpcio::Environment::new(2));
    let handles = (0..n)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", daemon.grpc);
            let env = env.clone();
            std::thread::spawn(move || {
                let ch = grpcio::ChannelBuilder::new(env)
                    .primary_user_agent(&format!("bench-client-{i}"))
                    .connect(&addr);
                let client = pb::LogProcessorClient::new(ch);
                let request = pb::StreamSessionLogsRequest {
                    session_id: session,
                    after_sequence_number: 0,
                    backlog_only: false,
                };
                // Batches: one gRPC message per read of the ring, as a busy console needs.
                let stream = client
                    .stream_session_log_batches_opt(
                        &request,
                        manman::grpc::authorized(Some(VIEWER)),
                    )
                    .unwrap();
                let mut r = ClientResult {
                    in_order: true,
                    ..ClientResult::default()
                };
                let mut last_seq = 0;
                'stream: for batch in futures::executor::block_on_stream(stream) {
                    let Ok(batch) = batch else { break };
                    for m in batch.lines {
                        if m.source == "gap" {
                            r.gaps += 1;
                            continue;
                        }
                        if m.message.starts_with("END") {
                            break 'stream;
                        }
                        if last_seq > 0 && m.sequence_number != last_seq + 1 {
                            r.in_order = false;
                        }
                        last_seq = m.sequence_number;
                        let sent = m
                            .message
                            .split(' ')
                            .next()
                            .and_then(|t| t.parse::<i64>().ok());
                        if let Some(sent) = sent.filter(|s| *s >= since_us) {
                            r.lines += 1;
                            r.latencies.push(now_us() - sent);
                        }
                    }
                }
                r
            })
        })
        .collect();
    wait_for("the clients streaming", Duration::from_secs(30), || {
        (daemon.metric("manman_log_streaming_clients") >= n as u64).then_some(())
    });
    handles
}

/// Waits until the log processor has taken `expected` more lines than `before` (or stops
/// taking any); returns how many it took.
fn settle(daemon: &Daemon, before: u64, expected: u64) -> u64 {
    let mut last = 0;
    wait_for("ingest to settle", Duration::from_secs(300), || {
        let now = daemon.lines_in() - before;
        if now >= expected || (now == last && now > 0) {
            return Some(now);
        }
        last = now;
        std::thread::sleep(Duration::from_millis(1000));
        None
    })
}

/// One phase of streaming: offers lines through a host console, waits for the log processor,
/// ends the clients, and prints the figures.
#[allow(clippy::too_many_arguments)]
fn phase(
    label: &str,
    daemon: &Daemon,
    vhost: &ScratchVhost,
    sessions: &[i64],
    rate: u64,
    secs: u64,
    n_clients: usize,
    settings: ConsoleSettings,
) {
    announce(daemon, vhost, sessions, None);
    let since = now_us();
    let streams = clients(daemon, sessions[0], n_clients, since);
    let console = HostConsole::start(vhost.url(), settings);
    let before = daemon.lines_in();
    let cpu_before = cpu_seconds(daemon.child.id());
    let started = Instant::now();
    let offered = console.offer(sessions, rate, secs, 60);
    let offer_secs = started.elapsed().as_secs_f64();
    // The agent's own line: never throttled, so every client sees the end.
    console.out.console.host_line(sessions[0], "END");
    let (dropped, throttled) = console.finish();
    // Every line but the throttled ones, and the END line (markers may add a few).
    let expected = offered - throttled + 1;
    let consumed = settle(daemon, before, expected);
    let ingest_secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(daemon.child.id()) - cpu_before;
    let results: Vec<ClientResult> = streams.into_iter().map(|h| h.join().unwrap()).collect();
    let mut latencies: Vec<i64> = results.iter().flat_map(|r| r.latencies.clone()).collect();
    latencies.sort_unstable();
    let gaps: u64 = results.iter().map(|r| r.gaps).sum();
    let complete = results
        .iter()
        .filter(|r| {
            r.in_order && r.gaps == 0 && r.lines * sessions.len() as u64 >= offered - throttled
        })
        .count();
    println!("\n== {label}: {rate} lines/s offered over {} session(s) for {secs} s, {n_clients} clients on session {}", sessions.len(), sessions[0]);
    println!(
        "offered              {offered} lines in {offer_secs:.2} s = {:.0} lines/s",
        offered as f64 / offer_secs
    );
    println!("host                 {throttled} throttled, {dropped} dropped (queue full)");
    println!(
        "consumed             {consumed} lines in {ingest_secs:.2} s = {:.0} lines/s sustained ({} lost below the throttle, {} counted lost by sequence)",
        consumed as f64 / ingest_secs,
        expected.saturating_sub(consumed),
        daemon.metric("manman_log_lines_dropped_total{reason=\"lost_in_transit\"}")
    );
    println!(
        "clients              {complete}/{n_clients} got every line in order; {gaps} gap markers",
    );
    println!(
        "publish → client     p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0)
    );
    println!(
        "log processor CPU    {cpu:.2} s = {:.1} µs per line",
        cpu * 1e6 / consumed.max(1) as f64
    );
}

/// Memory with 1,000 active sessions and full rings.
fn memory(daemon: &Daemon, vhost: &ScratchVhost) {
    let sessions: Vec<i64> = (1..=MANY_SESSIONS).collect();
    announce(daemon, vhost, &sessions, Some(MANY_SESSIONS as u64));
    let (idle_rss, _) = rss_kib(daemon.child.id());
    let console = HostConsole::start(vhost.url(), ConsoleSettings::default());
    let before = daemon.lines_in();
    // 500 lines of ~100 bytes per session, at a pace the broker takes without dropping.
    let offered = console.offer(&sessions, 50_000, 10, 80);
    console.finish();
    let consumed = settle(daemon, before, offered);
    let (rss, peak) = rss_kib(daemon.child.id());
    let budget = 20.0 + 0.1 * MANY_SESSIONS as f64;
    println!("\n== memory: {MANY_SESSIONS} active sessions, 500 lines of ~100 bytes each ({consumed} lines consumed)");
    println!("RSS before           {:.1} MiB", idle_rss as f64 / 1024.0);
    println!(
        "RSS                  {:.1} MiB (peak {:.1} MiB); budget 20 MB + 100 KB × {MANY_SESSIONS} = {budget:.0} MB",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

/// 60 archived minutes at 1,000 lines/s, read back with `manman logs --since`.
fn history(vhost: &ScratchVhost, db: &ScratchDb) {
    const MINUTES: i64 = 60;
    const PER_MINUTE: i64 = 60_000;
    let bucket = ScratchBucket::new();
    bucket.store.ensure_bucket().unwrap();
    let mut c = db.client();
    let session: i64 = c
        .query_one(
            "WITH s AS (INSERT INTO servers (name, status) VALUES ('bench-history', 'online') RETURNING server_id),
                  g AS (INSERT INTO games (name) VALUES ('bench-history') RETURNING game_id),
                  gc AS (INSERT INTO game_configs (game_id, name, command) SELECT game_id, 'default', '/bin/true' FROM g RETURNING config_id),
                  sgc AS (INSERT INTO server_game_configs (server_id, game_config_id) SELECT server_id, config_id FROM s, gc RETURNING sgc_id)
             INSERT INTO sessions (sgc_id, status) SELECT sgc_id, 'stopped' FROM sgc RETURNING session_id",
            &[],
        )
        .unwrap()
        .get(0);
    let sgc: i64 = c
        .query_one(
            "SELECT sgc_id FROM sessions WHERE session_id = $1",
            &[&session],
        )
        .unwrap()
        .get(0);
    let first_minute = manman::logstore::minute_of(now_us() / 1000) - (MINUTES + 1) * 60_000;
    let started = Instant::now();
    let pad = "h".repeat(80);
    for m in 0..MINUTES {
        let minute = first_minute + m * 60_000;
        let lines: Vec<ArchivedLine> = (0..PER_MINUTE)
            .map(|i| ArchivedLine {
                timestamp: minute + i * 60_000 / PER_MINUTE,
                source: "stdout".into(),
                message: format!("{m}:{i} {pad}"),
            })
            .collect();
        let key = object_key(sgc, session, minute);
        bucket.store.put(&key, &encode_lines(&lines)).unwrap();
        manman::db::log_references::claim_minute(&mut c, session, minute, &key).unwrap();
        manman::db::log_references::mark_archived(&mut c, session, minute, PER_MINUTE as i32)
            .unwrap();
    }
    println!(
        "\n== history: {MINUTES} archived minutes × {PER_MINUTE} lines of ~90 bytes (written in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let api = Daemon::spawn(
        "manman-api",
        &[
            ("RABBITMQ_URL", vhost.url()),
            ("DATABASE_URL", db.url()),
            ("S3_BUCKET", bucket.config.bucket.clone()),
            ("S3_ENDPOINT", manman::testkit::s3_endpoint()),
            ("S3_ACCESS_KEY", "manman".into()),
            ("S3_SECRET_KEY", "manman".into()),
        ],
    );
    let (rss_before, _) = rss_kib(api.child.id());
    let started = Instant::now();
    let mut cli = std::process::Command::new(sibling_binary("manman"))
        .args([
            "logs",
            &session.to_string(),
            "--since",
            "3h",
            "--limit",
            "0",
        ])
        .env("API_ADDRESS", format!("127.0.0.1:{}", api.grpc))
        .env("MANMAN_TOKEN", VIEWER)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = None;
    let mut count = 0u64;
    for line in std::io::BufReader::new(cli.stdout.take().unwrap()).lines() {
        line.unwrap();
        first_line.get_or_insert_with(|| started.elapsed());
        count += 1;
    }
    let last_line = started.elapsed();
    let status = cli.wait().unwrap();
    let (_, api_peak) = rss_kib(api.child.id());
    println!(
        "manman logs --since  {count} lines (exit {status}); first line after {:.0} ms, last after {:.1} s = {:.0} lines/s",
        first_line.unwrap_or_default().as_secs_f64() * 1000.0,
        last_line.as_secs_f64(),
        count as f64 / last_line.as_secs_f64()
    );
    println!(
        "API RSS              {:.1} MiB before, peak {:.1} MiB",
        rss_before as f64 / 1024.0,
        api_peak as f64 / 1024.0
    );
}

fn main() {
    let rate = env_or("RATE", 50_000);
    let secs = env_or("DURATION", 30);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("console-line benchmark — {cores} cores; host console → RabbitMQ → manman-log-processor (release)");
    let vhost = ScratchVhost::new("mmbench_logs");
    let db = ScratchDb::new("mmbench_logs");
    let digest = manman::auth::secret::digest(VIEWER);
    manman::db::tokens::insert(&mut db.client(), "bench", "viewer", &digest, None, None).unwrap();
    let daemon = Daemon::spawn(
        "manman-log-processor",
        &[
            ("RABBITMQ_URL", vhost.url()),
            ("DATABASE_URL", db.url()),
            ("LOG_BUFFER_MAX_MESSAGES", "500".into()),
        ],
    );
    let sessions: Vec<i64> = (1..=SESSIONS).collect();
    // The host's console settings as an agent would read them (LOG_BATCH_LINES,
    // LOG_BATCH_LINGER_MS, LOG_MAX_LINES_PER_SECOND), to compare batch sizes.
    let console = ConsoleSettings::from_env(&manman::config::Env::from_process()).unwrap();
    println!("host console settings: {console:?}");
    // BENCH_PHASES: a comma list of throughput, fanout, latency, memory, history (default all).
    let phases = std::env::var("BENCH_PHASES").unwrap_or_default();
    let run = |name: &str| phases.is_empty() || phases.split(',').any(|p| p == name);
    if run("throughput") {
        let c = console.clone();
        phase("throughput", &daemon, &vhost, &sessions, rate, secs, 10, c);
    }
    if run("fanout") {
        let fanout_rate = env_or("FANOUT_RATE", 20_000);
        let one = [SESSIONS + 1];
        phase(
            "fan-out",
            &daemon,
            &vhost,
            &one,
            fanout_rate,
            10,
            100,
            console.clone(),
        );
        // The same fan-out against an instance with a deeper buffer: what 100 clients on
        // these cores need to never fall behind at this rate.
        let deep = Daemon::spawn(
            "manman-log-processor",
            &[
                ("RABBITMQ_URL", vhost.url()),
                ("DATABASE_URL", db.url()),
                ("LOG_PROCESSOR_INSTANCE", "bench-deep".into()),
                ("LOG_BUFFER_MAX_MESSAGES", "5000".into()),
                ("LOG_BUFFER_MAX_BYTES", (1024 * 1024).to_string()),
            ],
        );
        let label = "fan-out, 5,000-line buffer";
        let other = [SESSIONS + 3];
        phase(
            label,
            &deep,
            &vhost,
            &other,
            fanout_rate,
            10,
            100,
            console.clone(),
        );
    }
    if run("latency") {
        let latency_rate = env_or("LATENCY_RATE", 5_000);
        let one = [SESSIONS + 2];
        phase(
            "latency",
            &daemon,
            &vhost,
            &one,
            latency_rate,
            10,
            10,
            console.clone(),
        );
    }
    if run("memory") {
        memory(&daemon, &vhost);
    }
    drop(daemon);
    if run("history") {
        history(&vhost, &db);
    }
}
