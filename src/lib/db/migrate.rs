//! Numbered plain-SQL migrations from `sql/`, embedded in the binary, applied in order, each in
//! its own transaction, recorded in `schema_migrations` with a checksum; safe to run twice and
//! from two places at once (an advisory lock serialises runners).

use chrono::{DateTime, Utc};
use postgres::Client;

/// A migration file: `NNNN_name.sql`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:expr, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!("../../../sql/", $file)),
        }
    };
}

/// Every migration, in order. A test checks this list against the files in `sql/`.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_core_schema.sql"),
    migration!(2, "0002_processor_outbox.sql"),
    migration!(3, "0003_status_indexes.sql"),
    migration!(4, "0004_sessions_stay_true.sql"),
    migration!(5, "0005_tokens_and_host_identity.sql"),
    migration!(6, "0006_deletes_keep_history.sql"),
    migration!(7, "0007_session_samples.sql"),
    migration!(8, "0008_probes_and_placement.sql"),
    migration!(9, "0009_secret_env.sql"),
    migration!(10, "0010_backups.sql"),
    migration!(11, "0011_resource_limits.sql"),
    migration!(12, "0012_players.sql"),
    migration!(13, "0013_backup_snapshots.sql"),
    migration!(14, "0014_maintenance.sql"),
    migration!(15, "0015_session_history.sql"),
    migration!(16, "0016_schedules.sql"),
];

const LOCK_KEY: i64 = 0x6d616e6d616e; // "manman"

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database error: {0}")]
    Db(#[from] postgres::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: i64,
        name: &'static str,
        source: postgres::Error,
    },
    #[error("migration {version} was applied from a different file (checksum differs); refusing to continue")]
    ChecksumMismatch { version: i64 },
}

/// One row of `manman migrate --status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationState {
    pub version: i64,
    pub name: &'static str,
    pub applied_at: Option<DateTime<Utc>>,
}

fn checksum(sql: &str) -> String {
    // FNV-1a: enough to notice an edited migration, no extra crate.
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in sql.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

fn ensure_table(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     bigint PRIMARY KEY,
             name        text NOT NULL,
             checksum    text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
}

/// Applies what is missing; returns the migrations applied now (empty when up to date).
pub fn run(client: &mut Client) -> Result<Vec<Migration>, MigrateError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])?;
    let result = run_locked(client);
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
    result
}

fn run_locked(client: &mut Client) -> Result<Vec<Migration>, MigrateError> {
    ensure_table(client)?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let existing = client.query_opt(
            "SELECT checksum FROM schema_migrations WHERE version = $1",
            &[&m.version],
        )?;
        if let Some(row) = existing {
            if row.get::<_, String>(0) != checksum(m.sql) {
                return Err(MigrateError::ChecksumMismatch { version: m.version });
            }
            continue;
        }
        let fail = |source| MigrateError::Failed {
            version: m.version,
            name: m.name,
            source,
        };
        let mut tx = client.transaction()?;
        tx.batch_execute(m.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        applied.push(*m);
    }
    Ok(applied)
}

/// Every known migration and when it was applied (`None` = pending).
pub fn status(client: &mut Client) -> Result<Vec<MigrationState>, MigrateError> {
    ensure_table(client)?;
    let rows = client.query("SELECT version, applied_at FROM schema_migrations", &[])?;
    let applied: std::collections::HashMap<i64, DateTime<Utc>> =
        rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(MIGRATIONS
        .iter()
        .map(|m| MigrationState {
            version: m.version,
            name: m.name,
            applied_at: applied.get(&m.version).copied(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sql_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }

    #[test]
    fn checksum_notices_edits() {
        assert_eq!(checksum("a"), checksum("a"));
        assert_ne!(checksum("CREATE TABLE a ()"), checksum("CREATE TABLE b ()"));
    }
}
