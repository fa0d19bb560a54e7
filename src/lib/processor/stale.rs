//! The stale host checker: every interval, hosts silent for longer than the threshold are
//! marked offline in one statement that also queues their `manman.host.stale` events.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::metrics::ProcessorMetrics;
use crate::db::{inbox, servers, DbPool};
use crate::lifecycle::ShutdownSignal;

/// How long applied message ids are remembered for deduplication.
const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct StaleHostChecker {
    pub pool: DbPool,
    pub threshold: Duration,
    pub interval: Duration,
    pub relay_wakeup: Sender<()>,
    pub metrics: Arc<ProcessorMetrics>,
}

impl StaleHostChecker {
    /// One pass; returns the hosts it marked offline.
    pub fn check_once(&self) -> Result<Vec<servers::StaleHost>, String> {
        let mut client = self.pool.get().map_err(|e| e.to_string())?;
        let stale = servers::mark_stale_offline(&mut *client, self.threshold.as_secs_f64())
            .map_err(|e| e.to_string())?;
        for host in &stale {
            log::warn!(server_id = host.server_id, name = host.name.as_str();
                "host is stale (last seen {:?}); marked offline", host.last_seen);
        }
        if !stale.is_empty() {
            self.metrics.stale_hosts.add(stale.len() as u64);
            let _ = self.relay_wakeup.try_send(());
        }
        if let Err(e) = inbox::prune(&mut *client, INBOX_RETENTION.as_secs_f64()) {
            log::warn!("cannot prune processed message ids: {e}");
        }
        Ok(stale)
    }

    pub fn run(&self, shutdown: &ShutdownSignal) -> Result<(), String> {
        loop {
            if let Err(e) = self.check_once() {
                log::warn!("stale host check failed: {e}; will retry next interval");
            }
            if shutdown.wait(self.interval) {
                return Ok(());
            }
        }
    }
}
