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
