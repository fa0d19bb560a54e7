//! manman-processor against a real RabbitMQ and PostgreSQL: the eight scenarios of seed 001
//! and the fault cases. Each test has its own database and vhost.

mod support;

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use manman::db::PoolSettings;
use manman::lifecycle::{StopHandle, StopReason, Supervisor};
use manman::processor::{self, ProcessorConfig, RunningProcessor};
use manman::testkit::KillOnDrop;
use manman::wire::{self, HostStatus, SessionStatus};
use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(20);

struct Harness {
    db: TestDb,
    vhost: TestVhost,
    running: RunningProcessor,
    stop: StopHandle,
    thread: Option<JoinHandle<StopReason>>,
    events: Collector,
    dlq: Collector,
    publisher: TestPublisher,
}

fn test_config(db: &TestDb, vhost: &TestVhost) -> ProcessorConfig {
    ProcessorConfig {
        pool: PoolSettings {
            max_size: 5,
            min_idle: 1,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(2),
        },
        ..ProcessorConfig::embedded(vhost.url(), db.config.clone())
    }
}

impl Harness {
    fn start() -> Harness {
        Self::start_with(|_, _| {})
    }

    fn start_with(tweak: impl FnOnce(&mut ProcessorConfig, &TestDb)) -> Harness {
        let db = TestDb::new();
        let vhost = TestVhost::new();
        let mut config = test_config(&db, &vhost);
        tweak(&mut config, &db);
        // Subscribers first, so no event is published before they listen.
        let events = Collector::bind(&vhost, "external", "manman.#");
        let dlq = Collector::queue(&vhost, "processor-events-dlq");
        let mut sup = Supervisor::new();
        let running = processor::start(config, &mut sup).expect("processor starts");
        let stop = sup.stop_handle();
        let thread = std::thread::spawn(move || sup.run(Duration::from_secs(10)));
        wait_for("consumer connected", T, || {
            running
                .consumer_connected
                .load(Ordering::SeqCst)
                .then_some(())
        });
        let publisher = TestPublisher::new(&vhost);
        Harness {
            db,
            vhost,
            running,
            stop,
            thread: Some(thread),
            events,
            dlq,
            publisher,
        }
    }

    fn client(&self) -> postgres::Client {
        self.db.client()
    }

    fn host_status(&self, server_id: i64, status: &str) {
        self.publisher.publish_json(
            &wire::routing::host_status(server_id),
            json!({"server_id": server_id, "status": status}),
        );
    }

    fn session_status(&self, session_id: i64, status: &str, exit_code: Option<i32>) {
        self.publisher.publish_json(
            &wire::routing::session_status(session_id),
            json!({"session_id": session_id, "status": status, "exit_code": exit_code}),
        );
    }

    fn heartbeat(&self, server_id: i64) {
        self.publisher.publish_json(
            &wire::routing::host_health(server_id),
            json!({"server_id": server_id, "session_stats": {"total": 1, "running": 1}}),
        );
    }

