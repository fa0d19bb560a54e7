//! Benchmark for manman-processor (run by `scripts/bench-processor`, release build).
//!
//! In one run, on a scratch database and vhost each:
//! 1. raw broker rate: persistent publish → consume → ack, one message at a time;
//! 2. raw PostgreSQL rate: single-row autocommit UPDATE on one connection;
//! 3. the seed's baseline: the processor with prefetch 1 and batches of 1 (QoS=1 loop);
//! 4. the processor as shipped: 1,000 hosts heartbeating + 10,000 sessions walking their
//!    lifecycle = 100,000 events, end-to-end from first publish to the last external event;
//! 5. latency at an offered 1,000 events/s: publish → external event, p50/p99;
//!
//! It also reports the processor's RSS (the processor runs as a child process).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amiquip::{
    AmqpProperties, ConsumerMessage, ConsumerOptions, ExchangeDeclareOptions, ExchangeType,
    FieldTable, Publish, QueueDeclareOptions,
};
use manman::testkit::{
    free_port, http_get, percentile_ms, rss_kib, sibling_binary, wait_for, ScratchDb, ScratchVhost,
};
use serde_json::json;

const HOSTS: i64 = 1_000;
const SESSIONS: i64 = 10_000;
const LIFECYCLE: [&str; 4] = ["starting", "running", "stopping", "stopped"];

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// 1,000 hosts (offline), 10 configs, one deployment per (host, config), one pending session each.
fn seed(db: &ScratchDb) {
    db.client()
        .batch_execute(&format!(
            "INSERT INTO servers (name) SELECT 'host-' || g FROM generate_series(1, {HOSTS}) g;
             INSERT INTO games (name) VALUES ('bench');
             INSERT INTO game_configs (game_id, name, command)
                  SELECT 1, 'cfg-' || g, '/bin/true' FROM generate_series(1, 10) g;
             INSERT INTO server_game_configs (server_id, game_config_id)
                  SELECT s, c FROM generate_series(1, {HOSTS}) s, generate_series(1, 10) c;
             INSERT INTO sessions (sgc_id) SELECT sgc_id FROM server_game_configs ORDER BY sgc_id
                  LIMIT {SESSIONS};"
        ))
        .expect("seed");
}

type Msg = (String, serde_json::Value);

fn session_msg(id: i64, status: &str) -> Msg {
    let exit = if status == "stopped" {
        json!(0)
    } else {
        json!(null)
    };
    (
        format!("status.session.{id}"),
        json!({"session_id": id, "status": status, "exit_code": exit}),
    )
}

/// A heartbeat; with `samples`, carrying a sample of each of the host's 10 sessions (seeded
/// in order: host h has sessions 10h-9 ..= 10h) as an agent does.
fn heartbeat_msg(host: i64, samples: bool) -> Msg {
    let mut beat = json!({"server_id": host, "session_stats": {"total": 10, "running": 10}});
    if samples {
        beat["sessions"] = (host * 10 - 9..=host * 10)
            .map(|session_id| {
                json!({"session_id": session_id, "cpu_percent": 12.5, "rss_bytes": 512u64 << 20,
                       "threads": 40, "open_files": 120, "processes": 2})
            })
            .collect();
    }
    (format!("health.host.{host}"), beat)
}

/// `sessions` × 4 transitions interleaved 2:3 with heartbeats, ending on session events so the
/// last external event marks the end of the whole stream.
fn mix(sessions: i64, heartbeats: i64, samples: bool) -> Vec<Msg> {
    let mut transitions = Vec::new();
    for status in LIFECYCLE {
        for id in 1..=sessions {
            transitions.push(session_msg(id, status));
        }
    }
    let beats: Vec<Msg> = (0..heartbeats)
        .map(|i| heartbeat_msg(i % HOSTS + 1, samples))
        .collect();
    let tail = transitions.split_off(transitions.len() - 100);
    let mut out = Vec::with_capacity(transitions.len() + beats.len() + tail.len());
    let (mut t, mut b) = (transitions.into_iter(), beats.into_iter());
    loop {
        let mut any = false;
        for m in t.by_ref().take(2) {
            out.push(m);
            any = true;
        }
        for m in b.by_ref().take(3) {
            out.push(m);
            any = true;
        }
        if !any {
            break;
        }
    }
    out.extend(tail);
    out
}

struct Child {
    child: std::process::Child,
    health: u16,
}

