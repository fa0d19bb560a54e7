//! The outbox relay: publishes queued external events with confirms, then deletes them.
//! Woken by the consumer after each commit, and every second in case a wakeup was missed
//! (or events were left by a processor that died between commit and publish).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Receiver};

use super::metrics::ProcessorMetrics;
use crate::bus::{self, topology, BusError, ConfirmedPublisher, OutgoingMessage};
use crate::db::{outbox, DbPool};
use crate::lifecycle::ShutdownSignal;
use crate::retry::Backoff;

const BATCH: i64 = 500;

pub struct OutboxRelay {
    pub rabbitmq_url: String,
    pub exchange: String,
    pub pool: DbPool,
    pub wakeup: Receiver<()>,
    pub metrics: Arc<ProcessorMetrics>,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("database: {0}")]
    Db(String),
}

impl OutboxRelay {
    pub fn run(&self, shutdown: &ShutdownSignal) -> Result<(), String> {
        let backoff = Backoff::reconnect();
        let mut failures = 0;
        loop {
            let Ok(mut conn) = bus::connect(&self.rabbitmq_url, shutdown, "outbox-relay") else {
                return Ok(());
            };
            let result = conn
                .open_channel(None)
                .map_err(BusError::from)
                .and_then(|ch| {
                    topology::declare_external_exchange(&ch, &self.exchange)?;
                    ConfirmedPublisher::new(ch)
                })
                .and_then(|mut publisher| self.relay_until_shutdown(&mut publisher, shutdown));
            match result {
                Ok(()) | Err(BusError::Shutdown) => {
                    let _ = conn.close();
                    return Ok(());
                }
                Err(e) => {
                    let delay = backoff.delay(failures);
                    failures += 1;
                    log::warn!("outbox relay lost the broker: {e}; reconnecting in {delay:?}");
                    if shutdown.wait(delay) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn relay_until_shutdown(
        &self,
        publisher: &mut ConfirmedPublisher,
        shutdown: &ShutdownSignal,
    ) -> Result<(), BusError> {
        let backoff = Backoff::reconnect();
        let mut db_failures = 0;
        loop {
            match self.drain(publisher) {
                Ok(()) => db_failures = 0,
                Err(RelayError::Bus(e)) => return Err(e),
                Err(RelayError::Db(e)) => {
                    let delay = backoff.delay(db_failures);
                    db_failures += 1;
                    log::warn!("outbox relay cannot read the outbox: {e}; retrying in {delay:?}");
                    if shutdown.wait(delay) {
                        return Ok(());
                    }
                    continue;
                }
            }
            select! {
                recv(self.wakeup) -> _ => {}
                recv(shutdown.receiver()) -> _ => {
                    // Best effort: what stays queued is published at the next start.
                    let _ = self.drain(publisher);
                    return Ok(());
                }
                default(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Publishes queued events until the outbox is empty.
    fn drain(&self, publisher: &mut ConfirmedPublisher) -> Result<(), RelayError> {
        let db = |e: &dyn std::fmt::Display| RelayError::Db(e.to_string());
        loop {
            let mut client = self.pool.get().map_err(|e| db(&e))?;
            let mut tx = client.transaction().map_err(|e| db(&e))?;
            let queued = outbox::claim_oldest(&mut tx, BATCH).map_err(|e| db(&e))?;
            if queued.is_empty() {
                self.metrics.outbox_depth.set(0);
                return Ok(());
            }
            let messages: Vec<OutgoingMessage> = queued
                .iter()
                .map(|q| {
                    OutgoingMessage::json(&self.exchange, &q.event.routing_key, &q.event.payload)
                        .with_message_id(format!("outbox-{}", q.event_id))
                })
                .collect();
            publisher.publish_all(&messages, Duration::from_secs(10))?;
            let ids: Vec<i64> = queued.iter().map(|q| q.event_id).collect();
            outbox::delete(&mut tx, &ids).map_err(|e| db(&e))?;
            tx.commit().map_err(|e| db(&e))?;
            self.metrics.published.add(ids.len() as u64);
            self.metrics.outbox_depth.set(ids.len() as u64);
        }
    }
}