    fn expect_event(&self, key: &str) -> Received {
        let e = self.events.expect(key);
        assert_eq!(e.routing_key, key, "unexpected event {:?}", e.body);
        e
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- fixtures -------------------------------------------------------------------------------

#[derive(Debug)]
struct SessionRow {
    status: String,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    exit_code: Option<i32>,
    ports: i64,
}

fn session_row(c: &mut postgres::Client, id: i64) -> SessionRow {
    let r = c
        .query_one(
            "SELECT status, started_at, ended_at, exit_code,
                    (SELECT count(*) FROM server_ports p WHERE p.session_id = s.session_id)
               FROM sessions s WHERE session_id = $1",
            &[&id],
        )
        .unwrap();
    SessionRow {
        status: r.get(0),
        started_at: r.get(1),
        ended_at: r.get(2),
        exit_code: r.get(3),
        ports: r.get(4),
    }
}

fn host_row(c: &mut postgres::Client, id: i64) -> (String, Option<chrono::DateTime<chrono::Utc>>) {
    let r = c
        .query_one(
            "SELECT status, last_seen FROM servers WHERE server_id = $1",
            &[&id],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

fn wait_session_status(h: &Harness, id: i64, status: &str) -> SessionRow {
    let mut c = h.client();
    wait_for(&format!("session {id} to be {status}"), T, || {
        let row = session_row(&mut c, id);
        (row.status == status).then_some(row)
    })
}

/// The real `manman-processor` binary on the test's database and vhost, stale checks off,
/// with `extra` settings.
fn spawn_processor(db: &TestDb, vhost: &TestVhost, extra: &[(&str, &str)]) -> KillOnDrop {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_manman-processor"))
        .env("RABBITMQ_URL", vhost.url())
        .env("DATABASE_URL", db.url())
        .env("HEALTH_PORT", manman::testkit::free_port().to_string())
        .env("STALE_HOST_THRESHOLD_SECONDS", "3600")
        .env("STALE_CHECK_INTERVAL_SECONDS", "3600")
        .env("LOG_LEVEL", "error")
        .envs(extra.iter().copied())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// Waits for the topology before publishing (the processor declares it): until a consumer is
/// attached, which comes after the queue is bound. The queue alone is not enough: a message
/// published between its declaration and its binding is unroutable, and dropped (a quorum
/// queue takes longer to declare than a classic one did, and that window once swallowed the
/// first 57 reports of a test under load).
fn wait_for_processor_queue(vhost: &TestVhost) {
    wait_for("processor queue bound and consumed", T, || {
        let mut conn = vhost.connect();
        let ch = conn.open_channel(None).unwrap();
        let consumers = ch
            .queue_declare_passive("processor-events")
            .ok()
            .and_then(|q| q.declared_consumer_count());
        let _ = conn.close();
        consumers.filter(|&n| n > 0).map(|_| ())
    });
}

// ---- seed 001 scenarios ---------------------------------------------------------------------

#[test]
fn host_status_flow_updates_db_and_publishes_on_change_only() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Offline);

    h.host_status(host, "online");
    let e = h.expect_event("manman.host.online");
    assert_eq!(e.body["server_id"], host);
    assert_eq!(e.body["previous_status"], "offline");
    let (status, last_seen) = host_row(&mut c, host);
    assert_eq!(status, "online");
    assert!(last_seen.is_some());

    // A repeat changes nothing and announces nothing: the next event is the offline one.
    h.host_status(host, "online");
    h.host_status(host, "offline");
    let e = h.expect_event("manman.host.offline");
    assert_eq!(e.body["previous_status"], "online");
    assert_eq!(host_row(&mut c, host).0, "offline");
}

#[test]
fn full_session_lifecycle_sets_timestamps_and_frees_ports() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Online);
    let (sgc, session) = add_session(&mut c, host, SessionStatus::Pending, &[25565, 25575]);

    h.session_status(session, "starting", None);
    h.session_status(session, "running", None);
    let running = h.expect_event("manman.session.running");
    assert_eq!(running.body["session_id"], session);
    assert_eq!(running.body["sgc_id"], sgc);
    assert_eq!(running.body["server_id"], host);
    assert_eq!(running.body["previous_status"], "starting");
    let row = session_row(&mut c, session);
    assert_eq!(row.status, "running");
    assert!(row.started_at.is_some() && row.ended_at.is_none());
    assert_eq!(row.ports, 2, "a running session keeps its ports");

    h.session_status(session, "stopping", None);
    h.session_status(session, "stopped", Some(0));
    let stopped = h.expect_event("manman.session.stopped");
    assert_eq!(stopped.body["previous_status"], "stopping");
    assert_eq!(stopped.body["ports_freed"], 2);
    let row = session_row(&mut c, session);
    assert_eq!(row.status, "stopped");
    assert_eq!(row.exit_code, Some(0));
    assert!(row.ended_at.unwrap() >= row.started_at.unwrap());
    assert_eq!(row.ports, 0, "a terminal session frees its ports");
}

#[test]
fn crash_records_exit_code_and_is_terminal() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Online);
    let (_, session) = add_session(&mut c, host, SessionStatus::Running, &[27015]);

    h.session_status(session, "crashed", Some(137));
    let e = h.expect_event("manman.session.crashed");
    assert_eq!(e.body["exit_code"], 137);
    let row = session_row(&mut c, session);
    assert_eq!(
        (row.status.as_str(), row.exit_code, row.ports),
        ("crashed", Some(137), 0)
    );
    assert!(row.ended_at.is_some());

    // Terminal means terminal: a later "running" is a late report, acknowledged and ignored.
    h.session_status(session, "running", None);
    // An invalid move of a live session is still dead-lettered with the reason.
    let (_, pending) = add_session(&mut c, host, SessionStatus::Pending, &[]);
    h.session_status(pending, "stopped", Some(0));
    let dead = h.dlq.expect("dead-lettered pending -> stopped");
    let reason = header(&dead, "x-manman-dead-letter-reason").unwrap();
    assert!(reason.contains("invalid transition"), "{reason}");
    assert!(reason.contains("pending -> stopped"), "{reason}");
    assert_eq!(session_row(&mut c, session).status, "crashed");
    assert!(
        h.dlq.next(Duration::from_millis(300)).is_none(),
        "only that one"
    );
}

