//! The control plane past one database: the status API on a streaming replica, reporting its
//! lag, and the processor and the API following a promoted replica through a multi-host URL.
//! Each test starts a PostgreSQL primary and replica of its own (initdb, pg_basebackup) on
//! free ports, and its own vhost.

mod support;

use std::time::Duration;

use manman::db::PoolSettings;
use manman::lifecycle::Supervisor;
use manman::proto::v1 as pb;
use manman::status::{self, StatusConfig};
use manman::testkit::postgres_pair::PgPair;
use manman::wire::{self, HostStatus};
use serde_json::{json, Value};
use support::stack::Agent;
use support::*;

const T: Duration = Duration::from_secs(30);

fn pair() -> PgPair {
    PgPair::start()
        .expect("a PostgreSQL primary and replica start (scripts/services installs the server)")
}

fn get_json(port: u16, path: &str) -> Value {
    let response = manman::testkit::http_get(port, path);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {response}"))
}

#[test]
fn the_status_api_reads_a_replica_and_reports_its_lag() {
    let pg = pair();
    let mut primary = pg.create_database("manman_replica_read");
    let mut sup = Supervisor::new();
    let running = status::start(
        StatusConfig {
            database: pg.replica.url("manman_replica_read").parse().unwrap(),
            listen: "127.0.0.1:0".into(),
            require_token: false,
            allowed_hosts: vec!["127.0.0.1".into()],
            workers: 2,
            stale_threshold: Duration::from_secs(10),
            system_cache: Duration::ZERO,
            pool: PoolSettings {
                max_size: 3,
                min_idle: 1,
                idle_timeout: Duration::from_secs(300),
                connect_timeout: Duration::from_secs(2),
            },
        },
        &mut sup,
    )
    .unwrap();
    let port = running.port;
    let _daemon = Daemon::run(sup);

    let first = add_host(&mut primary, HostStatus::Online);
    wait_for(
        "the host written on the primary read from the replica",
        T,
        || {
            let workers = get_json(port, "/status/workers");
            (workers["count"] == json!(1)).then_some(())
        },
    );
    let db = wait_for("the replica's lag measured", T, || {
        let system = get_json(port, "/status/system");
        (system["database"]["role"] == json!("replica")).then(|| system["database"].clone())
    });
    assert_eq!(db["streaming"], json!(true), "{db}");
    assert!(db["lag_seconds"].as_f64().unwrap() < 5.0, "{db}");

    // Replay paused: what the primary writes now is received but not applied, and the lag
    // shows it (and grows) while the answers stay as they were.
    let mut replica = pg.replica.client("manman_replica_read").unwrap();
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    let second = add_host(&mut primary, HostStatus::Online);
    wait_for("the lag to show", T, || {
        let lag = get_json(port, "/status/system")["database"]["lag_seconds"].as_f64()?;
        (lag >= 1.0).then_some(())
    });
    assert!(manman::testkit::http_get(port, "/metrics")
        .lines()
        .any(|l| l == "manman_status_database_is_replica 1"));
    assert_eq!(get_json(port, "/status/workers")["count"], json!(1));
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    wait_for("both hosts once replay resumes", T, || {
        let workers = get_json(port, "/status/workers");
        (workers["count"] == json!(2)).then_some(())
    });
    wait_for("the lag back to zero", T, || {
        let lag = get_json(port, "/status/system")["database"]["lag_seconds"].as_f64()?;
        (lag == 0.0).then_some(())
    });
    assert_ne!(first, second);
}

#[test]
fn the_processor_and_the_api_follow_a_promoted_replica() {
    let mut pg = pair();
    let mut primary = pg.create_database("manman_failover");
    let url = pg.failover_url("manman_failover");
    let vhost = TestVhost::new();
    let host = add_host(&mut primary, HostStatus::Offline);
    drop(primary);

    let processor = std::process::Command::new(env!("CARGO_BIN_EXE_manman-processor"))
        .env("RABBITMQ_URL", vhost.url())
        .env("DATABASE_URL", &url)
        .env("HEALTH_PORT", manman::testkit::free_port().to_string())
        .env("STALE_HOST_THRESHOLD_SECONDS", "3600")
        .env("STALE_CHECK_INTERVAL_SECONDS", "3600")
        .env("LOG_LEVEL", "error")
        .spawn()
        .unwrap();
    let _processor = Agent(Some(processor)); // killed by pid on drop
    let mut sup = Supervisor::new();
    let api = manman::api::start(
        manman::api::ApiConfig::embedded(vhost.url(), url.parse().unwrap()),
        &mut sup,
    )
    .unwrap();
    let _api = Daemon::run(sup);
    let mut admin = pg.primary.client("manman_failover").unwrap();
    let (_, token) =
        manman::api::create_token(&mut admin, "admin", manman::auth::Role::Admin, 0).unwrap();
    drop(admin);
    let client = manman::api::client(&format!("127.0.0.1:{}", api.port));
    let add = |name: &str| {
        client.add_host_opt(
            &pb::AddHostRequest {
                name: name.into(),
                reissue: false,
            },
            manman::grpc::call_option(Some(&token), Duration::from_secs(5)),
        )
    };
    add("before").expect("the API writes to the primary");

    let publisher = TestPublisher::new(&vhost);
    let status_on = |server: &manman::testkit::postgres_pair::PgServer| {
        let mut c = server.client("manman_failover").ok()?;
        let row = c
            .query_one("SELECT status FROM servers WHERE server_id = $1", &[&host])
            .ok()?;
        Some(row.get::<_, String>(0))
    };
    wait_for("the processor to apply an event on the primary", T, || {
        publisher.publish_json(
            &wire::routing::host_status(host),
            json!({"server_id": host, "status": "online"}),
        );
        (status_on(&pg.primary)? == "online").then_some(())
    });

    // The primary is gone (as a power cut: no shutdown checkpoint); the replica is promoted.
    pg.primary.stop();
    pg.replica.promote().unwrap();
    publisher.publish_json(
        &wire::routing::host_status(host),
        json!({"server_id": host, "status": "offline"}),
    );
    wait_for(
        "the processor to apply the next event on the new primary",
        T,
        || (status_on(&pg.replica)? == "offline").then_some(()),
    );
    wait_for("the API to write to the new primary", T, || {
        add("after").ok()
    });
    let mut promoted = pg.replica.client("manman_failover").unwrap();
    let names: Vec<String> = promoted
        .query("SELECT name FROM servers ORDER BY server_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        names.contains(&"before".to_string()) && names.contains(&"after".to_string()),
        "{names:?}"
    );
}
