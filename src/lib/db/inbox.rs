//! The inbox: ids of messages already applied, so a redelivery after a crash is not applied
//! twice. Rows are pruned after a retention period.

use std::collections::HashSet;

use postgres::GenericClient;

use super::Tx;

pub fn already_processed(
    tx: &mut Tx<'_>,
    ids: &[&str],
) -> Result<HashSet<String>, postgres::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = tx.query(
        "SELECT message_id FROM processed_messages WHERE message_id = ANY($1)",
        &[&ids],
    )?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

pub fn record_processed(tx: &mut Tx<'_>, ids: &[&str]) -> Result<(), postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO processed_messages (message_id) SELECT unnest($1::text[])
         ON CONFLICT DO NOTHING",
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