#[test]
fn stale_hosts_are_marked_offline_in_one_batch_with_events() {
    let h = Harness::start_with(|config, _| {
        config.stale_threshold = Duration::from_secs(10);
        config.stale_interval = Duration::from_secs(1);
    });
    let mut c = h.client();
    let fresh = add_host(&mut c, HostStatus::Online);
    let silent_a = add_host(&mut c, HostStatus::Online);
    let silent_b = add_host(&mut c, HostStatus::Online);
    // Time is the one thing we fake: these two were last seen an hour ago.
    c.execute(
        "UPDATE servers SET last_seen = now() - interval '1 hour' WHERE server_id = ANY($1)",
        &[&vec![silent_a, silent_b]],
    )
    .unwrap();

    let mut stale_ids: Vec<i64> = (0..2)
        .map(|_| {
            h.expect_event("manman.host.stale").body["server_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    stale_ids.sort();
    assert_eq!(stale_ids, vec![silent_a, silent_b]);
    assert_eq!(host_row(&mut c, silent_a).0, "offline");
    assert_eq!(host_row(&mut c, silent_b).0, "offline");
    assert_eq!(host_row(&mut c, fresh).0, "online");
    // Both flipped in the same statement, hence the same transaction timestamp.
    let stamps: i64 = c
        .query_one(
            "SELECT count(DISTINCT updated_at) FROM servers WHERE server_id = ANY($1)",
            &[&vec![silent_a, silent_b]],
        )
        .unwrap()
        .get(0);
    assert_eq!(stamps, 1);
}

#[test]
fn heartbeats_refresh_last_seen_and_revive_offline_hosts() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Offline);
    c.execute(
        "UPDATE servers SET last_seen = now() - interval '1 day' WHERE server_id = $1",
        &[&host],
    )
    .unwrap();
    let (_, before) = host_row(&mut c, host);

    h.heartbeat(host);
    let e = h.expect_event("manman.host.online");
    assert_eq!(e.body["session_stats"]["running"], 1);
    let (status, after) = host_row(&mut c, host);
    assert_eq!(status, "online");
    assert!(after.unwrap() > before.unwrap());

    // A heartbeat from an online host only refreshes last_seen: no event.
    h.heartbeat(host);
    h.host_status(host, "offline");
    h.expect_event("manman.host.offline");
}

#[test]
fn every_message_type_round_trips_through_the_broker() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Offline);
    let (sgc, session) = add_session(&mut c, host, SessionStatus::Pending, &[]);

    let host_msg = wire::HostStatusUpdate {
        server_id: host,
        status: HostStatus::Online,
    };
    h.publisher.publish_json(
        &wire::routing::host_status(host),
        serde_json::to_value(&host_msg).unwrap(),
    );
    let e = h.expect_event("manman.host.online");
    let back: wire::HostStatusUpdate = serde_json::from_value(e.body.clone()).unwrap();
    assert_eq!(back, host_msg);

    for status in [SessionStatus::Starting, SessionStatus::Running] {
        let msg = wire::SessionStatusUpdate {
            session_id: session,
            sgc_id: Some(sgc),
            status,
            exit_code: None,
            reason: None,
            restart_count: None,
        };
        h.publisher.publish_json(
            &wire::routing::session_status(session),
            serde_json::to_value(&msg).unwrap(),
        );
    }
    let e = h.expect_event("manman.session.running");
    let back: wire::SessionStatusUpdate = serde_json::from_value(e.body.clone()).unwrap();
    assert_eq!(back.status, SessionStatus::Running);
    assert_eq!(back.sgc_id, Some(sgc));

    let beat = wire::HealthUpdate {
        server_id: host,
        session_stats: wire::SessionStats {
            total: 1,
            running: 1,
            other: Default::default(),
        },
        sent_at_ms: Some(chrono::Utc::now().timestamp_millis()),
        sessions: Vec::new(),
        capacity: Some(wire::HostCapacity {
            memory_total_bytes: 8 << 30,
            memory_available_bytes: 5 << 30,
            port_range_low: 27000,
            port_range_high: 27100,
        }),
    };
    c.execute(
        "UPDATE servers SET status = 'offline' WHERE server_id = $1",
        &[&host],
    )
    .unwrap();
    h.publisher.publish_json(
        &wire::routing::host_health(host),
        serde_json::to_value(&beat).unwrap(),
    );
    let e = h.expect_event("manman.host.online");
    let back: wire::HealthUpdate = serde_json::from_value(e.body.clone()).unwrap();
    assert_eq!(back, beat);
    // What placement needs is stored with the heartbeat.
    let row = c
        .query_one(
            "SELECT memory_total_bytes, memory_available_bytes, port_range_low, port_range_high
               FROM servers WHERE server_id = $1",
            &[&host],
        )
        .unwrap();
    let stored: (Option<i64>, Option<i64>, i32, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(stored, (Some(8 << 30), Some(5 << 30), 27000, 27100));
}

#[test]
fn nonexistent_entities_are_dead_lettered_and_the_rest_flows() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Offline);

    h.host_status(987_654, "online");
    h.session_status(987_655, "running", None);
    h.heartbeat(987_656);
    h.host_status(host, "online");

    let mut reasons: Vec<String> = (0..3)
        .map(|_| header(&h.dlq.expect("dead letter"), "x-manman-dead-letter-reason").unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "unknown host 987654",
            "unknown host 987656",
            "unknown session 987655"
        ]
    );
    h.expect_event("manman.host.online");
}

#[test]
fn multi_step_workflow_with_interleaved_sessions() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Offline);
    let (_, a) = add_session(&mut c, host, SessionStatus::Pending, &[7777]);
    let (_, b) = add_session(&mut c, host, SessionStatus::Pending, &[7778]);

    h.heartbeat(host);
    for status in ["starting", "running"] {
        h.session_status(a, status, None);
        h.session_status(b, status, None);
    }
    h.session_status(a, "crashed", Some(1));
    h.session_status(b, "stopping", None);
    h.session_status(b, "stopped", Some(0));
    h.host_status(host, "offline");

    let keys: Vec<(String, i64)> = (0..6)
        .map(|_| {
            let e = h.events.expect("workflow event");
            let id = e.body["session_id"]
                .as_i64()
                .unwrap_or(e.body["server_id"].as_i64().unwrap());
            (e.routing_key, id)
        })
        .collect();
    let expected = vec![
        ("manman.host.online".to_string(), host),
        ("manman.session.running".to_string(), a),
        ("manman.session.running".to_string(), b),
        ("manman.session.crashed".to_string(), a),
        ("manman.session.stopped".to_string(), b),
        ("manman.host.offline".to_string(), host),
    ];
    assert_eq!(
        keys, expected,
        "events arrive in the order their changes committed"
    );
    assert_eq!(session_row(&mut c, a).exit_code, Some(1));
    assert_eq!(session_row(&mut c, b).status, "stopped");
    let ports: i64 = c
        .query_one(
            "SELECT count(*) FROM server_ports WHERE server_id = $1",
            &[&host],
        )
        .unwrap()
        .get(0);
    assert_eq!(ports, 0);
}

// ---- faults ---------------------------------------------------------------------------------

