//! The host's one outbound AMQP connection: statuses, heartbeats and log lines, published in
//! batches with confirms. Statuses never wait behind logs and are never dropped; logs go
//! through a bounded queue and are dropped (and counted) if the broker is away for long.
//! After a reconnect the current state is re-published first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};

use crate::bus::{self, topology, ConfirmedPublisher, OutgoingMessage};
use crate::lifecycle::ShutdownSignal;
use crate::retry::Backoff;

const BATCH: usize = 500;
pub const LOG_QUEUE: usize = 20_000;

/// Where the host's threads put what they want published.
#[derive(Clone)]
pub struct Outbound {
    pub critical: Sender<OutgoingMessage>,
    pub logs: Sender<OutgoingMessage>,
    pub dropped_logs: Arc<AtomicU64>,
}

impl Outbound {
    pub fn send(&self, message: OutgoingMessage) {
        let _ = self.critical.send(message);
    }

    /// Never blocks: a full queue drops the line and counts it.
    pub fn log(&self, message: OutgoingMessage) {
        if self.logs.try_send(message).is_err() {
            self.dropped_logs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Inbound {
    pub critical: Receiver<OutgoingMessage>,
    pub logs: Receiver<OutgoingMessage>,
}

pub fn channels() -> (Outbound, Inbound) {
    let (ct, cr) = crossbeam_channel::unbounded();
    let (lt, lr) = crossbeam_channel::bounded(LOG_QUEUE);
    (
        Outbound {
            critical: ct,
            logs: lt,
            dropped_logs: Arc::default(),
        },
        Inbound {
            critical: cr,
            logs: lr,
        },
    )
}

/// Publishes until every `Outbound` is dropped and the queues are empty. `resync` returns the
/// messages that describe the current state, sent first after every (re)connect.
pub fn run(
    url: &str,
    inbound: Inbound,
    resync: &dyn Fn() -> Vec<OutgoingMessage>,
    never: &ShutdownSignal,
) -> Result<(), String> {
    let backoff = Backoff::reconnect();
    let mut failures = 0;
    let mut unsent: Vec<OutgoingMessage> = Vec::new();
    let mut first = true;
    loop {
        let Ok(mut conn) = bus::connect(url, never, "host-publisher") else {
            return Ok(());
        };
        let result = (|| -> Result<bool, bus::BusError> {
            let channel = conn.open_channel(None)?;
            // Passive: a host's broker user may publish to the exchange, not (re)configure it.
            topology::manman_exchange_exists(&channel)?;
            let mut publisher = ConfirmedPublisher::new(channel)?.signed_as(bus::broker_user(url));
            if !first {
                let state = resync();
                log::info!("reconnected; re-publishing {} state messages", state.len());
                publisher.publish_all(&state, Duration::from_secs(10))?;
            }
            first = false;
            loop {
                if unsent.is_empty() && !next_batch(&inbound, &mut unsent) {
                    return Ok(true);
                }
                publisher.publish_all(&unsent, Duration::from_secs(10))?;
                unsent.clear();
                failures = 0;
            }
        })();
        match result {
            Ok(_) => {
                let _ = conn.close();
                return Ok(());
            }
            Err(e) => {
                let delay = backoff.delay(failures);
                failures += 1;
                log::warn!(
                    "host publisher lost the broker: {e}; {} messages held; retrying in {delay:?}",
                    unsent.len()
                );
                std::thread::sleep(delay);
            }
        }
    }
}

/// Waits for messages and takes a batch, statuses first. False once the queues are closed
/// (every `Outbound` dropped; both close together) and empty.
fn next_batch(inbound: &Inbound, batch: &mut Vec<OutgoingMessage>) -> bool {
    let first = select! {
        recv(inbound.critical) -> m => m,
        recv(inbound.logs) -> m => m,
    };
    let first = match first {
        Ok(m) => m,
        Err(_) => match inbound
            .critical
            .try_recv()
            .or_else(|_| inbound.logs.try_recv())
        {
            Ok(m) => m,
            Err(_) => return false,
        },
    };
    batch.push(first);
    while batch.len() < BATCH {
        match inbound
            .critical
            .try_recv()
            .or_else(|_| inbound.logs.try_recv())
        {
            Ok(m) => batch.push(m),
            Err(_) => break,
        }
    }
    true
}
