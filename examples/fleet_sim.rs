//! Fleet simulator and benchmark (`scripts/bench-fleet`): N simulated hosts × 10 sessions,
//! played through the real broker against the real processor, log processor and status API
//! (release binaries, child processes, so each one's CPU is its own), plus the API and one
//! real agent in this process for start → running under that load.
//!
//! A simulated host does what an agent does on the wire: a heartbeat every
//! `FLEET_HEARTBEAT_SECONDS` (5) with a sample for each of its sessions and its capacity, and
//! console batches at `FLEET_LINES_PER_SESSION_MINUTE` (2) per session (an idle server's
//! chatter; each line its own message, as an agent flushes a quiet console). Hosts are spread evenly
//! over the period, as agents that started at different times are. Per fleet size it reports:
//! processor CPU (and its PostgreSQL backends') per host per heartbeat, the events/s offered
//! and the processor's headroom, rows and WAL bytes written per host per day, API start →
//! running p50/p99, status API list p50/p99, log processor CPU, and whether anything fell
//! behind (queue depth, stale hosts).
//!
//! `FLEET_HOSTS` (1000,5000,10000), `FLEET_SESSIONS` (10), `FLEET_SECONDS` (60: the measured
//! window), `FLEET_STARTS` (100).

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use manman::api::{self, ApiConfig};
use manman::bus::{ConfirmedPublisher, OutgoingMessage};
use manman::host::{self, HostConfig};
use manman::lifecycle::Supervisor;
use manman::proto::v1 as pb;
use manman::testkit::{
    cpu_seconds, free_port, http_get, percentile, sibling_binary, unique_name, wait_for, ScratchDb,
    ScratchVhost,
};
use manman::wire::{self, ConsoleBatch, ConsoleLine};
use serde_json::json;

struct Settings {
    fleets: Vec<i64>,
    sessions: i64,
    heartbeat: Duration,
    window: Duration,
    lines_per_session_minute: f64,
    starts: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            fleets: std::env::var("FLEET_HOSTS")
                .unwrap_or_else(|_| "1000,5000,10000".into())
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect(),
            sessions: env_or("FLEET_SESSIONS", 10),
            heartbeat: Duration::from_secs(env_or("FLEET_HEARTBEAT_SECONDS", 5)),
            window: Duration::from_secs(env_or("FLEET_SECONDS", 60)),
            lines_per_session_minute: env_or("FLEET_LINES_PER_SESSION_MINUTE", 2.0),
            starts: env_or("FLEET_STARTS", 100),
        }
    }
}

/// A child process ended by its pid on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(binary: &str, env: &[(&str, String)]) -> Daemon {
    Daemon(
        Command::new(sibling_binary(binary))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("LOG_LEVEL", "warn")
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e}")),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Hosts 1..=n online, `sessions` deployments each, one running session per deployment:
/// session k is deployment k, on host (k - 1) / sessions + 1.
fn seed(db: &ScratchDb, n: i64, sessions: i64) {
    db.client()
        .batch_execute(&format!(
            "INSERT INTO servers (name, status, last_seen)
                  SELECT 'sim-' || g, 'online', now() FROM generate_series(1, {n}) g;
             INSERT INTO games (name) VALUES ('sim');
             INSERT INTO game_configs (game_id, name, command)
                  SELECT 1, 'sim-' || g, '/bin/true' FROM generate_series(1, {sessions}) g;
             INSERT INTO server_game_configs (server_id, game_config_id)
                  SELECT s, c FROM generate_series(1, {n}) s, generate_series(1, {sessions}) c
                  ORDER BY s, c;
             INSERT INTO sessions (sgc_id, status, started_at)
                  SELECT sgc_id, 'running', now() FROM server_game_configs ORDER BY sgc_id;
             ANALYZE;"
        ))
        .expect("seed");
}

