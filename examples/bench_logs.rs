//! Benchmark for manman-log-processor (run by `scripts/bench-logs`, release build).
//!
//! The log processor runs as a child process on a scratch vhost and database (no archival:
//! this measures the live path; the database checks the clients' viewer token). In one run:
//! 1. ingest: RATE lines/s (default 50,000) spread over 100 running sessions for DURATION
//!    seconds, with 10 clients streaming session 1; lines/s consumed and delivered, lines lost,
//!    and publish → client latency p50/p99 (the lines carry their publish time);
//! 2. memory: 1,000 active sessions with full buffers (500 lines of ~100 bytes each), RSS
//!    against the seed's budget of 20 MB + 100 KB per session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amiquip::{AmqpProperties, Publish};
use manman::bus::topology;
use manman::proto::v1 as pb;
use manman::testkit::{
    free_port, http_get, rss_kib, sibling_binary, wait_for, ScratchDb, ScratchVhost,
};
use serde_json::json;

const SESSIONS: i64 = 100;
const MANY_SESSIONS: i64 = 1_000;
const CLIENTS: usize = 10;
/// The clients' token, stored (as a digest) in the scratch database.
const VIEWER: &str = "mm_tok_bench_logs_viewer";

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

struct Child {
    child: std::process::Child,
    health: u16,
    grpc: u16,
}

impl Child {
    fn spawn(vhost: &ScratchVhost, db: &ScratchDb) -> Child {
        let digest = manman::auth::secret::digest(VIEWER);
        manman::db::tokens::insert(&mut db.client(), "bench", "viewer", &digest, None, None)
            .unwrap();
        let bin = sibling_binary("manman-log-processor");
        let (health, grpc) = (free_port(), free_port());
        let child = std::process::Command::new(bin)
            .env("RABBITMQ_URL", vhost.url())
            .env("GRPC_PORT", grpc.to_string())
            .env("HEALTH_PORT", health.to_string())
            .env("LOG_BUFFER_MAX_MESSAGES", "500")
            .env("LOG_LEVEL", "warn")
            .env("DATABASE_URL", db.url())
            .env_remove("S3_BUCKET")
            .spawn()
            .expect("spawn manman-log-processor (built by scripts/bench-logs)");
        let c = Child {
            child,
            health,
            grpc,
        };
        wait_for("log processor ready", Duration::from_secs(30), || {
            http_get(c.health, "/readyz")
                .starts_with("HTTP/1.1 200")
                .then_some(())
        });
        c
    }

