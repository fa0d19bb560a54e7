//! PostgreSQL plumbing: the r2d2 pool, migrations, failure classification, and one repository
//! module per table group.

pub mod backups;
pub mod catalog;
pub mod inbox;
pub mod log_references;
pub mod maintenance;
pub mod migrate;
pub mod outbox;
pub mod placement;
pub mod schedules;
pub mod servers;
pub mod sessions;
pub mod statements;
pub mod tokens;

use std::time::Duration;

use postgres::config::SslMode;
use postgres_native_tls::MakeTlsConnector;
use r2d2_postgres::PostgresConnectionManager;

pub use statements::{CachedConnection, Tx};

pub type DbPool = r2d2::Pool<PostgresConnectionManager<MakeTlsConnector>>;
pub type PooledConnection = r2d2::PooledConnection<PostgresConnectionManager<MakeTlsConnector>>;

/// The TLS connector for `config`'s `sslmode` (libpq's names):
/// - `disable`: plaintext;
/// - `prefer` (the default): TLS when the server offers it, its certificate not checked (what
///   libpq does: it defeats a passive listener only);
/// - `require` (and `verify-full`, its synonym here): TLS, the certificate checked against the
///   system's trust store (`SSL_CERT_FILE` names a private CA's PEM) and the host name; the
///   connection fails otherwise. Stricter than libpq's `require`, on purpose.
pub fn tls_for(config: &postgres::Config) -> Result<MakeTlsConnector, DbError> {
    let mut builder = native_tls::TlsConnector::builder();
    if config.get_ssl_mode() != SslMode::Require {
        builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    let connector = builder.build().map_err(DbError::Tls)?;
    Ok(MakeTlsConnector::new(connector))
}

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
pub fn pool(config: postgres::Config, settings: &PoolSettings) -> Result<DbPool, DbError> {
    let mut config = config;
    config.connect_timeout(settings.connect_timeout.min(Duration::from_secs(10)));
    // One direct connection first: a refused or misconfigured database fails now, with the
    // server's own error, rather than after the pool's 30 s checkout timeout.
    let tls = tls_for(&config)?;
    config.connect(tls.clone()).map_err(DbError::Connect)?;
    let manager = PostgresConnectionManager::new(config, tls);
    let pool = r2d2::Pool::builder()
        .max_size(settings.max_size)
        .min_idle(Some(settings.min_idle))
        .idle_timeout(Some(settings.idle_timeout))
        .connection_timeout(settings.connect_timeout)
        .test_on_check_out(false)
        .build_unchecked(manager);
    ping(&pool)?;
    Ok(pool)
}

/// `SELECT 1` through the pool (readiness).
pub fn ping(pool: &DbPool) -> Result<(), DbError> {
    let mut conn = pool.get().map_err(DbError::Pool)?;
    conn.simple_query("SELECT 1").map_err(DbError::Query)?;
    Ok(())
}

/// Why the database could not be used (its sources kept: a TLS failure says which
/// certificate check failed).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot set up TLS for the database")]
    Tls(#[source] native_tls::Error),
    #[error("the database is not reachable")]
    Connect(#[source] postgres::Error),
    #[error("no database connection")]
    Pool(#[source] r2d2::Error),
    #[error("the database did not answer")]
    Query(#[source] postgres::Error),
}

crate::errors::read_as_one_line!(DbError);

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
        // A standby (a failover under way, or a URL without target_session_attrs=read-write
        // that reached the replica): the work is fine once a primary is back.
        Some("25006") => FailureKind::Outage,
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

/// One connection outside any pool (the CLI's `migrate` and `token create --bootstrap`, the
/// archiver), with the same TLS rules as the pool.
pub fn connect_once(config: &postgres::Config) -> Result<postgres::Client, DbError> {
    config.connect(tls_for(config)?).map_err(DbError::Connect)
}
