//! manman-status-api against a real PostgreSQL filled by the tests (and by the processor):
//! every endpoint, every error code, a database outage and recovery, concurrent clients.

mod support;

use std::time::Duration;

use manman::db::PoolSettings;
use manman::lifecycle::{StopHandle, Supervisor};
use manman::status::{self, StatusConfig};
use serde_json::Value;
use support::*;

struct Api {
    port: u16,
    stop: StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_api(database: postgres::Config) -> Api {
    let config = StatusConfig {
        database,
        listen: "127.0.0.1:0".into(),
        require_token: false,
        allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        workers: 4,
        stale_threshold: Duration::from_secs(10),
        system_cache: Duration::ZERO,
        pool: PoolSettings {
            max_size: 5,
            min_idle: 1,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(1),
        },
    };
    let mut sup = Supervisor::new();
    let running = status::start(config, &mut sup).unwrap();
    let stop = sup.stop_handle();
    let thread = std::thread::spawn(move || {
        sup.run(Duration::from_secs(10));
    });
    Api {
        port: running.port,
        stop,
        thread: Some(thread),
    }
}

/// Hosts: `alpha` online and fresh, `beta` online but silent for an hour (stale), `gamma`
/// offline. Sessions on alpha: running (ports 25565, 25575), crashed an hour ago, stopped;
/// on beta: starting. Returns (alpha, beta, gamma, running session id).
fn fill(c: &mut postgres::Client) -> (i64, i64, i64, i64) {
    let host = |c: &mut postgres::Client, name: &str, status: &str, ago: &str| -> i64 {
        c.query_one(
            &format!(
                "INSERT INTO servers (name, status, last_seen) VALUES ($1, $2, now() - interval '{ago}')
                 RETURNING server_id"
            ),
            &[&name, &status],
        )
        .unwrap()
        .get(0)
    };
    let alpha = host(c, "alpha", "online", "1 second");
    let beta = host(c, "beta", "online", "1 hour");
    let gamma = host(c, "gamma", "offline", "1 day");
    c.batch_execute(
        "INSERT INTO games (name) VALUES ('minecraft');
         INSERT INTO game_configs (game_id, name, command) VALUES (1, 'vanilla', 'java');",
    )
    .unwrap();
    let sgc = |c: &mut postgres::Client, server: i64| -> i64 {
        c.query_one(
            "INSERT INTO server_game_configs (server_id, game_config_id) VALUES ($1, 1) RETURNING sgc_id",
            &[&server],
        )
        .unwrap()
        .get(0)
    };
    let (a, b) = (sgc(c, alpha), sgc(c, beta));
    let session = |c: &mut postgres::Client, sgc: i64, status: &str, extra: &str| -> i64 {
        c.query_one(
            &format!(
                "INSERT INTO sessions (sgc_id, status, started_at, ended_at, exit_code)
                 VALUES ($1, $2, {extra}) RETURNING session_id"
            ),
            &[&sgc, &status],
        )
        .unwrap()
        .get(0)
    };
    let running = session(c, a, "running", "now(), NULL, NULL");
    session(
        c,
        a,
        "crashed",
        "now() - interval '2 hours', now() - interval '1 hour', 137",
    );
    session(
        c,
        a,
        "stopped",
        "now() - interval '3 hours', now() - interval '2 hours', 0",
    );
    session(c, b, "starting", "NULL, NULL, NULL");
    for port in [25575, 25565] {
        c.execute(
            "INSERT INTO server_ports (server_id, port, session_id) VALUES ($1, $2, $3)",
            &[&alpha, &port, &running],
        )
        .unwrap();
    }
    (alpha, beta, gamma, running)
}

#[test]
fn workers_list_and_detail() {
    let db = TestDb::new();
    let (alpha, beta, gamma, running) = fill(&mut db.client());
    let api = start_api(db.config.clone());

    let (code, body) = get_json(api.port, "/status/workers");
    assert_eq!(code, 200);
    assert_eq!(body["count"], 3);
    let by_id = |id: i64| -> Value {
        body["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["server_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(alpha)["is_healthy"], true);
    assert_eq!(by_id(alpha)["live_sessions"], 1);
    assert!(by_id(alpha)["seconds_since_heartbeat"].as_f64().unwrap() < 10.0);
    assert_eq!(by_id(beta)["is_healthy"], false, "stale");
    assert_eq!(by_id(beta)["live_sessions"], 1);
    assert!(by_id(beta)["seconds_since_heartbeat"].as_f64().unwrap() >= 3600.0);
    assert_eq!(by_id(gamma)["status"], "offline");
    assert_eq!(by_id(gamma)["is_healthy"], false);

    let (code, detail) = get_json(api.port, &format!("/status/workers/{alpha}"));
    assert_eq!(code, 200);
    assert_eq!(detail["name"], "alpha");
    let sessions = detail["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "live and recent ended sessions");
    let live = sessions
        .iter()
        .find(|s| s["session_id"] == running)
        .unwrap();
    assert_eq!(live["game"], "minecraft");
    assert_eq!(live["config"], "vanilla");
    assert_eq!(live["status"], "running");
    assert!(live["started_at"].is_string());
    assert_eq!(
        live["ports"],
        serde_json::json!([{"port": 25565, "protocol": "tcp"}, {"port": 25575, "protocol": "tcp"}])
    );
}

#[test]
fn servers_with_filters_and_paging() {
    let db = TestDb::new();
    let (alpha, _, _, running) = fill(&mut db.client());
    let api = start_api(db.config.clone());

    let (_, all) = get_json(api.port, "/status/servers");
    assert_eq!(all["total"], 4);
    assert_eq!(all["limit"], 50);
    let first = &all["servers"][0];
    assert!(first["host"].is_string() && first["game"] == "minecraft");

    let (_, crashed) = get_json(api.port, "/status/servers?status=crashed");
    assert_eq!(crashed["total"], 1);
    assert_eq!(crashed["servers"][0]["exit_code"], 137);
    assert!(crashed["servers"][0]["ended_at"].is_string());

    let (_, two) = get_json(api.port, "/status/servers?status=running,starting");
    assert_eq!(two["total"], 2);
    let (_, by_name) = get_json(api.port, "/status/servers?host=alpha");
    assert_eq!(by_name["total"], 3);
    let (_, by_id) = get_json(
        api.port,
        &format!("/status/servers?host={alpha}&limit=1&offset=1"),
    );
    assert_eq!(by_id["total"], 3);
    assert_eq!(by_id["servers"].as_array().unwrap().len(), 1);

    // The latest heartbeat sample of a session's game, null before the first.
    db.client()
        .execute(
            "INSERT INTO session_samples (session_id, sampled_at, cpu_percent, rss_bytes,
                                          threads, open_files, processes, players_online,
                                          players_max)
             VALUES ($1, now(), 12.5, 536870912, 40, 120, 2, 4, 16)",
            &[&running],
        )
        .unwrap();
    let (_, active) = get_json(api.port, "/status/servers/active");
    let sampled = active["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == running)
        .unwrap();
    assert_eq!(sampled["sample"]["rss_bytes"], 536_870_912);
    assert_eq!(sampled["sample"]["threads"], 40);
    assert_eq!(sampled["sample"]["players_online"], 4);
    assert_eq!(sampled["sample"]["players_max"], 16);
    assert!(sampled["sample"]["sampled_at"].is_string());
    assert!(active["servers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["session_id"] != running && s["sample"].is_null()));
    let statuses: Vec<&str> = active["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(active["total"], 2);
    assert!(statuses.contains(&"running") && statuses.contains(&"starting"));
    assert!(active["servers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["session_id"] == running));
}

#[test]
fn system_summary_follows_the_written_rule() {
    let db = TestDb::new();
    let mut c = db.client();
    let api = start_api(db.config.clone());
    let overall = || get_json(api.port, "/status/system").1["overall"].clone();
    assert_eq!(overall(), "down", "no hosts at all");

    let (alpha, beta, _, _) = fill(&mut c);
    let (code, body) = get_json(api.port, "/status/system");
    assert_eq!(code, 200);
    assert_eq!(body["overall"], "degraded", "beta is stale");
    assert_eq!(body["hosts"]["total"], 3);
    assert_eq!(body["hosts"]["stale"], 1);
    assert_eq!(body["hosts"]["offline"], 1);
    assert_eq!(body["sessions"]["running"], 1);
    assert_eq!(body["sessions"]["crashed"], 1);
    assert_eq!(body["sessions"]["lost"], 0);
    assert!(body["oldest_heartbeat"].is_string());

    c.execute(
        "UPDATE servers SET status = 'offline' WHERE server_id = $1",
        &[&beta],
    )
    .unwrap();
    assert_eq!(overall(), "healthy", "the crash is older than 15 minutes");

    c.execute(
        "UPDATE sessions SET status = 'lost', ended_at = now() WHERE status = 'starting'",
        &[],
    )
    .unwrap();
    assert_eq!(overall(), "degraded", "a session was just lost");

    c.execute(
        "UPDATE servers SET last_seen = now() - interval '1 hour' WHERE server_id = $1",
        &[&alpha],
    )
    .unwrap();
    assert_eq!(overall(), "down", "no host with a fresh heartbeat");
}

#[test]
fn errors_are_json_with_the_right_codes() {
    let db = TestDb::new();
    fill(&mut db.client());
    let api = start_api(db.config.clone());
    for (method, path, code) in [
        ("GET", "/status/workers/abc", 400),
        ("GET", "/status/workers/-3", 400),
        ("GET", "/status/workers/987654", 404),
        ("GET", "/nope", 404),
        ("GET", "/status/servers?limit=0", 400),
        ("GET", "/status/servers?limit=100000", 400),
        ("GET", "/status/servers?status=exploded", 400),
        ("GET", "/status/servers?sort=name", 400),
        ("POST", "/status/workers", 405),
        ("DELETE", "/status/servers", 405),
        ("PUT", "/status/system", 405),
    ] {
        let (status, body) = http_request(api.port, method, path);
        assert_eq!(status, code, "{method} {path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}"
        );
    }
    let (status, body) = http_request(api.port, "HEAD", "/status/workers");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD has no body");
    let (status, metrics) = http_request(api.port, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(metrics
        .contains("manman_status_requests_total{route=\"/status/workers/{id}\",code=\"400\"} 2"));
    assert!(metrics.contains("code=\"405\""));
}

#[test]
fn a_database_outage_answers_503_and_recovers_by_itself() {
    let db = TestDb::new();
    fill(&mut db.client());
    let proxy = proxy::TcpProxy::start("127.0.0.1:5432");
    let mut through = postgres::Config::new();
    through
        .host("127.0.0.1")
        .port(proxy.port)
        .user("postgres")
        .dbname(&db.name);
    let api = start_api(through);
    assert_eq!(get_json(api.port, "/status/workers").0, 200);

    proxy.disable();
    let (code, body) = get_json(api.port, "/status/workers");
    assert_eq!(code, 503);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("database unavailable"));
    assert_eq!(get_json(api.port, "/status/system").0, 503);
    assert_eq!(get_json(api.port, "/readyz").0, 503);
    assert_eq!(
        get_json(api.port, "/healthz").0,
        200,
        "alive while the database is away"
    );

    proxy.enable();
    wait_for("recovery", Duration::from_secs(20), || {
        (get_json(api.port, "/status/workers").0 == 200).then_some(())
    });
    assert_eq!(get_json(api.port, "/status/workers").1["count"], 3);
}

#[test]
fn concurrent_clients_get_consistent_answers() {
    let db = TestDb::new();
    fill(&mut db.client());
    let api = start_api(db.config.clone());
    let port = api.port;
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..40 {
                    let path = [
                        "/status/workers",
                        "/status/servers/active",
                        "/status/system",
                        "/status/servers?host=alpha",
                    ][(t + i) % 4];
                    let (code, body) = get_json(port, path);
                    assert_eq!(code, 200, "{path}");
                    match path {
                        "/status/workers" => assert_eq!(body["count"], 3),
                        "/status/servers/active" => assert_eq!(body["total"], 2),
                        "/status/system" => assert_eq!(body["hosts"]["total"], 3),
                        _ => assert_eq!(body["total"], 3),
                    }
                }
            });
        }
    });
}

#[test]
fn sessions_moved_by_the_processor_show_up() {
    use manman::processor::{self, ProcessorConfig};
    let db = TestDb::new();
    let vhost = TestVhost::new();
    let (alpha, _, _, _) = fill(&mut db.client());
    let mut c = db.client();
    let sgc: i64 = c
        .query_one(
            "SELECT sgc_id FROM server_game_configs WHERE server_id = $1",
            &[&alpha],
        )
        .unwrap()
        .get(0);
    let session: i64 = c
        .query_one(
            "INSERT INTO sessions (sgc_id) VALUES ($1) RETURNING session_id",
            &[&sgc],
        )
        .unwrap()
        .get(0);

    let mut sup = Supervisor::new();
    let running = processor::start(
        ProcessorConfig::embedded(vhost.url(), db.config.clone()),
        &mut sup,
    )
    .unwrap();
    let stop = sup.stop_handle();
    let processor_thread = std::thread::spawn(move || sup.run(Duration::from_secs(10)));
    wait_for("processor connected", Duration::from_secs(20), || {
        running
            .consumer_connected
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(())
    });
    let api = start_api(db.config.clone());
    let publisher = TestPublisher::new(&vhost);
    for status in ["starting", "running"] {
        publisher.publish_json(
            &format!("status.session.{session}"),
            serde_json::json!({"session_id": session, "status": status}),
        );
    }
    let found = wait_for(
        "session running in the status API",
        Duration::from_secs(20),
        || {
            let (_, active) = get_json(api.port, "/status/servers/active?host=alpha");
            active["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["session_id"] == session && s["status"] == "running")
                .cloned()
        },
    );
    assert!(found["started_at"].is_string());
    stop.stop();
    processor_thread.join().unwrap();
}

#[test]
fn cursors_page_through_hosts_and_sessions_every_row_exactly_once() {
    let db = TestDb::new();
    let mut c = db.client();
    // 23 hosts with a deployment each, and 57 sessions on them, some live.
    c.batch_execute(
        "INSERT INTO servers (name, status, last_seen)
              SELECT 'paged-' || i, 'online', now() FROM generate_series(1, 23) i;
         INSERT INTO games (name) VALUES ('paged');
         INSERT INTO game_configs (game_id, name, command)
              SELECT game_id, 'default', '/bin/true' FROM games WHERE name = 'paged';
         INSERT INTO server_game_configs (server_id, game_config_id)
              SELECT s.server_id, gc.config_id FROM servers s, game_configs gc;
         INSERT INTO sessions (sgc_id, status)
              SELECT (SELECT min(sgc_id) FROM server_game_configs) + i % 23,
                     CASE WHEN i % 3 = 0 THEN 'running' ELSE 'stopped' END
                FROM generate_series(1, 57) i;",
    )
    .unwrap();
    let api = start_api(db.config.clone());

    let mut hosts = Vec::new();
    let mut path = "/status/workers?limit=10".to_string();
    loop {
        let (code, body) = get_json(api.port, &path);
        assert_eq!(code, 200, "{body}");
        hosts.extend(
            body["workers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["server_id"].as_i64().unwrap()),
        );
        match body["next_after"].as_i64() {
            Some(after) => path = format!("/status/workers?limit=10&after={after}"),
            None => break,
        }
    }
    let mut unique = hosts.clone();
    unique.dedup();
    assert_eq!((hosts.len(), unique.len()), (23, 23));
    assert!(hosts.windows(2).all(|w| w[0] < w[1]));

    for (list, expected) in [("/status/servers", 57), ("/status/servers/active", 19)] {
        let mut sessions = Vec::new();
        let mut path = format!("{list}?limit=7");
        loop {
            let (code, body) = get_json(api.port, &path);
            assert_eq!(code, 200, "{body}");
            assert_eq!(body["total"], expected);
            sessions.extend(
                body["servers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["session_id"].as_i64().unwrap()),
            );
            match body["next_after"].as_i64() {
                Some(after) => path = format!("{list}?limit=7&after={after}"),
                None => break,
            }
        }
        assert!(
            sessions.windows(2).all(|w| w[0] > w[1]),
            "newest first, no repeats"
        );
        assert_eq!(sessions.len(), expected, "{list}");
    }
    let (code, body) = get_json(api.port, "/status/servers?after=5&offset=5");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn the_status_api_survives_hostile_clients() {
    hostile::watch_for_panics();
    let db = TestDb::new();
    let api = start_api(db.config.clone());
    hostile::assert_survives("the status API", api.port, "/healthz");
    hostile::assert_slow_head_is_cut(api.port);
}

#[test]
fn on_loopback_only_loopback_host_names_are_answered() {
    let db = TestDb::new();
    let api = start_api(db.config.clone());
    let get = |host: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", api.port)).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!("GET /status/system HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    // A page on another site whose name was rebound to 127.0.0.1 (DNS rebinding).
    let rebound = get("attacker.example:8000");
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("STATUS_ALLOWED_HOSTS"), "{rebound}");
    assert!(get(&format!("127.0.0.1:{}", api.port)).starts_with("HTTP/1.1 200"));
    assert!(get("localhost").starts_with("HTTP/1.1 200"));
}
