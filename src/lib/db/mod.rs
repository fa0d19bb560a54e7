//! PostgreSQL plumbing: the r2d2 pool, migrations, failure classification, and one repository
//! module per table group.

pub mod catalog;
pub mod inbox;
pub mod log_references;
pub mod migrate;
pub mod outbox;
pub mod servers;
pub mod sessions;
pub mod statements;

use std::time::Duration;

use r2d2_postgres::postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

pub use statements::{CachedConnection, Tx};

pub type DbPool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
pub type PooledConnection = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Pool sizing, from the seed: max 5, min idle 2, idle timeout 5 min, connect timeout 30 s.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: u32,
    pub min_idle: u32,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_size: 5,
            min_idle: 2,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds the pool and verifies the database answers before returning.
pub fn pool(config: postgres::Config, settings: &PoolSettings) -> Result<DbPool, String> {
    let mut config = config;
    config.connect_timeout(settings.connect_timeout.min(Duration::from_secs(10)));
    // One direct connection first: a refused or misconfigured database fails now, with the
    // server's own error, rather than after the pool's 30 s checkout timeout.
    config
        .connect(NoTls)
        .map_err(|e| format!("database is not reachable: {e}"))?;
    let manager = PostgresConnectionManager::new(config, NoTls);
    let pool = r2d2::Pool::builder()
        .max_size(settings.max_size)
        .min_idle(Some(settings.min_idle))
        .idle_timeout(Some(settings.idle_timeout))
        .connection_timeout(settings.connect_timeout)
        .test_on_check_out(false)
        .build_unchecked(manager);
    ping(&pool).map_err(|e| format!("database is not reachable: {e}"))?;
    Ok(pool)
}

/// `SELECT 1` through the pool (readiness).
pub fn ping(pool: &DbPool) -> Result<(), String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    conn.simple_query("SELECT 1").map_err(|e| e.to_string())?;
    Ok(())
}

/// How a database failure should be treated by whoever retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The database is unreachable or going away: wait for it, the work itself is fine.
    Outage,
    /// A conflict that may succeed if tried again (serialization failure, deadlock).
    Retryable,
    /// The statement will never succeed with this input.
    Permanent,
}

pub fn classify(err: &postgres::Error) -> FailureKind {
    if err.is_closed() {
        return FailureKind::Outage;
    }
    match err.code().map(|c| c.code()) {
        Some(code) if code.starts_with("08") || code.starts_with("57P") => FailureKind::Outage,
        Some(code) if code.starts_with("53") => FailureKind::Outage,
        Some("40001" | "40P01" | "55P03") => FailureKind::Retryable,
        Some(_) => FailureKind::Permanent,
        // No SQLSTATE: an I/O or protocol error on the socket.
        None if std::error::Error::source(err)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()) =>
        {
            FailureKind::Outage
        }
        None => FailureKind::Permanent,
    }
}
