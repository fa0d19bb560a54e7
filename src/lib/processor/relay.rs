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
    #[error("cannot get a database connection")]
    Pool(#[from] r2d2::Error),
    #[error("the outbox query failed")]
    Db(#[from] postgres::Error),
}

impl OutboxRelay {
    pub fn run(&self, shutdown: &ShutdownSignal) -> Result<(), String> {
        bus::stay_connected(&self.rabbitmq_url, "outbox-relay", shutdown, |conn| {
            let channel = conn.open_channel(None)?;
            topology::declare_external_exchange(&channel, &self.exchange)?;
            let mut publisher = ConfirmedPublisher::new(channel)?;
            self.relay_until_shutdown(&mut publisher, shutdown)
        });
        Ok(())
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
                Err(e) => {
                    let delay = backoff.delay(db_failures);
                    db_failures += 1;
                    log::warn!(
                        "outbox relay: {}; retrying in {delay:?}",
                        crate::errors::chain(&e)
                    );
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
        loop {
            let mut client = self.pool.get()?;
            let mut tx = client.transaction()?;
            let queued = outbox::claim_oldest(&mut tx, BATCH)?;
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
            outbox::delete(&mut tx, &ids)?;
            tx.commit()?;
            self.metrics.published.add(ids.len() as u64);
            self.metrics.outbox_depth.set(ids.len() as u64);
        }
    }
}
