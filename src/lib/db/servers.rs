//! Queries on `servers` (hosts): batch status changes and heartbeats, stale detection.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::Tx;
use crate::wire::{HostCapacity, HostStatus};

/// A host as locked for an update.
#[derive(Debug, Clone, PartialEq)]
pub struct LockedHost {
    pub status: HostStatus,
    pub name: String,
}

/// Locks the given hosts (in id order, so concurrent lockers cannot deadlock) until the
/// transaction ends. Hosts that do not exist are absent from the map.
pub fn lock_many(
    tx: &mut Tx<'_>,
    ids: &[i64],
) -> Result<HashMap<i64, LockedHost>, postgres::Error> {
    let rows = tx.query(
        "SELECT server_id, status, name FROM servers WHERE server_id = ANY($1)
          ORDER BY server_id FOR UPDATE",
        &[&ids],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let status = r.get::<_, String>(1).parse().unwrap_or(HostStatus::Offline);
            (
                r.get(0),
                LockedHost {
                    status,
                    name: r.get(2),
                },
            )
        })
        .collect())
}

/// A host's net change within one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostUpdate {
    pub server_id: i64,
    pub status: HostStatus,
    /// When its latest message was sent (unix ms), if it said; else the receive time counts.
    pub sent_at_ms: Option<i64>,
    /// Its memory and port range from its latest heartbeat, if it sent them.
    pub capacity: Option<HostCapacity>,
}

/// Sets each host's final status and `last_seen` (the send time of its latest message, never
/// in the future and never going backwards), and `offline_since` when it goes offline, in one
/// statement.
pub fn apply_statuses(tx: &mut Tx<'_>, updates: &[HostUpdate]) -> Result<(), postgres::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = updates.iter().map(|u| u.server_id).collect();
    let statuses: Vec<&str> = updates.iter().map(|u| u.status.as_str()).collect();
    let sent: Vec<Option<i64>> = updates.iter().map(|u| u.sent_at_ms).collect();
    let capacity = |f: fn(&HostCapacity) -> i64| -> Vec<Option<i64>> {
        updates.iter().map(|u| u.capacity.as_ref().map(f)).collect()
    };
    let total = capacity(|c| c.memory_total_bytes as i64);
    let available = capacity(|c| c.memory_available_bytes as i64);
    let low = capacity(|c| c.port_range_low.into());
    let high = capacity(|c| c.port_range_high.into());
    tx.execute(
        "UPDATE servers s
            SET status = u.status,
                last_seen = greatest(s.last_seen,
                    least(coalesce(to_timestamp(u.sent_ms / 1000.0), now()), now())),
                offline_since = CASE WHEN u.status = 'online' THEN NULL
                                     WHEN s.status = 'offline' THEN coalesce(s.offline_since, now())
                                     ELSE now() END,
                updated_at = CASE WHEN s.status <> u.status THEN now() ELSE s.updated_at END,
                memory_total_bytes = coalesce(u.total, s.memory_total_bytes),
                memory_available_bytes = coalesce(u.available, s.memory_available_bytes),
                port_range_low = coalesce(u.low, s.port_range_low),
                port_range_high = coalesce(u.high, s.port_range_high)
           FROM unnest($1::bigint[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[],
                       $7::int8[]) AS u(server_id, status, sent_ms, total, available, low, high)
          WHERE s.server_id = u.server_id AND s.server_id = ANY($1)",
        &[&ids, &statuses, &sent, &total, &available, &low, &high],
    )?;
    Ok(())
}

/// A host marked offline by the stale checker.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleHost {
    pub server_id: i64,
    pub name: String,
    pub last_seen: Option<DateTime<Utc>>,
}

/// In one statement: marks every online host silent for longer than `threshold_secs` offline
/// and queues a `manman.host.stale` event for each in the outbox.
pub fn mark_stale_offline(
    client: &mut impl GenericClient,
    threshold_secs: f64,
) -> Result<Vec<StaleHost>, postgres::Error> {
    let rows = client.query(
        "WITH stale AS (
             UPDATE servers
                SET status = 'offline', updated_at = now(), offline_since = now()
              WHERE status = 'online'
                AND (last_seen IS NULL OR last_seen < now() - make_interval(secs => $1))
          RETURNING server_id, name, last_seen
         ), queued AS (
             INSERT INTO event_outbox (routing_key, payload)
             SELECT 'manman.host.stale',
                    jsonb_build_object('server_id', server_id, 'name', name, 'status', 'offline',
                                       'previous_status', 'online', 'last_seen', last_seen,
                                       'threshold_seconds', $1::float8)
               FROM stale
             RETURNING event_id
         )
         SELECT server_id, name, last_seen FROM stale",
        &[&threshold_secs],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| StaleHost {
            server_id: r.get(0),
            name: r.get(1),
            last_seen: r.get(2),
        })
        .collect())
}