impl Child {
    /// `tls`: amqps to the broker's TLS listener (scripts/services) and `sslmode=require` to
    /// PostgreSQL (Debian's certificate for localhost), both verified.
    fn spawn(
        db: &ScratchDb,
        vhost: &ScratchVhost,
        prefetch: u16,
        batch: usize,
        tls: bool,
    ) -> Child {
        let bin = sibling_binary("manman-processor");
        let health = free_port();
        let mut command = std::process::Command::new(bin);
        if tls {
            command
                .env(
                    "RABBITMQ_URL",
                    format!("amqps://guest:guest@localhost:5671/{}", vhost.name),
                )
                .env(
                    "DATABASE_URL",
                    format!(
                        "postgres://postgres@localhost:5432/{}?sslmode=require",
                        db.name
                    ),
                )
                .env("SSL_CERT_FILE", tls_roots());
        } else {
            // Plaintext for real: PostgreSQL's default `prefer` would encrypt opportunistically.
            command
                .env("RABBITMQ_URL", vhost.url())
                .env("DATABASE_URL", format!("{}?sslmode=disable", db.url()));
        }
        let child = command
            .env("HEALTH_PORT", health.to_string())
            .env("STALE_HOST_THRESHOLD_SECONDS", "3600")
            .env("STALE_CHECK_INTERVAL_SECONDS", "3600")
            .env("PROCESSOR_PREFETCH", prefetch.to_string())
            .env("PROCESSOR_MAX_BATCH", batch.to_string())
            .env("LOG_LEVEL", "warn")
            .spawn()
            .expect("spawn manman-processor (built by scripts/bench-processor)");
        let c = Child { child, health };
        wait_for("processor ready", Duration::from_secs(30), || {
            (c.get("/readyz").starts_with("HTTP/1.1 200")).then_some(())
        });
        c
    }

    fn get(&self, path: &str) -> String {
        http_get(self.health, path)
    }

    /// (current RSS, peak RSS) in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        rss_kib(self.child.id())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts external events on a thread; returns (receiver of (arrival µs, payload)).
fn external_listener(
    vhost: &ScratchVhost,
) -> crossbeam_channel::Receiver<(i64, serde_json::Value)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let url = vhost.url();
    std::thread::spawn(move || {
        let mut conn = manman::bus::connection::open(&url).unwrap();
        let ch = conn.open_channel(None).unwrap();
        let ex = ch
            .exchange_declare(
                ExchangeType::Topic,
                "external",
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let q = ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
            )
            .unwrap();
        q.bind(&ex, "manman.#", FieldTable::new()).unwrap();
        let consumer = q
            .consume(ConsumerOptions {
                no_ack: true,
                ..Default::default()
            })
            .unwrap();
        ready_tx.send(()).unwrap();
        for m in consumer.receiver().iter() {
            if let ConsumerMessage::Delivery(d) = m {
                let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap_or_default();
                if tx.send((now_us(), v)).is_err() {
                    break;
                }
            } else {
                break;
            }
        }
    });
    ready_rx.recv().unwrap();
    rx
}

/// Publishes `msgs` (optionally paced to `per_sec`), stamping each body with `sent_us`.
fn publish(
    vhost: &ScratchVhost,
    msgs: Vec<Msg>,
    per_sec: Option<f64>,
) -> std::thread::JoinHandle<f64> {
    let url = vhost.url();
    std::thread::spawn(move || {
        let mut conn = manman::bus::connection::open(&url).unwrap();
        let ch = conn.open_channel(None).unwrap();
        let started = Instant::now();
        let n = msgs.len();
        for (i, (key, mut body)) in msgs.into_iter().enumerate() {
            if let Some(rate) = per_sec {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait); // pacing the offered load, not synchronisation
                }
            }
            body["sent_us"] = json!(now_us());
            let props = AmqpProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(format!("bench-{i}"));
            ch.basic_publish(
                "manman",
                Publish::with_properties(body.to_string().as_bytes(), key, props),
            )
            .unwrap();
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        let _ = conn.close();
        rate
    })
}

