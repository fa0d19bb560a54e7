//! A stand-in host for the demo until `manman-host` exists: registers a demo host and session
//! in PostgreSQL, publishes what a host would (online, heartbeat, session lifecycle) to the
//! `manman` exchange, and prints the external events the processor publishes in response.

use std::time::Duration;

use amiquip::{ConsumerMessage, ConsumerOptions, FieldTable, QueueDeclareOptions};
use manman::bus::{topology, ConfirmedPublisher, OutgoingMessage};
use manman::config::{self, Env};
use manman::wire::routing;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = Env::from_process();
    let mut db = config::database_config(&env)?.connect(postgres::NoTls)?;
    let server_id: i64 = db
        .query_one(
            "INSERT INTO servers (name) VALUES ('demo-host')
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING server_id",
            &[],
        )?
        .get(0);
    let game_id: i64 = db
        .query_one(
            "INSERT INTO games (name) VALUES ('demo-game')
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING game_id",
            &[],
        )?
        .get(0);
    let config_id: i64 = db
        .query_one(
            "INSERT INTO game_configs (game_id, name, command) VALUES ($1, 'default', 'demo-server')
             ON CONFLICT (game_id, name) DO UPDATE SET name = excluded.name RETURNING config_id",
            &[&game_id],
        )?
        .get(0);
    let sgc_id: i64 = db
        .query_one(
            "INSERT INTO server_game_configs (server_id, game_config_id) VALUES ($1, $2)
             ON CONFLICT (server_id, game_config_id) DO UPDATE SET status = 'active' RETURNING sgc_id",
            &[&server_id, &config_id],
        )?
        .get(0);
    let session_id: i64 = db
        .query_one(
            "INSERT INTO sessions (sgc_id) VALUES ($1) RETURNING session_id",
            &[&sgc_id],
        )?
        .get(0);
    println!("demo host {server_id}, deployment {sgc_id}, new session {session_id}");

    let mut conn = manman::bus::connection::open(&config::rabbitmq_url(&env)?)?;
    let channel = conn.open_channel(None)?;
    let external = topology::declare_external_exchange(
        &channel,
        &env.string("EXTERNAL_EXCHANGE", routing::DEFAULT_EXTERNAL_EXCHANGE),
    )?;
    let queue = channel.queue_declare(
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )?;
    queue.bind(&external, "manman.#", FieldTable::new())?;
    let consumer = queue.consume(ConsumerOptions {
        no_ack: true,
        ..Default::default()
    })?;

    let mut publisher = ConfirmedPublisher::new(conn.open_channel(None)?)?;
    let msg = |key: String, body: serde_json::Value| {
        OutgoingMessage::json(routing::MANMAN_EXCHANGE, &key, &body)
            .with_message_id(format!("demo-{session_id}-{key}-{}", body["status"]))
    };
    let mut messages = vec![
        msg(
            routing::host_status(server_id),
            json!({"server_id": server_id, "status": "online"}),
        ),
        msg(
            routing::host_health(server_id),
            json!({"server_id": server_id, "session_stats": {"total": 1, "running": 0}}),
        ),
    ];
    for status in ["starting", "running"] {
        messages.push(msg(
            routing::session_status(session_id),
            json!({"session_id": session_id, "sgc_id": sgc_id, "status": status, "exit_code": null}),
        ));
    }
    publisher.publish_all(&messages, Duration::from_secs(10))?;
    println!("published {} host events; external events:", messages.len());

    let mut seen_running = false;
    while let Ok(ConsumerMessage::Delivery(d)) = consumer
        .receiver()
        .recv_timeout(Duration::from_secs(if seen_running { 1 } else { 15 }))
    {
        println!(
            "  {:<26} {}",
            d.routing_key,
            String::from_utf8_lossy(&d.body)
        );
        seen_running |= d.routing_key == "manman.session.running";
    }
    if !seen_running {
        return Err("the processor did not announce the session running within 15 s".into());
    }
    let _ = conn.close();
    Ok(())
}
