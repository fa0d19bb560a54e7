//! The stale host checker: every interval, hosts silent for longer than the threshold are
//! marked offline in one statement that also queues their `manman.host.stale` events; and
//! hosts offline for longer than `HOST_LOST_AFTER_SECONDS` lose their live sessions (`lost`,
//! ports freed, `manman.session.lost` queued).
//!
//! It does not cry wolf after a pause: no host is judged stale before the checker has run for
//! a full threshold (the hosts' heartbeats that waited in the queue are applied meanwhile,
//! with the time they were sent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::metrics::ProcessorMetrics;
use crate::db::{inbox, servers, sessions, DbPool};
use crate::lifecycle::ShutdownSignal;

/// How long applied message ids are remembered for deduplication.
const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct StaleHostChecker {
    pub pool: DbPool,
    pub threshold: Duration,
    pub interval: Duration,
    pub host_lost_after: Duration,
    /// Usage history older than this is pruned at each pass.
    pub history_keep: Duration,
    /// When the checker began: hosts get a full threshold after it to be heard from.
    pub started: Instant,
    pub relay_wakeup: Sender<()>,
    pub metrics: Arc<ProcessorMetrics>,
}

/// A pass that could not finish; the next interval tries again.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no database connection")]
    Pool(#[from] r2d2::Error),
    #[error("the stale host query failed")]
    Db(#[from] postgres::Error),
}

impl StaleHostChecker {
    /// One pass; returns the hosts it marked offline.
    pub fn check_once(&self) -> Result<Vec<servers::StaleHost>, CheckError> {
        let mut client = self.pool.get()?;
        let stale = if self.started.elapsed() >= self.threshold {
            servers::mark_stale_offline(&mut *client, self.threshold.as_secs_f64())?
        } else {
            Vec::new()
        };
        for host in &stale {
            log::warn!(server_id = host.server_id, name = host.name.as_str();
                "host is stale (last seen {:?}); marked offline", host.last_seen);
        }
        if !stale.is_empty() {
            self.metrics.stale_hosts.add(stale.len() as u64);
            let _ = self.relay_wakeup.try_send(());
        }
        let grace = self.host_lost_after.as_secs_f64();
        let reason = format!("host offline for more than {grace} s");
        let lost = sessions::end_sessions_of_lost_hosts(&mut *client, grace, &reason)?;
        if lost > 0 {
            log::warn!("{lost} session(s) ended lost: {reason}");
            let _ = self.relay_wakeup.try_send(());
        }
        if let Err(e) = inbox::prune(&mut *client, INBOX_RETENTION.as_secs_f64()) {
            log::warn!("cannot prune processed message ids: {e}");
        }
        match sessions::prune_history(&mut *client, self.history_keep) {
            Ok(0) => {}
            Ok(n) => log::debug!("{n} history point(s) past SAMPLE_HISTORY_DAYS pruned"),
            Err(e) => log::warn!("cannot prune usage history: {e}"),
        }
        Ok(stale)
    }

    pub fn run(&self, shutdown: &ShutdownSignal) -> Result<(), String> {
        loop {
            // The first pass that may judge staleness comes a full threshold after start.
            let until_judging = self.threshold.saturating_sub(self.started.elapsed());
            let wait = if until_judging.is_zero() {
                self.interval
            } else {
                self.interval.min(until_judging)
            };
            if let Err(e) = self.check_once() {
                log::warn!(
                    "stale host check failed: {}; will retry next interval",
                    crate::errors::chain(&e)
                );
            }
            if shutdown.wait(wait) {
                return Ok(());
            }
        }
    }
}
