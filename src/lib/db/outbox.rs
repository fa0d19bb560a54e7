//! The transactional outbox: external events written in the same transaction as the state
//! change they announce, then published (at least once) and deleted by the relay.

use postgres::GenericClient;

use super::Tx;

/// An event bound for the external exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub routing_key: String,
    pub payload: serde_json::Value,
}

/// A queued event with its id, as read back by the relay.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    pub event_id: i64,
    pub event: OutboxEvent,
}

const INSERT: &str = "INSERT INTO event_outbox (routing_key, payload)
                      SELECT * FROM unnest($1::text[], $2::jsonb[])";

/// Queues events in the caller's transaction (one statement for the whole slice).
pub fn enqueue(tx: &mut Tx<'_>, events: &[OutboxEvent]) -> Result<(), postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = events.iter().map(|e| e.routing_key.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
    tx.execute(INSERT, &[&keys, &payloads])?;
    Ok(())
}

/// [`enqueue`] on a plain client or transaction (the API's writes, which keep no statement
/// cache).
pub fn enqueue_in(
    c: &mut impl GenericClient,
    events: &[OutboxEvent],
) -> Result<(), postgres::Error> {
    let keys: Vec<&str> = events.iter().map(|e| e.routing_key.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
    c.execute(INSERT, &[&keys, &payloads])?;
    Ok(())
}

/// The oldest queued events, locked so that a second relay skips them.
pub fn claim_oldest(
    client: &mut impl GenericClient,
    limit: i64,
) -> Result<Vec<QueuedEvent>, postgres::Error> {
    let rows = client.query(
        "SELECT event_id, routing_key, payload FROM event_outbox
          ORDER BY event_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        &[&limit],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| QueuedEvent {
            event_id: r.get(0),
            event: OutboxEvent {
                routing_key: r.get(1),
                payload: r.get(2),
            },
        })
        .collect())
}

pub fn delete(client: &mut impl GenericClient, ids: &[i64]) -> Result<u64, postgres::Error> {
    client.execute("DELETE FROM event_outbox WHERE event_id = ANY($1)", &[&ids])
}

/// Events waiting to be published (a metric and a test probe).
pub fn depth(client: &mut impl GenericClient) -> Result<i64, postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM event_outbox", &[])?
        .get(0))
}
