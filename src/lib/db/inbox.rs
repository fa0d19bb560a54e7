//! The inbox: ids of messages already applied, so a redelivery after a crash is not applied
//! twice. Ids are claimed in the applying transaction (one insert per batch; the primary key
//! decides, so no query plan can turn this into a scan) and pruned after a retention period.

use std::collections::HashSet;

use postgres::GenericClient;

use super::Tx;

/// Records `ids` as processed; returns the ones that were not recorded before (the new ones).
pub fn claim(tx: &mut Tx<'_>, ids: &[&str]) -> Result<HashSet<String>, postgres::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = tx.query(
        "INSERT INTO processed_messages (message_id) SELECT unnest($1::text[])
         ON CONFLICT DO NOTHING RETURNING message_id",
        &[&ids],
    )?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// Un-records ids claimed in this transaction whose messages were rejected, so that a
/// redelivery of a rejected message is dead-lettered again rather than taken as a duplicate.
pub fn release(tx: &mut Tx<'_>, ids: &[&str]) -> Result<(), postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM processed_messages WHERE message_id = ANY($1)",
        &[&ids],
    )?;
    Ok(())
}

/// Forgets ids older than `retention_secs`; a redelivery is never that late.
pub fn prune(client: &mut impl GenericClient, retention_secs: f64) -> Result<u64, postgres::Error> {
    client.execute(
        "DELETE FROM processed_messages WHERE processed_at < now() - make_interval(secs => $1)",
        &[&retention_secs],
    )
}
