//! The host's one outbound AMQP connection: statuses, heartbeats and log lines, published in
//! batches with confirms. Statuses never wait behind logs and are never dropped; logs go
//! through a bounded queue and are dropped (and counted) if the broker is away for long.
//! After a reconnect the current state is re-published first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use super::console::{batch_messages, ConsoleLines, ConsoleSettings, QueuedLine};
use crate::bus::{self, topology, ConfirmedPublisher, OutgoingMessage};
use crate::lifecycle::ShutdownSignal;

/// Most messages (statuses and log batches) published per confirm round.
const BATCH: usize = 500;
/// Most console lines taken off the queue per round.
const LINES_PER_ROUND: usize = 20_000;
/// How often an idle publisher still lets the console throttle announce held-back lines.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// Where the host's threads put what they want published.
#[derive(Clone)]
pub struct Outbound {
    pub critical: Sender<OutgoingMessage>,
    /// Console lines: numbered, throttled, queued (never blocking the game).
    pub console: Arc<ConsoleLines>,
}

impl Outbound {
    pub fn send(&self, message: OutgoingMessage) {
        let _ = self.critical.send(message);
    }
}

pub struct Inbound {
    pub critical: Receiver<OutgoingMessage>,
    pub lines: Receiver<QueuedLine>,
    pub console: Arc<ConsoleLines>,
    pub settings: ConsoleSettings,
}

pub fn channels(settings: &ConsoleSettings) -> (Outbound, Inbound) {
    let (ct, cr) = crossbeam_channel::unbounded();
    let (console, lines) = ConsoleLines::new(settings);
    let console = Arc::new(console);
    (
        Outbound {
            critical: ct,
            console: console.clone(),
        },
        Inbound {
            critical: cr,
            lines,
            console,
            settings: settings.clone(),
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
    let mut unsent: Vec<OutgoingMessage> = Vec::new();
    let mut first = true;
    bus::stay_connected(url, "host-publisher", never, |conn| {
        let result = (|| -> Result<(), bus::BusError> {
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
                    return Ok(());
                }
                publisher.publish_all(&unsent, Duration::from_secs(10))?;
                unsent.clear();
            }
        })();
        if result.is_err() && !unsent.is_empty() {
            log::info!("{} messages held until the broker is back", unsent.len());
        }
        result
    });
    Ok(())
}

/// Waits for something to publish and takes a round of it: statuses first, then console
/// lines grouped into per-session batches. A round with lines but no status lingers up to
/// `batch_linger` for more lines, so batches fill under load. False once the queues are
/// closed (every `Outbound` dropped) and empty.
fn next_batch(inbound: &Inbound, batch: &mut Vec<OutgoingMessage>) -> bool {
    let mut lines: Vec<QueuedLine> = Vec::new();
    // The status queue closes when every `Outbound` is gone; the line queue's sender lives
    // in `ConsoleLines`, which the publisher shares, so it never closes.
    let mut closed = false;
    loop {
        inbound.console.tick();
        select! {
            recv(inbound.critical) -> m => match m {
                Ok(m) => batch.push(m),
                Err(_) => closed = true,
            },
            recv(inbound.lines) -> l => lines.extend(l),
            default(IDLE_TICK) => continue,
        }
        break;
    }
    let linger_until = Instant::now() + inbound.settings.batch_linger;
    loop {
        batch.extend(
            inbound
                .critical
                .try_iter()
                .take(BATCH.saturating_sub(batch.len())),
        );
        lines.extend(
            inbound
                .lines
                .try_iter()
                .take(LINES_PER_ROUND.saturating_sub(lines.len())),
        );
        let wait = linger_until.saturating_duration_since(Instant::now());
        if closed
            || !batch.is_empty()
            || lines.is_empty()
            || lines.len() >= inbound.settings.batch_lines
            || wait.is_zero()
        {
            break;
        }
        select! {
            recv(inbound.critical) -> m => match m {
                Ok(m) => batch.push(m),
                Err(_) => closed = true,
            },
            recv(inbound.lines) -> l => lines.extend(l),
            default(wait) => {}
        }
    }
    batch.extend(batch_messages(lines, inbound.settings.batch_lines));
    // Closed and nothing left: done. Closed with something left: publish it, then come back.
    !batch.is_empty()
}
