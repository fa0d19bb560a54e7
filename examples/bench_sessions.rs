//! Benchmark for issue 4 (`scripts/bench-sessions`): session start → `running` in the database,
//! through the whole stack (API → command → host agent → process → status → processor → DB),
//! in-process daemons on a scratch database and vhost, start duration 0.
//! 1. 100 sequential starts (each stopped before the next): p50/p99 of start → running and
//!    of stop → stopped (the game's exit, the keeper's release, the report).
//! 2. 100 sessions started concurrently on one host: time until all run, p50/p99 each.
//! 3. With keepers (the default; `BENCH_KEEPER=none` runs games as the agent's children): the
//!    memory of a keeper (RSS and PSS), then the agent stopped without stopping its games and
//!    started again: time until all 100 are re-attached, and one keeper's attach p50/max.
//!
//! Every call carries a token (an admin's; the host its own credential), and gRPC is served
//! over TLS with a throwaway CA (`BENCH_TLS=0` for plaintext).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use manman::api::{self, ApiConfig};
use manman::db::PoolSettings;
use manman::host::{self, HostConfig};
use manman::lifecycle::Supervisor;
use manman::processor::{self, ProcessorConfig};
use manman::proto::v1 as pb;
use manman::testkit::{percentile, unique_name, wait_for, ScratchDb, ScratchVhost};

fn wait_running(db: &mut postgres::Client, session: i64) {
    wait_status(db, session, "running")
}