/// What one simulated host sends each heartbeat.
fn heartbeat(host: i64, sessions: i64, beat: u64) -> OutgoingMessage {
    let first = (host - 1) * sessions + 1;
    let samples: Vec<_> = (first..first + sessions)
        .map(|s| {
            json!({
                "session_id": s,
                "cpu_percent": 3.0 + (s % 7) as f64,
                "rss_bytes": 400_000_000 + (s % 13) * 1_000_000 + (beat % 5) as i64 * 4096,
                "threads": 30,
                "open_files": 64,
                "processes": 1,
                "memory_peak_bytes": 500_000_000,
                "disk_bytes": 2_000_000_000i64,
            })
        })
        .collect();
    OutgoingMessage::json(
        wire::routing::MANMAN_EXCHANGE,
        &wire::routing::host_health(host),
        &json!({
            "server_id": host,
            "sent_at_ms": now_ms(),
            "session_stats": {"total": sessions, "running": sessions},
            "sessions": samples,
            "capacity": {
                "memory_total_bytes": 64u64 << 30,
                "memory_available_bytes": 40u64 << 30,
                "port_range_low": 20000,
                "port_range_high": 30000,
            },
        }),
    )
    .with_message_id(format!("sim-{host}-{beat}"))
}

fn console(session: i64, lines: u64, seq: &mut u64) -> OutgoingMessage {
    let batch = ConsoleBatch {
        session_id: session,
        lines: (0..lines)
            .map(|_| {
                *seq += 1;
                ConsoleLine {
                    seq: *seq,
                    timestamp: now_ms(),
                    source: "stdout".into(),
                    message: format!("[Server thread/INFO]: simulated line {seq}"),
                    dropped: 0,
                }
            })
            .collect(),
    };
    OutgoingMessage::raw(
        wire::routing::MANMAN_EXCHANGE,
        &wire::routing::session_logs(session),
        batch.encode(),
    )
    .transient()
}

#[derive(Default)]
struct SimCounters {
    heartbeats: AtomicU64,
    lines: AtomicU64,
    /// The most a heartbeat went out after its time (the simulator keeping up).
    worst_late_ms: AtomicU64,
}

/// Plays hosts `first, first + stride, …` until `stop`.
fn play_hosts(
    url: String,
    hosts: Vec<i64>,
    s: (i64, Duration, f64),
    counters: Arc<SimCounters>,
    stop: Arc<AtomicBool>,
) {
    let (sessions, period, lines_per_minute) = s;
    let mut conn = manman::bus::connection::open(&url).unwrap();
    let mut publisher = ConfirmedPublisher::new(conn.open_channel(None).unwrap()).unwrap();
    let start = Instant::now();
    let n = hosts.len().max(1) as u32;
    // Host i beats at i/n of the period, then every period.
    let mut due: Vec<Duration> = (0..n).map(|i| period * i / n).collect();
    let mut beats = vec![0u64; hosts.len()];
    let mut seqs = vec![0u64; hosts.len() * sessions as usize];
    let lines_per_beat = lines_per_minute * period.as_secs_f64() / 60.0;
    let mut owed = vec![0.0f64; hosts.len()];
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        let mut batch = Vec::new();
        for (i, &host) in hosts.iter().enumerate() {
            if due[i] > now {
                continue;
            }
            let late = (now - due[i]).as_millis() as u64;
            counters.worst_late_ms.fetch_max(late, Ordering::Relaxed);
            due[i] += period;
            beats[i] += 1;
            batch.push(heartbeat(host, sessions, beats[i]));
            counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            owed[i] += lines_per_beat;
            let whole = owed[i].floor() as u64;
            owed[i] -= whole as f64;
            if whole > 0 {
                for k in 0..sessions {
                    let session = (host - 1) * sessions + 1 + k;
                    let seq = &mut seqs[i * sessions as usize + k as usize];
                    batch.push(console(session, whole, seq));
                    counters.lines.fetch_add(whole, Ordering::Relaxed);
                }
            }
            if batch.len() >= 200 {
                publisher
                    .publish_all(&batch, Duration::from_secs(30))
                    .expect("the broker confirms");
                batch.clear();
            }
        }
        if !batch.is_empty() {
            publisher
                .publish_all(&batch, Duration::from_secs(30))
                .expect("the broker confirms");
        }
        std::thread::sleep(Duration::from_millis(20)); // the simulator's tick
    }
    let _ = conn.close();
}