    fn metric(&self, name: &str) -> u64 {
        let text = http_get(self.health, "/metrics");
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Publisher {
    _conn: amiquip::Connection,
    channel: amiquip::Channel,
}

impl Publisher {
    fn new(vhost: &ScratchVhost) -> Publisher {
        let mut conn = vhost.connect();
        let channel = conn.open_channel(None).unwrap();
        topology::declare_manman_exchange(&channel).unwrap();
        topology::declare_external_exchange(&channel, "external").unwrap();
        Publisher {
            _conn: conn,
            channel,
        }
    }

    fn send(&self, key: &str, body: &[u8]) {
        let props = AmqpProperties::default().with_delivery_mode(1);
        self.channel
            .basic_publish("manman", Publish::with_properties(body, key, props))
            .unwrap();
    }

    fn line(&self, session: i64, message: &str) {
        let body = json!({"session_id": session, "timestamp": now_us() / 1000, "source": "stdout", "message": message});
        self.send(
            &format!("logs.session.{session}"),
            body.to_string().as_bytes(),
        );
    }

    fn running(&self, session: i64) {
        let body = json!({"session_id": session, "sgc_id": 1, "status": "running"});
        self.send(
            &format!("status.session.{session}"),
            body.to_string().as_bytes(),
        );
    }
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// Offers `rate` lines/s over the sessions for `secs` seconds with 10 clients streaming
/// session 1, and prints what was consumed, delivered, lost, the latency and the CPU used.
fn ingest(
    child: &Child,
    vhost: &ScratchVhost,
    control: &Publisher,
    rate: u64,
    secs: u64,
    label: &str,
) {
    let stop = Arc::new(AtomicBool::new(false));
    // Lines published before this phase (still buffered) do not count for its latency.
    let phase_start = now_us();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", child.grpc);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let ch = grpcio::ChannelBuilder::new(Arc::new(grpcio::Environment::new(1)))
                    .primary_user_agent(&format!("bench-client-{i}"))
                    .connect(&addr);
                let client = pb::LogProcessorClient::new(ch);
                let stream = client
                    .stream_session_logs_opt(
                        &pb::StreamSessionLogsRequest {
                            session_id: 1,
                            after_sequence_number: 0,
                            backlog_only: false,
                        },
                        manman::grpc::authorized(Some(VIEWER)),
                    )
                    .unwrap();
                let (mut latencies, mut gaps) = (Vec::new(), 0u64);
                for m in futures::executor::block_on_stream(stream) {
                    let Ok(m) = m else { break };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if m.source == "gap" {
                        gaps += 1;
                    } else if let Some(sent) = m
                        .message
                        .split(' ')
                        .next()
                        .and_then(|t| t.parse::<i64>().ok())
                    {
                        if sent >= phase_start {
                            latencies.push(now_us() - sent);
                        }
                    }
                }
                (latencies, gaps)
            })
        })
        .collect();
    wait_for("10 clients", Duration::from_secs(30), || {
        (child.metric("manman_log_streaming_clients") == CLIENTS as u64).then_some(())
    });
    // Lines already buffered (an earlier phase) are not part of this one's latency.
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_seconds(child.child.id());
    // Two publishers (own connections), each half the rate, sessions round-robin, paced per ms.
    let in_before = child.metric("manman_log_lines_total{direction=\"in\"}");
    let started = Instant::now();
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let url = vhost.url();
            std::thread::spawn(move || {
                let mut conn = manman::bus::connection::open(&url).unwrap();
                let channel = conn.open_channel(None).unwrap();
                let props = AmqpProperties::default().with_delivery_mode(1);
                let per_thread = rate / 2;
                let total = per_thread * secs;
                let padding = "x".repeat(60);
                let t0 = Instant::now();
                let mut sent = 0u64;
                while sent < total {
                    let due = (t0.elapsed().as_secs_f64() * per_thread as f64) as u64;
                    if sent >= due {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    while sent < due.min(total) {
                        let session = (sent as i64 * 2 + p) % SESSIONS + 1;
                        let body = json!({"session_id": session, "timestamp": now_us() / 1000,
                            "source": "stdout", "message": format!("{} {padding}", now_us())});
                        channel
                            .basic_publish(
                                "manman",
                                Publish::with_properties(
                                    body.to_string().as_bytes(),
                                    format!("logs.session.{session}"),
                                    props.clone(),
                                ),
                            )
                            .unwrap();
                        sent += 1;
                    }
                }
                let _ = conn.close();
                sent
            })
        })
        .collect();
    let published: u64 = publishers.into_iter().map(|h| h.join().unwrap()).sum();
    let publish_secs = started.elapsed().as_secs_f64();
    // Everything published is consumed (or the broker dropped it: queue limits).
    let mut last = 0;
    let consumed = wait_for("ingest to settle", Duration::from_secs(120), || {
        let now = child.metric("manman_log_lines_total{direction=\"in\"}") - in_before;
        if now >= published || (now == last && now > 0) {
            return Some(now);
        }
        last = now;
        std::thread::sleep(Duration::from_millis(500));
        None
    });
    let ingest_secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.child.id()) - cpu_before;
    stop.store(true, Ordering::Relaxed);
    control.line(
        1,
        &format!("{} wake the clients so they see the stop flag", now_us()),
    );
    let (mut latencies, mut gaps, mut delivered) = (Vec::new(), 0, 0usize);
    for c in clients {
        let (l, g) = c.join().unwrap();
        delivered += l.len();
        latencies.extend(l);
        gaps += g;
    }
    latencies.sort_unstable();
    println!("\n== {label}: {rate} lines/s offered over {SESSIONS} sessions, {CLIENTS} clients on session 1");
    println!(
        "published            {published} lines in {publish_secs:.2} s = {:.0} lines/s offered",
        published as f64 / publish_secs
    );
    println!("consumed             {consumed} lines in {ingest_secs:.2} s = {:.0} lines/s sustained ({} lost)", consumed as f64 / ingest_secs, published.saturating_sub(consumed));
    println!("delivered to clients {delivered} lines ({:.0} lines/s across {CLIENTS} clients), gaps reported: {gaps}", delivered as f64 / ingest_secs);
    println!(
        "publish → client     p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "log processor CPU    {cpu:.2} s = {:.0} lines per CPU-second",
        consumed as f64 / cpu.max(0.01)
    );
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() {
    let rate: u64 = std::env::var("RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let secs: u64 = std::env::var("DURATION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("manman-log-processor benchmark — {cores} cores, {SESSIONS} sessions, {CLIENTS} clients on session 1, {rate} lines/s for {secs} s");
    let vhost = ScratchVhost::new("mmbench_logs");
    let db = ScratchDb::new("mmbench_logs");
    let child = Child::spawn(&vhost, &db);
    let control = Publisher::new(&vhost);
    for s in 1..=SESSIONS {
        control.running(s);
    }
    wait_for("100 feeds", Duration::from_secs(60), || {
        (child.metric("manman_log_session_feeds{kind=\"feeds\"}") == SESSIONS as u64).then_some(())
    });

    ingest(&child, &vhost, &control, rate, secs, "throughput");
    let latency_rate: u64 = std::env::var("LATENCY_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    ingest(&child, &vhost, &control, latency_rate, 5, "latency");
    let (rss, peak) = rss_kib(child.child.id());
    println!(
        "RSS                  {:.1} MiB (peak {:.1} MiB) with {SESSIONS} sessions",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    // Memory with 1,000 active sessions and full rings.
    for s in SESSIONS + 1..=MANY_SESSIONS {
        control.running(s);
    }
    wait_for("1,000 feeds", Duration::from_secs(120), || {
        (child.metric("manman_log_session_feeds{kind=\"feeds\"}") == MANY_SESSIONS as u64)
            .then_some(())
    });
    let (feeds_rss, _) = rss_kib(child.child.id());
    let before = child.metric("manman_log_lines_total{direction=\"in\"}");
    let line = "y".repeat(100);
    for round in 0..500 {
        for s in 1..=MANY_SESSIONS {
            control.line(s, &format!("{round} {line}"));
        }
    }
    // Until consumption stops growing (the broker may drop-head some lines of a busy queue).
    let mut last = 0;
    let buffered = wait_for("the lines to be consumed", Duration::from_secs(600), || {
        let now = child.metric("manman_log_lines_total{direction=\"in\"}") - before;
        if now >= 500 * MANY_SESSIONS as u64 || (now == last && now > 0) {
            return Some(now);
        }
        last = now;
        std::thread::sleep(Duration::from_secs(1));
        None
    });
    let (rss, peak) = rss_kib(child.child.id());
    let budget = 20.0 + 0.1 * MANY_SESSIONS as f64;
    println!("\n== memory: {MANY_SESSIONS} active sessions, up to 500 buffered lines of ~100 bytes each ({buffered} lines consumed)");
    println!("RSS with feeds only  {:.1} MiB", feeds_rss as f64 / 1024.0);
    println!("RSS                  {:.1} MiB (peak {:.1} MiB); budget 20 MB + 100 KB × {MANY_SESSIONS} = {budget:.0} MB", rss as f64 / 1024.0, peak as f64 / 1024.0);
}
