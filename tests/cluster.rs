//! ManMan on a three-node RabbitMQ cluster of the test's own (its own node names, ports, data
//! and cookie): quorum queues keep every message when the node leading them stops, and the
//! daemons reconnect through the next node of their `RABBITMQ_URL` list.

mod support;

use std::time::{Duration, Instant};

use manman::testkit::rabbit_cluster::RabbitCluster;
use manman::wire::{self, HostStatus, SessionStatus};
use serde_json::json;
use support::stack::Agent;
use support::*;

const T: Duration = Duration::from_secs(60);

fn cluster() -> RabbitCluster {
    RabbitCluster::start(3).expect("a three-node RabbitMQ cluster starts")
}

/// Publishes with confirms to one node, so a confirmed message is in the quorum (replicated)
/// whichever node then stops.
struct ConfirmingPublisher {
    _conn: amiquip::Connection,
    publisher: manman::bus::ConfirmedPublisher,
}

impl ConfirmingPublisher {
    fn to(url: &str) -> ConfirmingPublisher {
        let mut conn = manman::bus::connection::open(url).unwrap();
        let publisher =
            manman::bus::ConfirmedPublisher::new(conn.open_channel(None).unwrap()).unwrap();
        ConfirmingPublisher {
            _conn: conn,
            publisher,
        }
    }

    fn session_status(&mut self, session: i64, status: &str) {
        let message = manman::bus::OutgoingMessage::json(
            wire::routing::MANMAN_EXCHANGE,
            &wire::routing::session_status(session),
            &json!({"session_id": session, "status": status, "exit_code": 0}),
        )
        .with_message_id(format!("m-{session}-{status}"));
        self.publisher
            .publish_all(&[message], Duration::from_secs(30))
            .expect("confirmed");
    }
}

fn count(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn the_processor_loses_nothing_when_the_node_leading_its_queue_stops() {
    let mut cluster = cluster();
    let db = TestDb::new();
    let mut c = db.client();
    let host = add_host(&mut c, HostStatus::Online);
    let sessions: Vec<i64> = (0..200)
        .map(|_| add_session(&mut c, host, SessionStatus::Pending, &[]).1)
        .collect();
    // The processor lists node 1 first: it declares (and so leads) processor-events there.
    let processor = std::process::Command::new(env!("CARGO_BIN_EXE_manman-processor"))
        .env("RABBITMQ_URL", cluster.url_list(&[0, 1, 2]))
        .env("DATABASE_URL", db.url())
        .env("HEALTH_PORT", manman::testkit::free_port().to_string())
        .env("STALE_HOST_THRESHOLD_SECONDS", "3600")
        .env("STALE_CHECK_INTERVAL_SECONDS", "3600")
        .env("PROCESSOR_MAX_BATCH", "20")
        .env(
            "LOG_LEVEL",
            std::env::var("TEST_LOG_LEVEL").unwrap_or("error".into()),
        )
        .spawn()
        .unwrap();
    let _processor = Agent(Some(processor));
    let leader = wait_for("processor-events declared", T, || {
        cluster.leader_of("processor-events")
    });
    assert_eq!(leader, 0, "declared through the first node of the list");
    // The exchange exists (the processor declared it): publish through node 3.
    let mut publisher = ConfirmingPublisher::to(&cluster.nodes[2].url());
    for &s in &sessions {
        publisher.session_status(s, "starting");
    }
    wait_for("the first events applied", T, || {
        (count(&mut c, "SELECT count(*) FROM processed_messages") == 200).then_some(())
    });
    std::thread::scope(|scope| {
        // A steady stream of the rest, through the failover...
        let stream = scope.spawn(|| {
            for status in ["running", "stopping", "stopped"] {
                for &s in &sessions {
                    publisher.session_status(s, status);
                }
            }
        });
        // ... while the node leading the queue, which the processor is connected to, dies
        // with deliveries in flight.
        wait_for("the stream under way", T, || {
            (count(&mut c, "SELECT count(*) FROM processed_messages") > 260).then_some(())
        });
        cluster.nodes[0].kill().expect("the leader's VM killed");
        let killed_at = Instant::now();
        let killed_db: chrono::DateTime<chrono::Utc> =
            c.query_one("SELECT now()", &[]).unwrap().get(0);
        let applied_before = count(&mut c, "SELECT count(*) FROM processed_messages");
        assert!(applied_before < 800, "the node must die mid-stream");
        let resumed = wait_for(
            "an event applied through another node",
            Duration::from_secs(10),
            || {
                let last: Option<chrono::DateTime<chrono::Utc>> = c
                    .query_one("SELECT max(processed_at) FROM processed_messages", &[])
                    .unwrap()
                    .get(0);
                (last? > killed_db).then(|| killed_at.elapsed())
            },
        );
        eprintln!("processing resumed {resumed:?} after the node died");
        stream.join().unwrap();
    });
    wait_for("every session stopped", T, || {
        (count(
            &mut c,
            "SELECT count(*) FROM sessions WHERE status = 'stopped'",
        ) == 200)
            .then_some(())
    });
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM processed_messages"),
        800,
        "every confirmed event applied, none twice"
    );
    let new_leader = cluster.leader_of("processor-events").expect("a leader");
    assert_ne!(new_leader, 0);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM sessions WHERE started_at IS NULL OR ended_at < started_at"
        ),
        0
    );
}

#[test]
fn an_agent_whose_broker_node_dies_keeps_its_game_and_takes_commands_through_another() {
    let mut cluster = cluster();
    // Every daemon lists node 1 first, so node 1 carries their connections and leads the
    // queues they declared.
    let mut s = support::stack::Stack::start_on_broker(cluster.url_list(&[0, 1, 2]));
    let data_dir = std::env::temp_dir().join(unique_name("mmhost-cluster"));
    let sgc = s.deploy_test_game("clustered", 26300);
    let mut agent = s.agent_process(&data_dir, true);
    let session = s.start_session_retrying(sgc);
    s.wait_status(session, "running");
    let game = wait_for("game pid", T, || {
        support::stack::stored_pid(&data_dir, session)
    });
    assert_eq!(cluster.leader_of("processor-events"), Some(0));

    let killed_db: chrono::DateTime<chrono::Utc> =
        s.db.client().query_one("SELECT now()", &[]).unwrap().get(0);
    cluster.nodes[0].kill().expect("node 1's VM killed");
    // The agent reconnects through node 2 or 3: its heartbeats reach the processor again
    // (itself reconnected), and a stop reaches the agent there.
    wait_for("a heartbeat through another node", T, || {
        let seen: Option<chrono::DateTime<chrono::Utc>> =
            s.db.client()
                .query_one(
                    "SELECT last_seen FROM servers WHERE name = 'test-host'",
                    &[],
                )
                .unwrap()
                .get(0);
        (seen? > killed_db).then_some(())
    });
    assert!(
        alive(game),
        "the game kept running while the broker node was away"
    );
    // The API's publish may still be refused (nack, exit 69 "unavailable") in the second a
    // queue's leader is being elected: an operator tries again, as the message says.
    wait_for("the stop accepted", T, || {
        let (code, out, err) = s.cli(&["session", "stop", &session.to_string()]);
        match code {
            0 => Some(()),
            69 => None,
            other => panic!("exit {other}: {out}{err}"),
        }
    });
    s.wait_status(session, "stopped");
    wait_for("the game stopped", T, || (!alive(game)).then_some(()));
    assert!(agent.terminate().success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 checks only that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}