/// CPU seconds of the database's backends serving `db` (its connections' processes).
fn backends_cpu(admin: &mut postgres::Client, db: &str) -> f64 {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| cpu_seconds(r.get::<_, i32>(0) as u32))
        .sum()
}

/// (rows inserted + updated + deleted, transactions) in `db`, and the cluster's WAL bytes.
fn writes(admin: &mut postgres::Client, db: &str) -> (i64, i64, f64) {
    let r = admin
        .query_one(
            "SELECT (tup_inserted + tup_updated + tup_deleted)::int8, xact_commit::int8,
                    (SELECT wal_bytes::float8 FROM pg_stat_wal)
               FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The API and one real agent in this process: start → running under the fleet's load.
struct RealHost {
    _sups: Vec<Supervisor>,
    client: pb::ManManApiClient,
    token: String,
    sgc: i64,
}

fn real_host(db: &ScratchDb, vhost: &ScratchVhost) -> RealHost {
    let mut api_sup = Supervisor::new();
    let a = api::start(
        ApiConfig::embedded(vhost.url(), db.config.clone()),
        &mut api_sup,
    )
    .unwrap();
    let endpoint = manman::grpc::Endpoint {
        address: format!("127.0.0.1:{}", a.port),
        tls_ca: None,
    };
    let (_, token) =
        api::create_token(&mut db.client(), "fleet", manman::auth::Role::Admin, 0).unwrap();
    let opt = || manman::grpc::call_option(Some(&token), Duration::from_secs(30));
    let client = endpoint.api_client();
    let enrollment = client
        .add_host_opt(
            &pb::AddHostRequest {
                name: "real-host".into(),
                reissue: false,
            },
            opt(),
        )
        .unwrap()
        .enrollment_secret;
    let mut host_sup = Supervisor::new();
    let h = host::start(
        HostConfig {
            rabbitmq_url: vhost.url(),
            api: endpoint,
            server_name: "real-host".into(),
            enrollment_secret: Some(enrollment),
            data_dir: std::env::temp_dir().join(unique_name("mmfleet-host")),
            health_addr: "127.0.0.1:0".into(),
            heartbeat: Duration::from_secs(5),
            reconcile_every: Duration::from_secs(30),
            keeper: Some(sibling_binary("manman-keeper")),
            stop_sessions_on_shutdown: true,
            console: Default::default(),
            port_range: host::DEFAULT_PORT_RANGE,
            game_users: host::game_users::GameUserPolicy::Dynamic {
                low: host::game_users::DEFAULT_UID_RANGE.0,
                high: host::game_users::DEFAULT_UID_RANGE.1,
            },
            cgroup_subtree: None,
            disk_check_every: Duration::from_secs(60),
        },
        &mut host_sup,
    )
    .unwrap();
    wait_for("the real host", Duration::from_secs(60), || {
        h.commands_connected.load(Ordering::SeqCst).then_some(())
    });
    let game = client
        .create_game_opt(
            &pb::CreateGameRequest {
                name: "real".into(),
            },
            opt(),
        )
        .unwrap()
        .game
        .unwrap();
    let config = client
        .create_game_config_opt(
            &pb::CreateGameConfigRequest {
                config: Some(pb::GameConfig {
                    game_id: game.game_id,
                    name: "sleeper".into(),
                    program: "/bin/sleep".into(),
                    args: vec!["3600".into()],
                    start_duration_ms: Some(0),
                    stop_timeout_seconds: Some(5),
                    ..Default::default()
                }),
            },
            opt(),
        )
        .unwrap()
        .config
        .unwrap();
    let sgc = client
        .deploy_game_config_opt(
            &pb::DeployGameConfigRequest {
                server_id: h.server_id,
                config_id: config.config_id,
                ports: vec![],
            },
            opt(),
        )
        .unwrap()
        .deployment
        .unwrap()
        .sgc_id;
    RealHost {
        _sups: vec![host_sup, api_sup],
        client,
        token,
        sgc,
    }
}

fn wait_status(db: &mut postgres::Client, session: i64, want: &str) {
    wait_for(
        &format!("session {session} {want}"),
        Duration::from_secs(60),
        || {
            let s: String = db
                .query_one(
                    "SELECT status FROM sessions WHERE session_id = $1",
                    &[&session],
                )
                .unwrap()
                .get(0);
            (s == want).then_some(())
        },
    );
}

/// `starts` sequential start → running (each stopped before the next), in milliseconds.
fn start_to_running(real: &RealHost, db: &ScratchDb, starts: usize) -> Vec<f64> {
    let opt = || manman::grpc::call_option(Some(&real.token), Duration::from_secs(30));
    let mut conn = db.client();
    let mut times = Vec::new();
    for _ in 0..starts {
        let t0 = Instant::now();
        let session = real
            .client
            .start_session_opt(
                &pb::StartSessionRequest {
                    sgc_id: real.sgc,
                    force: false,
                },
                opt(),
            )
            .unwrap()
            .session
            .unwrap()
            .session_id;
        wait_status(&mut conn, session, "running");
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        real.client
            .stop_session_opt(
                &pb::StopSessionRequest {
                    session_id: session,
                    kill: true,
                    force: false,
                },
                opt(),
            )
            .unwrap();
        wait_status(&mut conn, session, "stopped");
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times
}

/// Status API list latencies (ms, sorted) until `stop`: hosts and active sessions, 50 a page.
fn probe_status(port: u16, stop: Arc<AtomicBool>) -> Vec<f64> {
    let mut times = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let path = if i.is_multiple_of(2) {
            "/status/workers?limit=50".to_string()
        } else {
            "/status/servers/active?limit=50".to_string()
        };
        let t0 = Instant::now();
        let response = http_get(port, &path);
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        i += 1;
        std::thread::sleep(Duration::from_millis(50)); // a dashboard's pace, not a flood
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times
}

fn run(n: i64, s: &Settings) {
    println!(
        "\n== {n} hosts × {} sessions, heartbeat every {:?}, {} console lines per session a minute",
        s.sessions, s.heartbeat, s.lines_per_session_minute
    );
    let db = ScratchDb::new("mmfleet");
    let vhost = ScratchVhost::new("mmfleet");
    seed(&db, n, s.sessions);
    let (processor_health, logs_health, status_port) = (free_port(), free_port(), free_port());
    let common = |health: u16| {
        vec![
            ("RABBITMQ_URL", vhost.url()),
            ("DATABASE_URL", db.url()),
            ("HEALTH_PORT", health.to_string()),
        ]
    };
    let mut env = common(processor_health);
    // Stale checks as in production; the threshold covers a heartbeat period and some.
    env.push(("STALE_HOST_THRESHOLD_SECONDS", "30".into()));
    let processor = spawn("manman-processor", &env);
    let mut env = common(logs_health);
    env.push(("GRPC_PORT", free_port().to_string()));
    let logs = spawn("manman-log-processor", &env);
    let mut env = common(free_port());
    env.push(("STATUS_PORT", status_port.to_string()));
    let status = spawn("manman-status-api", &env);
    for port in [processor_health, logs_health, status_port] {
        wait_for("a daemon ready", Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }
    wait_for("the processor ready", Duration::from_secs(60), || {
        http_get(processor_health, "/readyz")
            .starts_with("HTTP/1.1 200")
            .then_some(())
    });
    let real = real_host(&db, &vhost);

    let counters = Arc::new(SimCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let players: Vec<_> = (0..2i64)
        .map(|t| {
            let hosts: Vec<i64> = (1..=n).filter(|h| h % 2 == t).collect();
            let (url, counters, stop) = (vhost.url(), counters.clone(), stop.clone());
            let shape = (s.sessions, s.heartbeat, s.lines_per_session_minute);
            std::thread::spawn(move || play_hosts(url, hosts, shape, counters, stop))
        })
        .collect();
    // Warm-up: every host has beaten twice.
    std::thread::sleep(s.heartbeat * 2 + Duration::from_secs(2));

    let mut admin = db.config.connect(postgres::NoTls).unwrap();
    let cpu = |d: &Daemon| cpu_seconds(d.0.id());
    let before = (
        cpu(&processor),
        cpu(&logs),
        cpu(&status),
        backends_cpu(&mut admin, &db.name),
        writes(&mut admin, &db.name),
        counters.heartbeats.load(Ordering::Relaxed),
        counters.lines.load(Ordering::Relaxed),
        metric(processor_health, "manman_processor_events_total"),
    );
    let t0 = Instant::now();
    let probe_stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = probe_stop.clone();
        std::thread::spawn(move || probe_status(status_port, stop))
    };
    let starts = start_to_running(&real, &db, s.starts);
    let rest = s.window.saturating_sub(t0.elapsed());
    std::thread::sleep(rest);
    probe_stop.store(true, Ordering::Relaxed);
    let listed = prober.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let after = (
        cpu(&processor),
        cpu(&logs),
        cpu(&status),
        backends_cpu(&mut admin, &db.name),
        writes(&mut admin, &db.name),
        counters.heartbeats.load(Ordering::Relaxed),
        counters.lines.load(Ordering::Relaxed),
        metric(processor_health, "manman_processor_events_total"),
    );
    stop.store(true, Ordering::Relaxed);
    for p in players {
        p.join().unwrap();
    }
    let depth = {
        let mut conn = vhost.connect();
        let ch = conn.open_channel(None).unwrap();
        let d = ch
            .queue_declare_passive("processor-events")
            .ok()
            .and_then(|q| q.declared_message_count())
            .unwrap_or(0);
        let _ = conn.close();
        d
    };
    let stale: i64 = admin
        .query_one(
            "SELECT count(*) FROM servers WHERE status <> 'online' AND name LIKE 'sim-%'",
            &[],
        )
        .unwrap()
        .get(0);

    let beats = (after.5 - before.5) as f64;
    let lines = (after.6 - before.6) as f64;
    let events = after.7 - before.7;
    let processor_cpu = after.0 - before.0;
    let backends = after.3 - before.3;
    let (rows, xacts, wal) = (
        (after.4 .0 - before.4 .0) as f64,
        after.4 .1 - before.4 .1,
        after.4 .2 - before.4 .2,
    );
    let per_host_day = 86_400.0 / secs / n as f64;
    println!(
        "offered: {:.0} heartbeats/s ({:.0} events/s applied), {:.0} console lines/s, in {secs:.0} s; simulator worst lateness {} ms",
        beats / secs,
        events / secs,
        lines / secs,
        counters.worst_late_ms.load(Ordering::Relaxed)
    );
    println!(
        "processor: {:.1} % of a core ({:.1} µs per host heartbeat); its PostgreSQL backends {:.1} % of a core; {} transactions/s",
        processor_cpu / secs * 100.0,
        processor_cpu / beats * 1e6,
        backends / secs * 100.0,
        xacts / secs as i64,
    );
    println!(
        "headroom: the processor alone could apply about {:.0} heartbeats/s ({:.0} hosts at this period) before a core is busy; backlog at the end {depth} messages, {stale} hosts not online",
        beats / processor_cpu.max(1e-9),
        beats / processor_cpu.max(1e-9) * s.heartbeat.as_secs_f64(),
    );
    println!(
        "database: {:.0} rows and {:.1} MiB of WAL per host per day ({:.0} rows/s, {:.2} MiB/s of WAL, whole cluster)",
        rows * per_host_day,
        wal * per_host_day / 1_048_576.0,
        rows / secs,
        wal / secs / 1_048_576.0
    );
    println!(
        "log processor: {:.1} % of a core; status API: {:.1} % of a core",
        (after.1 - before.1) / secs * 100.0,
        (after.2 - before.2) / secs * 100.0
    );
    println!(
        "API start → running ({} starts on a real agent): p50 {:.1} ms, p99 {:.1} ms",
        starts.len(),
        percentile(&starts, 0.5),
        percentile(&starts, 0.99)
    );
    println!(
        "status API lists ({} requests, 50 a page): p50 {:.1} ms, p99 {:.1} ms (goal < 50 ms)",
        listed.len(),
        percentile(&listed, 0.5),
        percentile(&listed, 0.99)
    );
}

fn main() {
    let s = Settings::from_env();
    for &n in &s.fleets {
        run(n, &s);
    }
}