#[test]
fn poison_messages_go_to_the_dlq_with_reasons_while_the_rest_flows() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Offline);

    h.publisher
        .publish("status.host.1", "{not json", Some("poison-1"));
    h.publisher
        .publish("status.session.5", r#"{"session_id":5}"#, Some("poison-2"));
    h.publisher.publish(
        &format!("status.host.{}", host + 1),
        &json!({"server_id": host, "status": "online"}).to_string(),
        Some("poison-3"),
    );
    h.host_status(host, "online");

    let dead: Vec<Received> = (0..3).map(|_| h.dlq.expect("poison message")).collect();
    let reason = |i: usize| header(&dead[i], "x-manman-dead-letter-reason").unwrap();
    assert!(reason(0).starts_with("malformed message"), "{}", reason(0));
    assert!(
        reason(1).contains("missing field `status`"),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("does not match payload id"),
        "{}",
        reason(2)
    );
    assert_eq!(dead[0].raw, b"{not json", "the original body is kept");
    assert_eq!(
        header(&dead[0], "x-original-routing-key").as_deref(),
        Some("status.host.1")
    );
    h.expect_event("manman.host.online");
    assert_eq!(h.running.metrics.dead_lettered.get(), 3);
}

#[test]
fn redelivered_messages_are_not_applied_twice() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Online);
    let (_, session) = add_session(&mut c, host, SessionStatus::Pending, &[]);
    let body = |s: &str| json!({"session_id": session, "status": s}).to_string();
    let key = wire::routing::session_status(session);

    h.publisher.publish(&key, &body("starting"), Some("m-1"));
    h.publisher.publish(&key, &body("running"), Some("m-2"));
    h.expect_event("manman.session.running");
    // The same messages again, as a broker would redeliver them after a crash.
    h.publisher.publish(&key, &body("starting"), Some("m-1"));
    h.publisher.publish(&key, &body("running"), Some("m-2"));
    h.publisher.publish(&key, &body("crashed"), Some("m-3"));
    h.expect_event("manman.session.crashed");
    // The batch's counters move just after its commit (which the event can overtake).
    wait_for("duplicates counted", T, || {
        (h.running.metrics.duplicates.get() == 2).then_some(())
    });
    assert_eq!(h.running.metrics.dead_lettered.get(), 0);
}

#[test]
fn broker_connections_closed_under_it_reconnects_and_carries_on() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Offline);
    h.host_status(host, "online");
    h.expect_event("manman.host.online");

    h.vhost.close_all_connections();
    wait_for("consumer to notice the drop", T, || {
        (!h.running.consumer_connected.load(Ordering::SeqCst)).then_some(())
    });
    wait_for("consumer to reconnect", T, || {
        h.running
            .consumer_connected
            .load(Ordering::SeqCst)
            .then_some(())
    });
    // Our own test connections were closed too: open new ones.
    let events = Collector::bind(&h.vhost, "external", "manman.#");
    let publisher = TestPublisher::new(&h.vhost);
    publisher.publish_json(
        &wire::routing::host_status(host),
        json!({"server_id": host, "status": "offline"}),
    );
    let e = events.expect("offline after reconnect");
    assert_eq!(e.routing_key, "manman.host.offline");
    assert_eq!(host_row(&mut c, host).0, "offline");
}