fn raw_broker_rate(n: usize) -> f64 {
    let vhost = ScratchVhost::new("mmbench");
    let mut conn = vhost.connect();
    let ch = conn.open_channel(None).unwrap();
    let q = ch
        .queue_declare(
            "raw",
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .unwrap();
    ch.qos(0, 500, false).unwrap();
    let consumer = q.consume(ConsumerOptions::default()).unwrap();
    let url = vhost.url();
    let started = Instant::now();
    let publisher = std::thread::spawn(move || {
        let mut conn = manman::bus::connection::open(&url).unwrap();
        let ch = conn.open_channel(None).unwrap();
        let body = json!({"server_id": 1, "session_stats": {"total": 1}}).to_string();
        for _ in 0..n {
            let props = AmqpProperties::default().with_delivery_mode(2);
            ch.basic_publish("", Publish::with_properties(body.as_bytes(), "raw", props))
                .unwrap();
        }
        let _ = conn.close();
    });
    for (i, m) in consumer.receiver().iter().enumerate() {
        if let ConsumerMessage::Delivery(d) = m {
            consumer.ack(d).unwrap();
        }
        if i + 1 == n {
            break;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    publisher.join().unwrap();
    let _ = conn.close();
    rate
}

fn raw_pg_update_rate(n: i64) -> f64 {
    let db = ScratchDb::new("mmbench");
    seed(&db);
    let mut c = db.client();
    let st = c
        .prepare("UPDATE servers SET last_seen = now() WHERE server_id = $1")
        .unwrap();
    let started = Instant::now();
    for i in 0..n {
        c.execute(&st, &[&(i % HOSTS + 1)]).unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

struct Throughput {
    events: usize,
    batches: f64,
    publish_rate: f64,
    rate: f64,
    rss: (u64, u64),
}

/// Publishes the mix and waits for every external event it must produce.
/// One PEM with the broker's throwaway CA and PostgreSQL's (self-signed) certificate.
fn tls_roots() -> std::path::PathBuf {
    let path = std::env::temp_dir().join("manman-bench-roots.pem");
    let mut pem = std::fs::read(manman::testkit::services_tls_dir().join("ca.pem"))
        .expect("the broker's TLS CA (run scripts/services)");
    pem.extend(
        std::fs::read("/etc/ssl/certs/ssl-cert-snakeoil.pem").expect("PostgreSQL's certificate"),
    );
    std::fs::write(&path, pem).unwrap();
    path
}

fn end_to_end(
    sessions: i64,
    heartbeats: i64,
    prefetch: u16,
    batch: usize,
    tls: bool,
    samples: bool,
) -> Throughput {
    let db = ScratchDb::new("mmbench");
    let vhost = ScratchVhost::new("mmbench");
    seed(&db);
    let external = external_listener(&vhost);
    let child = Child::spawn(&db, &vhost, prefetch, batch, tls);
    let msgs = mix(sessions, heartbeats, samples);
    let events = msgs.len();
    // running + stopped per session, plus one host.online per host revived by a heartbeat.
    let expected = 2 * sessions as usize + heartbeats.min(HOSTS) as usize;
    let started = Instant::now();
    let publisher = publish(&vhost, msgs, None);
    for _ in 0..expected {
        external
            .recv_timeout(Duration::from_secs(120))
            .expect("external events keep coming");
    }
    let elapsed = started.elapsed();
    let rss = child.rss_kib();
    let metrics = child.get("/metrics");
    let batches = metrics
        .lines()
        .find(|l| l.starts_with("manman_processor_batch_seconds_count"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    Throughput {
        events,
        batches,
        publish_rate: publisher.join().unwrap(),
        rate: events as f64 / elapsed.as_secs_f64(),
        rss,
    }
}

fn latency_at(rate: f64, seconds: f64) -> (f64, f64, usize) {
    let db = ScratchDb::new("mmbench");
    let vhost = ScratchVhost::new("mmbench");
    seed(&db);
    let external = external_listener(&vhost);
    let _child = Child::spawn(&db, &vhost, 500, 200, false);
    let total = (rate * seconds) as i64;
    let sessions = total * 4 / 5 / 4; // 80 % session transitions, 20 % heartbeats
    let msgs = mix(sessions, total - sessions * 4, false);
    let expected = 2 * sessions as usize + (total - sessions * 4).min(HOSTS) as usize;
    let publisher = publish(&vhost, msgs, Some(rate));
    let mut latencies: Vec<i64> = (0..expected)
        .map(|_| {
            let (arrived, body) = external.recv_timeout(Duration::from_secs(60)).unwrap();
            arrived - body["sent_us"].as_i64().unwrap_or(arrived)
        })
        .collect();
    publisher.join().unwrap();
    latencies.sort_unstable();
    (
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        latencies.len(),
    )
}

fn main() {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("manman-processor benchmark — {cores} cores, {HOSTS} hosts, {SESSIONS} sessions");

    let broker = raw_broker_rate(50_000);
    println!("raw broker publish→consume→ack:      {broker:>9.0} msg/s");
    let pg = raw_pg_update_rate(20_000);
    println!("raw PostgreSQL single-row UPDATE:    {pg:>9.0} rows/s");
    let slower = broker.min(pg);

    let base = end_to_end(2_500, 15_000, 1, 1, false, false);
    println!(
        "seed baseline (QoS=1, one at a time): {:>9.0} events/s  ({} events)",
        base.rate, base.events
    );

    let run = end_to_end(SESSIONS, 60_000, 500, 200, false, false);
    println!(
        "processor end to end:                 {:>9.0} events/s  ({} events; publisher offered {:.0}/s)",
        run.rate, run.events, run.publish_rate
    );
    println!(
        "  mean batch {:.0} events; {:.1}× the baseline; {:.0} % of the slower raw rate",
        run.events as f64 / run.batches,
        run.rate / base.rate,
        100.0 * run.rate / slower
    );
    println!(
        "processor RSS:                        {:>9.1} MiB now, {:.1} MiB peak",
        run.rss.0 as f64 / 1024.0,
        run.rss.1 as f64 / 1024.0
    );

    let sampled = end_to_end(SESSIONS, 60_000, 500, 200, false, true);
    println!(
        "  with 10 session samples per heartbeat: {:>5.0} events/s  ({:.0} % of the run without)",
        sampled.rate,
        100.0 * sampled.rate / run.rate
    );

    let tls = end_to_end(SESSIONS, 60_000, 500, 200, true, false);
    println!(
        "processor end to end over TLS:        {:>9.0} events/s  ({:.0} % of the plaintext run; amqps + sslmode=require)",
        tls.rate,
        100.0 * tls.rate / run.rate
    );

    let (p50, p99, n) = latency_at(1_000.0, 10.0);
    println!("latency at 1,000 events/s offered:    p50 {p50:.2} ms, p99 {p99:.2} ms  ({n} external events)");
}
