//! Queries on `servers` (hosts): status changes, heartbeats, stale detection.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::Tx;
use crate::wire::HostStatus;

/// A host's status before an update, and its name (for events).
#[derive(Debug, Clone, PartialEq)]
pub struct HostBefore {
    pub previous: HostStatus,
    pub name: String,
}

/// Sets `status` and `last_seen = now()` in one statement. `None` if the host does not exist.
pub fn set_status_and_touch(
    tx: &mut Tx<'_>,
    server_id: i64,
    status: HostStatus,
) -> Result<Option<HostBefore>, postgres::Error> {
    let row = tx.query_opt(
        "WITH prev AS (SELECT server_id, status FROM servers WHERE server_id = $1 FOR UPDATE)
         UPDATE servers s
            SET status = $2, last_seen = now(),
                updated_at = CASE WHEN s.status <> $2 THEN now() ELSE s.updated_at END
           FROM prev
          WHERE s.server_id = prev.server_id
      RETURNING prev.status, s.name",
        &[&server_id, &status.as_str()],
    )?;
    Ok(row.map(|r| HostBefore {
        previous: r.get::<_, String>(0).parse().unwrap_or(HostStatus::Offline),
        name: r.get(1),
    }))
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
                SET status = 'offline', updated_at = now()
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