#[test]
fn postgres_outage_holds_messages_and_applies_them_after_recovery() {
    let proxy = proxy::TcpProxy::start("127.0.0.1:5432");
    let port = proxy.port;
    let h = Harness::start_with(|config, db| {
        let mut through_proxy = postgres::Config::new();
        through_proxy
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .dbname(&db.name);
        config.database = through_proxy;
    });
    let mut c = h.client(); // direct, not through the proxy
    let host = add_host(&mut c, HostStatus::Offline);
    let sessions: Vec<i64> = (0..20)
        .map(|_| add_session(&mut c, host, SessionStatus::Pending, &[]).1)
        .collect();

    proxy.disable();
    for &s in &sessions {
        h.session_status(s, "starting", None);
        h.session_status(s, "running", None);
    }
    wait_for("the processor to hit the outage", T, || {
        (h.running.metrics.db_outage_retries.get() > 0).then_some(())
    });
    let ready = http_status(h.running.health_port, "/readyz");
    assert_eq!(ready, 503, "not ready while the database is unreachable");
    let applied: i64 = c
        .query_one(
            "SELECT count(*) FROM sessions WHERE status <> 'pending'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(applied, 0);

    proxy.enable();
    for &s in &sessions {
        wait_session_status(&h, s, "running");
    }
    let running_events = (0..sessions.len())
        .filter(|_| h.events.expect("running event").routing_key == "manman.session.running")
        .count();
    assert_eq!(running_events, sessions.len());
    assert_eq!(
        h.running.metrics.dead_lettered.get(),
        0,
        "nothing was dead-lettered"
    );
    assert_eq!(http_status(h.running.health_port, "/readyz"), 200);
}

fn http_status(port: u16, path: &str) -> u16 {
    http_request(port, "GET", path).0
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_double_applies_nothing() {
    let db = TestDb::new();
    let vhost = TestVhost::new();
    let events = Collector::bind(&vhost, "external", "manman.#");
    let dlq = Collector::queue(&vhost, "processor-events-dlq");
    let mut c = db.client();
    let host = add_host(&mut c, HostStatus::Online);
    let sessions: Vec<i64> = (0..1500)
        .map(|_| add_session(&mut c, host, SessionStatus::Pending, &[]).1)
        .collect();

    let spawn = || spawn_processor(&db, &vhost, &[("PROCESSOR_MAX_BATCH", "20")]);
    let mut first = spawn();
    wait_for_processor_queue(&vhost);
    let publisher = TestPublisher::new(&vhost);
    for status in ["starting", "running", "stopping", "stopped"] {
        for &s in &sessions {
            publisher.publish_json(
                &wire::routing::session_status(s),
                json!({"session_id": s, "status": status, "exit_code": 0}),
            );
        }
    }
    wait_for("some progress before the kill", T, || {
        let moved: i64 = c
            .query_one(
                "SELECT count(*) FROM sessions WHERE status <> 'pending'",
                &[],
            )
            .unwrap()
            .get(0);
        (moved > 0).then_some(())
    });
    first.kill(); // SIGKILL
    let stopped_before: i64 = c
        .query_one(
            "SELECT count(*) FROM sessions WHERE status = 'stopped'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        stopped_before < sessions.len() as i64,
        "the kill must land mid-stream"
    );

    let mut second = spawn();
    wait_for("every session stopped", Duration::from_secs(60), || {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM sessions WHERE status = 'stopped'",
                &[],
            )
            .unwrap()
            .get(0);
        (n == sessions.len() as i64).then_some(())
    });
    wait_for("outbox drained", T, || {
        let n: i64 = c
            .query_one("SELECT count(*) FROM event_outbox", &[])
            .unwrap()
            .get(0);
        (n == 0).then_some(())
    });
    second.kill();

    let mut running = std::collections::HashSet::new();
    let mut stopped = std::collections::HashSet::new();
    for e in events.drain(Duration::from_millis(500)) {
        let id = e.body["session_id"].as_i64().unwrap();
        match e.routing_key.as_str() {
            "manman.session.running" => running.insert(id),
            "manman.session.stopped" => stopped.insert(id),
            other => panic!("unexpected event {other}"),
        };
    }
    assert_eq!(
        running.len(),
        sessions.len(),
        "every running event, at least once"
    );
    assert_eq!(
        stopped.len(),
        sessions.len(),
        "every stopped event, at least once"
    );
    assert!(
        dlq.next(Duration::from_millis(300)).is_none(),
        "a double application would have dead-lettered an invalid transition"
    );
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM sessions WHERE started_at IS NULL OR ended_at IS NULL OR ended_at < started_at",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
}

// ---- sessions stay true under faults ----------------------------------------------------------

#[test]
fn a_host_offline_past_the_grace_loses_its_live_sessions() {
    let h = Harness::start_with(|config, _| {
        config.stale_threshold = Duration::from_secs(1);
        config.stale_interval = Duration::from_millis(500);
        config.host_lost_after = Duration::from_secs(1);
    });
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Online);
    let (_, running) = add_session(&mut c, host, SessionStatus::Running, &[25565]);
    let (_, stopped) = add_session(&mut c, host, SessionStatus::Stopped, &[]);
    // The host goes silent (powered off): stale, then its sessions are lost after the grace.
    h.expect_event("manman.host.stale");
    let lost = h.expect_event("manman.session.lost");
    assert_eq!(lost.body["session_id"], running);
    assert_eq!(lost.body["previous_status"], "running");
    assert!(
        lost.body["reason"].as_str().unwrap().contains("offline"),
        "{:?}",
        lost.body
    );
    let row = wait_session_status(&h, running, "lost");
    assert!(row.ended_at.is_some());
    let (ports, reason): (i64, Option<String>) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM server_ports), reason FROM sessions WHERE session_id = $1",
                &[&running],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(ports, 0, "its ports are free for another session");
    assert!(reason.unwrap().contains("offline"));
    assert_eq!(
        session_row(&mut c, stopped).status,
        "stopped",
        "history untouched"
    );
    // The host coming back afterwards is online again, with nothing left to lose.
    h.heartbeat(host);
    h.expect_event("manman.host.online");
    assert!(h.dlq.next(Duration::from_millis(300)).is_none());
}

#[test]
fn late_reports_for_ended_sessions_are_ignored_not_dead_lettered() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Online);
    let (_, session) = add_session(&mut c, host, SessionStatus::Lost, &[]);
    // The host acted on a start after the API gave up, then stopped the game on reconciling.
    for status in ["starting", "running", "stopping", "stopped"] {
        h.session_status(session, status, Some(0));
    }
    let marker = add_session(&mut c, host, SessionStatus::Pending, &[]).1;
    h.session_status(marker, "starting", None);
    wait_session_status(&h, marker, "starting");
    assert_eq!(session_row(&mut c, session).status, "lost");
    assert!(h.dlq.next(Duration::from_millis(300)).is_none());
}

#[test]
fn crash_restarts_are_recorded_and_announced_once() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Online);
    let (_, session) = add_session(&mut c, host, SessionStatus::Running, &[]);
    let restart = |n: u32, code: i32| {
        h.publisher.publish_json(
            &wire::routing::session_status(session),
            json!({"session_id": session, "status": "running", "exit_code": code, "restart_count": n}),
        )
    };
    restart(1, 3);
    let e = h.expect_event("manman.session.restarted");
    assert_eq!(e.body["restart_count"], 1);
    assert_eq!(e.body["exit_code"], 3);
    assert_eq!(e.body["server_id"], host);
    restart(1, 3); // a repeat says nothing new
    restart(2, 137);
    let e = h.expect_event("manman.session.restarted");
    assert_eq!(e.body["restart_count"], 2);
    let r = c
        .query_one(
            "SELECT status, restart_count, last_exit_code, last_exit_at IS NOT NULL FROM sessions WHERE session_id = $1",
            &[&session],
        )
        .unwrap();
    assert_eq!(
        r.get::<_, String>(0),
        "running",
        "a restart keeps the status"
    );
    assert_eq!(r.get::<_, i32>(1), 2);
    assert_eq!(r.get::<_, Option<i32>>(2), Some(137));
    assert!(r.get::<_, bool>(3));
    assert!(h.events.next(Duration::from_millis(300)).is_none());
}