/// Polls every 0.5 ms until the session has `want` in the database.
fn wait_status(db: &mut postgres::Client, session: i64, want: &str) {
    loop {
        let s: String = db
            .query_one(
                "SELECT status FROM sessions WHERE session_id = $1",
                &[&session],
            )
            .unwrap()
            .get(0);
        if s == want {
            return;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// p50 of starting `program` and waiting for its exit, over 200 runs.
fn exec_p50_ms(program: &std::path::Path) -> f64 {
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            std::process::Command::new(program)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(&times, 0.5)
}

fn main() {
    // What one keeper costs to exec (it prints its usage and exits) against the smallest
    // program there is.
    let keeper = manman::testkit::sibling_binary("manman-keeper");
    let (keeper_exec, true_exec) = (exec_p50_ms(&keeper), exec_p50_ms("/bin/true".as_ref()));
    println!(
        "exec and exit, p50 of 200: manman-keeper {keeper_exec:.2} ms, /bin/true {true_exec:.2} ms \
         ({:+.2} ms)",
        keeper_exec - true_exec
    );
    let db = ScratchDb::new("mmbench");
    let vhost = ScratchVhost::new("mmbench");
    let mut sups = Vec::new();

    let mut sup = Supervisor::new();
    let p = processor::start(
        ProcessorConfig::embedded(vhost.url(), db.config.clone()),
        &mut sup,
    )
    .unwrap();
    wait_for("processor", Duration::from_secs(30), || {
        p.consumer_connected.load(Ordering::SeqCst).then_some(())
    });
    sups.push(sup);
    let tls_dir = std::env::temp_dir().join(unique_name("mmbench-tls"));
    let tls = std::env::var("BENCH_TLS").as_deref() != Ok("0");
    if tls {
        manman::testkit::make_test_ca(&tls_dir);
    }
    let server_tls = tls.then(|| manman::grpc::ServerTls {
        cert_pem: std::fs::read(tls_dir.join("server.pem")).unwrap(),
        key_pem: std::fs::read(tls_dir.join("server.key")).unwrap(),
    });
    println!(
        "gRPC: {}; every call authenticated",
        if tls {
            "TLS"
        } else {
            "plaintext (BENCH_TLS=0)"
        }
    );
    let mut sup = Supervisor::new();
    let a = api::start(
        ApiConfig {
            rabbitmq_url: vhost.url(),
            database: db.config.clone(),
            listen: "127.0.0.1:0".into(),
            tls: server_tls,
            health_addr: "127.0.0.1:0".into(),
            command_timeout: Duration::from_secs(10),
            threads: 4,
            pool: PoolSettings {
                max_size: 16,
                ..PoolSettings::default()
            },
            archive: None,
            backups: Default::default(),
            ..ApiConfig::embedded(vhost.url(), db.config.clone())
        },
        &mut sup,
    )
    .unwrap();
    sups.push(sup);
    let address = format!("127.0.0.1:{}", a.port);
    let endpoint = manman::grpc::Endpoint {
        address: address.clone(),
        tls_ca: tls.then(|| std::fs::read(tls_dir.join("ca.pem")).unwrap()),
    };
    // The first admin token (as `manman token create --bootstrap`) and the host's enrollment.
    let (_, admin) = api::create_token(
        &mut db.config.connect(postgres::NoTls).unwrap(),
        "bench-admin",
        manman::auth::Role::Admin,
        0,
    )
    .unwrap();
    let opt = || manman::grpc::call_option(Some(&admin), Duration::from_secs(30));
    let enrollment = endpoint
        .api_client()
        .add_host_opt(
            &pb::AddHostRequest {
                name: "bench-host".into(),
                reissue: false,
            },
            opt(),
        )
        .unwrap()
        .enrollment_secret;
    let data_dir = std::env::temp_dir().join(unique_name("mmbench-host"));
    let mut sup = Supervisor::new();
    let host_config = HostConfig {
        rabbitmq_url: vhost.url(),
        api: endpoint.clone(),
        server_name: "bench-host".into(),
        enrollment_secret: Some(enrollment),
        data_dir: data_dir.clone(),
        health_addr: "127.0.0.1:0".into(),
        heartbeat: Duration::from_secs(5),
        reconcile_every: Duration::from_secs(30),
        // BENCH_KEEPER=none measures games as the agent's own children.
        keeper: match std::env::var("BENCH_KEEPER").as_deref() {
            Ok("none") => None,
            _ => Some(manman::testkit::sibling_binary("manman-keeper")),
        },
        // Phase 3 leaves the games running across an agent restart.
        stop_sessions_on_shutdown: false,
        console: Default::default(),
        port_range: host::DEFAULT_PORT_RANGE,
        game_users: host::game_users::GameUserPolicy::Dynamic {
            low: host::game_users::DEFAULT_UID_RANGE.0,
            high: host::game_users::DEFAULT_UID_RANGE.1,
        },
        // BENCH_CGROUP=off measures games without a cgroup each.
        cgroup_subtree: match std::env::var("BENCH_CGROUP").as_deref() {
            Ok("off") => None,
            _ => Some(unique_name("mmbench-sessions").replace('_', "-")),
        },
        disk_check_every: Duration::from_secs(60),
    };
    let h = host::start(host_config.clone(), &mut sup).unwrap();
    wait_for("host", Duration::from_secs(30), || {
        h.commands_connected.load(Ordering::SeqCst).then_some(())
    });
    sups.push(sup);

    let client = endpoint.api_client();
    let game = client
        .create_game_opt(
            &pb::CreateGameRequest {
                name: "bench".into(),
            },
            opt(),
        )
        .unwrap()
        .game
        .unwrap();
    let deploy = |i: i32| -> i64 {
        let config = client
            .create_game_config_opt(
                &pb::CreateGameConfigRequest {
                    config: Some(pb::GameConfig {
                        game_id: game.game_id,
                        name: format!("cfg-{i}"),
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
        client
            .deploy_game_config_opt(
                &pb::DeployGameConfigRequest {
                    server_id: h.server_id,
                    config_id: config.config_id,
                    ports: vec![pb::PortBinding {
                        container_port: 20000 + i,
                        host_port: 20000 + i,
                        protocol: "tcp".into(),
                    }],
                },
                opt(),
            )
            .unwrap()
            .deployment
            .unwrap()
            .sgc_id
    };

    // 1. Sequential starts.
    let sgc = deploy(0);
    let mut conn = db.client();
    let mut times = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..100 {
        let t0 = Instant::now();
        let s = client
            .start_session_opt(
                &pb::StartSessionRequest {
                    sgc_id: sgc,
                    force: false,
                },
                opt(),
            )
            .unwrap()
            .session
            .unwrap();
        wait_running(&mut conn, s.session_id);
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        let t1 = Instant::now();
        client
            .stop_session_opt(
                &pb::StopSessionRequest {
                    session_id: s.session_id,
                    kill: true,
                    force: false,
                },
                opt(),
            )
            .unwrap();
        wait_status(&mut conn, s.session_id, "stopped");
        stops.push(t1.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "session start → running in DB, 100 sequential: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    stops.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "session stop (kill) → stopped in DB, 100 sequential: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&stops, 0.5),
        percentile(&stops, 0.99)
    );

    // 2. 100 concurrent sessions on one host.
    let sgcs: Vec<i64> = (1..=100).map(deploy).collect();
    let t0 = Instant::now();
    let mut each: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = sgcs
            .chunks(10)
            .map(|chunk| {
                let client = &client;
                let db = &db;
                scope.spawn(move || {
                    let mut conn = db.client();
                    chunk
                        .iter()
                        .map(|sgc| {
                            let t = Instant::now();
                            let s = client
                                .start_session_opt(
                                    &pb::StartSessionRequest {
                                        sgc_id: *sgc,
                                        force: false,
                                    },
                                    opt(),
                                )
                                .unwrap()
                                .session
                                .unwrap();
                            wait_running(&mut conn, s.session_id);
                            t.elapsed().as_secs_f64() * 1000.0
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let all = t0.elapsed();
    each.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "100 concurrent sessions on one host: all running after {:.0} ms; each p50 {:.1} ms, p99 {:.1} ms",
        all.as_secs_f64() * 1000.0,
        percentile(&each, 0.5),
        percentile(&each, 0.99)
    );
    if std::env::var("BENCH_KEEPER").as_deref() != Ok("none") {
        keepers(&data_dir, &mut sups, &host_config, &db);
    }
    let live = client
        .list_sessions_opt(
            &pb::ListSessionsRequest {
                live_only: true,
                limit: 500,
                ..Default::default()
            },
            opt(),
        )
        .unwrap();
    for s in live.sessions {
        let _ = client.stop_session_opt(
            &pb::StopSessionRequest {
                session_id: s.session_id,
                kill: true,
                force: false,
            },
            opt(),
        );
    }
    wait_for("all stopped", Duration::from_secs(60), || {
        let n: i64 = conn
            .query_one(
                "SELECT count(*) FROM sessions WHERE status NOT IN ('stopped','crashed','lost')",
                &[],
            )
            .unwrap()
            .get(0);
        (n == 0).then_some(())
    });
    for s in sups.into_iter().rev() {
        s.stop_handle().stop();
        s.run(Duration::from_secs(30));
    }
    let _ = std::fs::remove_dir_all(data_dir);
    let _ = std::fs::remove_dir_all(&tls_dir);
}

/// The keepers under `data_dir`: pid → its directory.
fn keeper_pids(data_dir: &std::path::Path) -> Vec<u32> {
    let needle = data_dir.join("keepers").display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Phase 3: keeper memory, and re-attaching to 100 running games after an agent restart.
fn keepers(
    data_dir: &std::path::Path,
    sups: &mut Vec<Supervisor>,
    host_config: &HostConfig,
    db: &ScratchDb,
) {
    let pids = keeper_pids(data_dir);
    let rss: Vec<u64> = pids
        .iter()
        .map(|p| manman::testkit::rss_kib(*p).0)
        .collect();
    let pss: Vec<u64> = pids.iter().map(|p| pss_kib(*p)).collect();
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    println!(
        "keepers: {} running; RSS mean {:.0} KiB (max {}), PSS mean {:.0} KiB (the shared binary counted once)",
        pids.len(),
        mean(&rss),
        rss.iter().max().unwrap_or(&0),
        mean(&pss)
    );
    // The agent goes away (its games stay with their keepers)...
    let host_sup = sups.pop().expect("the host's supervisor is the last one");
    host_sup.stop_handle().stop();
    host_sup.run(Duration::from_secs(30));
    // ...one keeper's attach (connect, resume, hello), 100 times...
    let dir = manman::keeper::protocol::KeeperDir(
        std::fs::read_dir(data_dir.join("keepers"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    );
    let mut attach: Vec<f64> = (0..100)
        .map(|_| {
            let t = Instant::now();
            let child = manman::keeper::KeeperChild::attach(dir.clone(), u64::MAX - 1).unwrap();
            let took = t.elapsed().as_secs_f64() * 1000.0;
            drop(child);
            took
        })
        .collect();
    attach.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // ...and a new agent re-attaches to all of them.
    let t0 = Instant::now();
    let mut sup = Supervisor::new();
    let h = host::start(host_config.clone(), &mut sup).unwrap();
    let started = t0.elapsed();
    let mut conn = db.client();
    let running: i64 = conn
        .query_one(
            "SELECT count(*) FROM sessions WHERE status = 'running'",
            &[],
        )
        .unwrap()
        .get(0);
    sups.push(sup);
    let _ = h;
    println!(
        "agent restarted over {} running games: all re-attached when it started, {:.0} ms after \
         the start call (registration included); one attach p50 {:.2} ms, max {:.2} ms; \
         sessions still running: {running}",
        pids.len(),
        started.as_secs_f64() * 1000.0,
        percentile(&attach, 0.5),
        percentile(&attach, 1.0)
    );
}
