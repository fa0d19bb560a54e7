//! Prints a session's live console for a while (`logs.session.{id}` on the broker) — the demo's
//! window onto a game server until the log processor (and `manman logs`) exists.
//! Usage: tail_session_logs SESSION_ID [SECONDS]

use std::time::{Duration, Instant};

use amiquip::{ConsumerMessage, ConsumerOptions, FieldTable, QueueDeclareOptions};
use manman::bus::{connection, topology};
use manman::config::{self, Env};
use manman::wire::routing;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let session: i64 = args
        .next()
        .ok_or("usage: tail_session_logs SESSION_ID [SECONDS]")?
        .parse()?;
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let mut conn = connection::open(&config::rabbitmq_url(&Env::from_process())?)?;
    let channel = conn.open_channel(None)?;
    let exchange = topology::declare_manman_exchange(&channel)?;
    let queue = channel.queue_declare(
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )?;
    queue.bind(&exchange, routing::session_logs(session), FieldTable::new())?;
    let consumer = queue.consume(ConsumerOptions {
        no_ack: true,
        ..Default::default()
    })?;
    let until = Instant::now() + Duration::from_secs(seconds);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if let Ok(ConsumerMessage::Delivery(d)) = consumer.receiver().recv_timeout(left) {
            let line: serde_json::Value = serde_json::from_slice(&d.body)?;
            println!(
                "  [{}] {}",
                line["source"].as_str().unwrap_or("?"),
                line["message"].as_str().unwrap_or("")
            );
        }
    }
    let _ = conn.close();
    Ok(())
}