#[test]
fn a_processor_restarted_after_a_pause_does_not_cry_wolf() {
    let threshold = Duration::from_secs(3);
    let db = TestDb::new();
    let vhost = TestVhost::new();
    let events = Collector::bind(&vhost, "external", "manman.host.*");
    let start = || {
        let mut sup = Supervisor::new();
        let mut config = test_config(&db, &vhost);
        config.stale_threshold = threshold;
        config.stale_interval = Duration::from_millis(500);
        let running = processor::start(config, &mut sup).unwrap();
        wait_for("consumer connected", T, || {
            running
                .consumer_connected
                .load(Ordering::SeqCst)
                .then_some(())
        });
        Daemon::run(sup)
    };
    let host = add_host(&mut db.client(), HostStatus::Online);
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let heart = {
        let publisher = TestPublisher::new(&vhost);
        let beating = beating.clone();
        std::thread::spawn(move || {
            while beating.load(Ordering::SeqCst) {
                publisher.publish_json(
                    &wire::routing::host_health(host),
                    json!({"server_id": host, "session_stats": {"total": 0, "running": 0},
                           "sent_at_ms": chrono::Utc::now().timestamp_millis()}),
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut first = start();
    first.shutdown();
    // The processor is down for twice the threshold while the host keeps beating.
    std::thread::sleep(threshold * 2);
    let _second = start();
    assert!(
        events.next(threshold + Duration::from_secs(2)).is_none(),
        "no host may be judged stale on the processor's old view of it"
    );
    // Staleness still works: the host goes silent and is reported.
    beating.store(false, Ordering::SeqCst);
    heart.join().unwrap();
    let e = events.expect("stale");
    assert_eq!(e.routing_key, "manman.host.stale");
    assert_eq!(e.body["server_id"], host);
}

#[test]
fn two_processors_keep_order_and_apply_nothing_twice() {
    let db = TestDb::new();
    let vhost = TestVhost::new();
    let dlq = Collector::queue(&vhost, "processor-events-dlq");
    let mut c = db.client();
    let host = add_host(&mut c, HostStatus::Online);
    let sessions: Vec<i64> = (0..400)
        .map(|_| add_session(&mut c, host, SessionStatus::Pending, &[]).1)
        .collect();
    let spawn = || {
        spawn_processor(
            &db,
            &vhost,
            &[("PROCESSOR_MAX_BATCH", "10"), ("PROCESSOR_PREFETCH", "10")],
        )
    };
    let mut a = spawn();
    let mut b = spawn();
    wait_for_processor_queue(&vhost);
    let publisher = TestPublisher::new(&vhost);
    for &s in &sessions {
        for status in ["starting", "running", "stopping", "stopped"] {
            publisher.publish_json(
                &wire::routing::session_status(s),
                json!({"session_id": s, "status": status, "exit_code": 0}),
            );
        }
    }
    let count_stopped = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM sessions WHERE status = 'stopped'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    wait_for("some progress", T, || {
        (count_stopped(&mut c) > 0).then_some(())
    });
    // The active one dies; the standby takes over where it stopped.
    a.kill();
    wait_for("every session stopped", Duration::from_secs(60), || {
        (count_stopped(&mut c) == sessions.len() as i64).then_some(())
    });
    b.kill();
    assert!(
        dlq.next(Duration::from_millis(300)).is_none(),
        "two consumers taking turns would reorder a session's reports into invalid transitions"
    );
}

#[test]
fn with_host_broker_users_a_host_cannot_report_for_another_hosts_sessions() {
    let h = Harness::start_with(|c, _| c.require_host_users = true);
    // Ids of this test's own (broker users are shared by every vhost).
    let base = 7_000_000 + (std::process::id() as i64 % 100_000) * 2;
    let (a, b) = (base, base + 1);
    let mut c = h.client();
    add_host_with_id(&mut c, a);
    add_host_with_id(&mut c, b);
    let (_, session) = add_session(&mut c, a, SessionStatus::Starting, &[]);
    let (user_a, user_b) = (
        HostBrokerUser::provision(a, &h.vhost),
        HostBrokerUser::provision(b, &h.vhost),
    );
    let running = json!({"session_id": session, "status": "running"});
    let key = wire::routing::session_status(session);
    // Host B reports for host A's session: the broker lets the key through (it cannot know
    // whose session it is), the processor refuses it.
    user_b.publish(true, &key, &running).unwrap();
    let dead = h.dlq.expect("B's forged report dead-lettered");
    let reason = header(&dead, wire::routing::DEAD_LETTER_REASON_HEADER).unwrap();
    assert!(
        reason.contains(&format!("\"manman-host-{b}\"")) && reason.contains(&format!("host {a}")),
        "{reason}"
    );
    // Unsigned: refused too.
    user_a.publish(false, &key, &running).unwrap();
    let dead = h.dlq.expect("the unsigned report dead-lettered");
    let reason = header(&dead, wire::routing::DEAD_LETTER_REASON_HEADER).unwrap();
    assert!(reason.contains("not signed"), "{reason}");
    // Host A itself: applied.
    user_a.publish(true, &key, &running).unwrap();
    wait_session_status(&h, session, "running");
    // A host-keyed event for another host is refused by the broker itself.
    let forged = user_b.publish(
        true,
        &wire::routing::host_health(a),
        &json!({"server_id": a, "session_stats": {"total": 0, "running": 0}}),
    );
    assert!(forged.is_err());
    // Nor may B read A's commands.
    let mut conn = manman::bus::connection::open(&user_b.url).unwrap();
    let channel = conn.open_channel(None).unwrap();
    let queue = channel.queue_declare(
        wire::routing::host_commands_queue(a),
        amiquip::QueueDeclareOptions::default(),
    );
    assert!(queue.is_err());
    let _ = conn.close();
}

#[test]
fn hosts_and_sessions_by_status_are_gauges_on_metrics() {
    let h = Harness::start();
    let mut c = h.client();
    let online = add_host(&mut c, HostStatus::Online);
    add_host(&mut c, HostStatus::Online);
    add_host(&mut c, HostStatus::Offline);
    add_session(&mut c, online, SessionStatus::Running, &[]);
    add_session(&mut c, online, SessionStatus::Running, &[]);
    add_session(&mut c, online, SessionStatus::Crashed, &[]);
    let metrics = manman::testkit::http_get(h.running.health_port, "/metrics");
    for expected in [
        "manman_hosts{status=\"online\"} 2\n",
        "manman_hosts{status=\"offline\"} 1\n",
        "manman_sessions{status=\"running\"} 2\n",
        "manman_sessions{status=\"crashed\"} 1\n",
        // Every status is listed, zeros included.
        "manman_sessions{status=\"lost\"} 0\n",
        "manman_sessions{status=\"pending\"} 0\n",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in {metrics}"
        );
    }
    // A transition moves the count.
    h.host_status(online, "offline");
    h.expect_event("manman.host.offline");
    let metrics = manman::testkit::http_get(h.running.health_port, "/metrics");
    assert!(
        metrics.contains("manman_hosts{status=\"offline\"} 2\n"),
        "{metrics}"
    );
}

#[test]
fn heartbeat_samples_are_kept_per_session_and_only_for_the_hosts_own_sessions() {
    let h = Harness::start();
    let mut c = h.client();
    let host = add_host(&mut c, HostStatus::Online);
    let other = add_host(&mut c, HostStatus::Online);
    let (_, mine) = add_session(&mut c, host, SessionStatus::Running, &[]);
    let (_, theirs) = add_session(&mut c, other, SessionStatus::Running, &[]);
    let sample = |session_id: i64, rss: u64| {
        json!({"session_id": session_id, "cpu_percent": 12.5, "rss_bytes": rss,
               "threads": 4, "open_files": 9, "processes": 2})
    };
    let beat = |rss: u64| {
        h.publisher.publish_json(
            &wire::routing::host_health(host),
            json!({"server_id": host, "session_stats": {"total": 1, "running": 1},
                   "sessions": [sample(mine, rss), sample(theirs, 1), sample(999_999, 1)]}),
        );
    };
    let stored = |session: i64| -> Option<(i64, i32)> {
        h.client()
            .query_opt(
                "SELECT rss_bytes, threads FROM session_samples WHERE session_id = $1",
                &[&session],
            )
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    };
    beat(100 << 20);
    wait_for("the sample stored", T, || stored(mine));
    // The latest replaces the previous one: a row per session, not a series.
    beat(200 << 20);
    wait_for("the newer sample", T, || {
        (stored(mine) == Some((200 << 20, 4))).then_some(())
    });
    assert_eq!(stored(theirs), None, "a host wrote another host's session");
    let rows: i64 = h
        .client()
        .query_one("SELECT count(*) FROM session_samples", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);

    // Two heartbeats of the host in one batch (a backlog): the newest sample wins, and the
    // batch does not fail on touching the row twice.
    let pool = manman::db::pool(h.db.config.clone(), &manman::db::PoolSettings::default()).unwrap();
    let mut conn = manman::db::CachedConnection::new(pool.get().unwrap());
    let mut tx = conn.transaction().unwrap();
    let sample = |rss: u64| wire::SessionSample {
        session_id: mine,
        cpu_percent: 1.0,
        rss_bytes: rss,
        threads: 4,
        open_files: 9,
        processes: 2,
        memory_peak_bytes: Some(rss + 1),
        io_read_bytes: None,
        disk_bytes: Some(7 << 30),
        players: None,
    };
    manman::db::sessions::store_samples(
        &mut tx,
        &[(host, sample(300 << 20)), (host, sample(400 << 20))],
        60,
    )
    .unwrap();
    tx.commit().unwrap();
    assert_eq!(stored(mine), Some((400 << 20, 4)));
    // The cgroup's figures are kept beside them; what the host did not say stays NULL.
    let extra =
        h.db.client()
            .query_one(
                "SELECT memory_peak_bytes, io_read_bytes, disk_bytes FROM session_samples
              WHERE session_id = $1",
                &[&mine],
            )
            .unwrap();
    assert_eq!(extra.get::<_, Option<i64>>(0), Some((400 << 20) + 1));
    assert_eq!(extra.get::<_, Option<i64>>(1), None);
    assert_eq!(extra.get::<_, Option<i64>>(2), Some(7 << 30));
}

#[test]
fn a_dead_broker_node_first_in_the_list_is_passed_over() {
    // RABBITMQ_URL as a cluster's node list, its first node down (nothing listens there).
    let dead = format!(
        "amqp://guest:guest@127.0.0.1:{}/",
        manman::testkit::free_port()
    );
    let h = Harness::start_with(|c, _| c.rabbitmq_url = format!("{dead},{}", c.rabbitmq_url));
    let host = add_host(&mut h.client(), HostStatus::Offline);
    h.host_status(host, "online");
    wait_for("the event applied through the live node", T, || {
        let status: String = h
            .client()
            .query_one("SELECT status FROM servers WHERE server_id = $1", &[&host])
            .unwrap()
            .get(0);
        (status == "online").then_some(())
    });
}

/// Declares `processor-events` as the daemons before quorum queues did: a classic queue with a
/// single active consumer, dead-lettering into a classic DLQ, bound to the host event keys.
fn declare_classic_processor_queue(vhost: &TestVhost) {
    use amiquip::{AmqpValue, FieldTable, QueueDeclareOptions};
    let mut conn = vhost.connect();
    let ch = conn.open_channel(None).unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("processor-events-dlq", durable.clone())
        .unwrap();
    let mut args = FieldTable::new();
    args.insert(
        "x-dead-letter-exchange".into(),
        AmqpValue::LongString(String::new()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AmqpValue::LongString("processor-events-dlq".into()),
    );
    args.insert("x-single-active-consumer".into(), AmqpValue::Boolean(true));
    let q = ch
        .queue_declare(
            "processor-events",
            QueueDeclareOptions {
                arguments: args,
                ..durable
            },
        )
        .unwrap();
    let manman = declare_topic(&ch, wire::routing::MANMAN_EXCHANGE);
    for key in wire::routing::PROCESSOR_BINDINGS {
        q.bind(&manman, key, FieldTable::new()).unwrap();
    }
    let _ = conn.close();
}

fn queue_exists(vhost: &TestVhost, name: &str) -> bool {
    let mut conn = vhost.connect();
    let ch = conn.open_channel(None).unwrap();
    let exists = ch.queue_declare_passive(name).is_ok();
    let _ = conn.close();
    exists
}

#[test]
fn a_classic_processor_queue_becomes_a_quorum_queue_losing_nothing_in_flight() {
    let db = TestDb::new();
    let vhost = TestVhost::new();
    declare_classic_processor_queue(&vhost);
    let dlq = Collector::queue(&vhost, "processor-events-dlq");
    let mut c = db.client();
    let host = add_host(&mut c, HostStatus::Online);
    let sessions: Vec<i64> = (0..300)
        .map(|_| add_session(&mut c, host, SessionStatus::Pending, &[]).1)
        .collect();
    let publish = |statuses: &[&str], pace: Duration| {
        let publisher = TestPublisher::new(&vhost);
        for status in statuses {
            for (i, &s) in sessions.iter().enumerate() {
                if i % 10 == 0 {
                    std::thread::sleep(pace); // a steady stream, not a burst
                }
                // With message ids, as agents send them: a copy routed to both queues in the
                // instant both are bound is taken once.
                publisher.publish(
                    &wire::routing::session_status(s),
                    &json!({"session_id": s, "status": status, "exit_code": 0}).to_string(),
                    Some(&format!("m-{s}-{status}")),
                );
            }
        }
    };
    // Half of each session's events wait in the classic queue (an upgrade with a backlog)...
    publish(&["starting", "running"], Duration::ZERO);
    let mut processor = spawn_processor(&db, &vhost, &[("PROCESSOR_MAX_BATCH", "20")]);
    // ... and the other half arrive while it is being moved.
    std::thread::scope(|scope| {
        scope.spawn(|| publish(&["stopping", "stopped"], Duration::from_millis(25)));
    });
    wait_for("every session stopped", Duration::from_secs(60), || {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM sessions WHERE status = 'stopped'",
                &[],
            )
            .unwrap()
            .get(0);
        (n == 300).then_some(())
    });
    wait_for("the migrating queue gone", T, || {
        (!queue_exists(&vhost, "processor-events-migrating")).then_some(())
    });
    let applied: i64 = c
        .query_one("SELECT count(*) FROM processed_messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, 1200, "every event applied once");
    assert!(
        dlq.next(Duration::from_millis(300)).is_none(),
        "an event out of order or applied twice would have been dead-lettered"
    );
    // It is a quorum queue now: declaring it with the quorum arguments is accepted as it is.
    let spec = manman::bus::topology::processor_queue();
    let mut conn = vhost.connect();
    let ch = conn.open_channel(None).unwrap();
    ch.queue_declare(
        "processor-events",
        amiquip::QueueDeclareOptions {
            durable: true,
            arguments: spec.quorum_arguments(true),
            ..Default::default()
        },
    )
    .expect("processor-events is the quorum queue");
    let _ = conn.close();
    // And a restart finds nothing left to move.
    processor.kill();
    let mut again = spawn_processor(&db, &vhost, &[]);
    let publisher = TestPublisher::new(&vhost);
    let spare = add_session(&mut c, host, SessionStatus::Pending, &[]).1;
    publisher.publish_json(
        &wire::routing::session_status(spare),
        json!({"session_id": spare, "status": "starting"}),
    );
    wait_session_status_in(&mut c, spare, "starting");
    again.kill();
}

fn wait_session_status_in(c: &mut postgres::Client, id: i64, status: &str) {
    wait_for(&format!("session {id} to be {status}"), T, || {
        (session_row(c, id).status == status).then_some(())
    });
}
