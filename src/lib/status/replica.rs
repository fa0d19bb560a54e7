//! How far behind its primary the database the status API reads is (`STATUS_DATABASE_URL` on
//! a streaming replica): measured every few seconds, shown in `/status/system` and `/metrics`,
//! since every answer is as old as the lag plus the cache period.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::db::DbPool;
use crate::lifecycle::ShutdownSignal;

/// How often the lag is measured.
pub const MEASURE_EVERY: Duration = Duration::from_secs(2);

/// The last measurement (all zero on a primary).
#[derive(Debug, Default)]
pub struct ReplicaLag {
    measured: AtomicBool,
    standby: AtomicBool,
    /// Whether the standby's WAL receiver is streaming from a primary right now.
    streaming: AtomicBool,
    lag_ms: AtomicU64,
}

/// The lag is the time since the last replayed transaction only while WAL received is still
/// being replayed: a standby that has replayed all it received is not behind, however long
/// the primary has been idle.
const LAG_SQL: &str = "SELECT pg_is_in_recovery(),
        EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
        CASE WHEN NOT pg_is_in_recovery()
                  OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
             THEN 0
             ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
        END::float8";

impl ReplicaLag {
    /// Measures once; a failure leaves the last measurement (the database being away shows
    /// elsewhere: `/readyz`, 503s).
    pub fn measure(&self, pool: &DbPool) {
        let Ok(mut conn) = pool.get() else { return };
        let Ok(row) = conn.query_one(LAG_SQL, &[]) else {
            return;
        };
        let (standby, streaming, lag): (bool, bool, f64) = (row.get(0), row.get(1), row.get(2));
        self.standby.store(standby, Ordering::Relaxed);
        self.streaming.store(streaming, Ordering::Relaxed);
        self.lag_ms
            .store((lag.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
        self.measured.store(true, Ordering::Relaxed);
    }

    /// Measures every [`MEASURE_EVERY`] until shutdown.
    pub fn keep_measuring(&self, pool: &DbPool, shutdown: &ShutdownSignal) {
        loop {
            self.measure(pool);
            if shutdown.wait(MEASURE_EVERY) {
                return;
            }
        }
    }

    pub fn lag_seconds(&self) -> f64 {
        self.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// The `database` part of `/status/system`.
    pub fn describe(&self) -> Value {
        if !self.measured.load(Ordering::Relaxed) {
            return json!({"role": "unknown"});
        }
        if !self.standby.load(Ordering::Relaxed) {
            return json!({"role": "primary", "lag_seconds": 0.0});
        }
        json!({
            "role": "replica",
            "streaming": self.streaming.load(Ordering::Relaxed),
            "lag_seconds": self.lag_seconds(),
        })
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP manman_status_database_replica_lag_seconds How far behind its primary the \
             database the status API reads is (0 on a primary).\n\
             # TYPE manman_status_database_replica_lag_seconds gauge\n\
             manman_status_database_replica_lag_seconds {}",
            self.lag_seconds()
        );
        let _ = writeln!(
            out,
            "# HELP manman_status_database_is_replica 1 when the status API reads a standby.\n\
             # TYPE manman_status_database_is_replica gauge\n\
             manman_status_database_is_replica {}",
            u8::from(self.standby.load(Ordering::Relaxed))
        );
    }
}
