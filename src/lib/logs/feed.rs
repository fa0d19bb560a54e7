//! Session feeds: one thread per session consuming this instance's own copy of the session's
//! log queue into its ring buffer (and the archiver). All feeds share one broker connection,
//! each on its own channel; when the connection dies, every feed reopens on a fresh one.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use amiquip::{
    Channel, Connection, ConsumerMessage, ConsumerOptions, Delivery, QueueDeleteOptions,
};
use crossbeam_channel::{select, Receiver, Sender};

use super::archiver::ArchiveItem;
use super::metrics::LogMetrics;
use super::ring::SessionLog;
use crate::bus::topology::{self, LogQueueArgs};
use crate::bus::{connect, BusError, OutgoingMessage};
use crate::lifecycle::ShutdownSignal;
use crate::retry::Backoff;
use crate::wire::{routing, LogLine};

/// Most deliveries taken off the consumer before one ring push and one `ack(multiple)`.
const BURST: usize = 256;

/// The one broker connection the feeds share, reopened on demand after a failure.
pub struct BrokerLink {
    url: String,
    shutdown: ShutdownSignal,
    conn: Mutex<Option<(u64, Connection)>>,
}

impl BrokerLink {
    pub fn new(url: &str, shutdown: ShutdownSignal) -> Self {
        BrokerLink {
            url: url.to_string(),
            shutdown,
            conn: Mutex::new(None),
        }
    }

    /// A new channel, and the generation of the connection it is on.
    pub fn open_channel(&self) -> Result<(u64, Channel), BusError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((generation, conn)) = guard.as_mut() {
            match conn.open_channel(None) {
                Ok(ch) => return Ok((*generation, ch)),
                Err(e) => log::warn!("log broker connection is broken ({e}); reconnecting"),
            }
        }
        let generation = guard.as_ref().map_or(1, |(g, _)| g + 1);
        *guard = None;
        let mut conn = connect(&self.url, &self.shutdown, "log-feeds")?;
        let ch = conn.open_channel(None)?;
        *guard = Some((generation, conn));
        Ok((generation, ch))
    }

    /// Drops the connection of `generation` (if still current) so the next open reconnects.
    pub fn broken(&self, generation: u64) {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|(g, _)| *g == generation) {
            *guard = None;
        }
    }

    pub fn close(&self) {
        if let Some((_, conn)) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = conn.close();
        }
    }
}

/// The host that owns a session (`Ok(None)`: no such session), for checking who signed its
/// lines.
pub type OwnerLookup = Arc<dyn Fn(i64) -> Result<Option<i64>, String> + Send + Sync>;

/// What every feed shares.
pub struct FeedContext {
    pub link: Arc<BrokerLink>,
    /// This instance's name, part of its queue names (`logs.session.{id}.{instance}`).
    pub instance: String,
    pub queue_args: LogQueueArgs,
    pub prefetch: u16,
    pub archive: Option<Sender<ArchiveItem>>,
    pub debug_echo: bool,
    pub metrics: Arc<LogMetrics>,
    /// Set with `REQUIRE_HOST_BROKER_USERS`: a line is accepted only when signed (AMQP
    /// `user_id`) by the broker user of the session's host; others are dead-lettered.
    pub session_owner: Option<OwnerLookup>,
}

/// Who may publish a session's lines: anyone (no per-host broker users), exactly one broker
/// user, or nobody (the session does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signer {
    Anyone,
    Only(String),
    Nobody,
}

impl Signer {
    fn check(&self, user_id: Option<&str>) -> Result<(), String> {
        match (self, user_id) {
            (Signer::Anyone, _) => Ok(()),
            (Signer::Only(want), Some(user)) if user == want => Ok(()),
            (Signer::Only(want), Some(user)) => Err(format!(
                "published by broker user {user:?}, but only {want:?} may write this session's lines"
            )),
            (Signer::Only(want), None) => Err(format!(
                "not signed (no user_id): only {want:?} may write this session's lines"
            )),
            (Signer::Nobody, _) => Err("the session does not exist".into()),
        }
    }
}

/// How a feed is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStop {
    /// The session is over: delete its queue too.
    SessionEnded,
    /// The daemon is stopping: keep the queue buffering (`x-expires` reaps it if we never return).
    Shutdown,
}

pub struct FeedHandle {
    stop: Sender<FeedStop>,
    thread: JoinHandle<()>,
}

impl FeedHandle {
    pub fn stop(self, how: FeedStop) {
        let _ = self.stop.send(how);
        let _ = self.thread.join();
    }

    /// Asks without waiting (shutdown stops every feed at once, then joins).
    pub fn request_stop(&self, how: FeedStop) {
        let _ = self.stop.try_send(how);
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

pub fn spawn_feed(
    ctx: Arc<FeedContext>,
    log: Arc<SessionLog>,
    shutdown: ShutdownSignal,
) -> std::io::Result<FeedHandle> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let thread = std::thread::Builder::new()
        .name(format!("log-feed-{}", log.session_id))
        // Feeds hold little on their stacks; thousands of them should cost little memory.
        .stack_size(256 * 1024)
        .spawn(move || run_feed(&ctx, &log, &stop_rx, &shutdown))?;
    Ok(FeedHandle {
        stop: stop_tx,
        thread,
    })
}

fn run_feed(
    ctx: &FeedContext,
    log: &SessionLog,
    stop: &Receiver<FeedStop>,
    shutdown: &ShutdownSignal,
) {
    ctx.metrics.feeds.add(1);
    let backoff = Backoff::reconnect();
    let mut failures = 0;
    loop {
        match consume(ctx, log, stop) {
            Ok(()) => break,
            Err((generation, e)) => {
                if shutdown.is_triggered() {
                    break;
                }
                let delay = backoff.delay(failures);
                log::warn!(session_id = log.session_id;
                    "log feed lost its broker channel: {e}; retrying in {delay:?}");
                if let Some(g) = generation {
                    ctx.link.broken(g);
                }
                failures = failures.saturating_add(1);
                select! {
                    recv(stop) -> _ => break,
                    recv(shutdown.receiver()) -> _ => break,
                    default(delay) => {}
                }
            }
        }
    }
    ctx.metrics.feeds.sub(1);
}

/// Why a feed lost its channel, and the connection generation to drop (if it got one).
type FeedError = (Option<u64>, String);

fn consume(
    ctx: &FeedContext,
    log: &SessionLog,
    stop: &Receiver<FeedStop>,
) -> Result<(), FeedError> {
    let (generation, channel) = ctx.link.open_channel().map_err(|e| (None, e.to_string()))?;
    let fail = |e: amiquip::Error| (Some(generation), e.to_string());
    channel.qos(0, ctx.prefetch, false).map_err(fail)?;
    let exchange = topology::declare_manman_exchange(&channel).map_err(fail)?;
    topology::declare_log_dlq(&channel).map_err(fail)?;
    let name = routing::session_log_queue(log.session_id, &ctx.instance);
    let queue =
        topology::declare_log_queue(&channel, &exchange, &name, log.session_id, &ctx.queue_args)
            .map_err(fail)?;
    // Exclusive: a second consumer on this instance's queue would split its lines; the
    // broker refuses it instead (two instances configured with one name).
    let consumer = queue
        .consume(ConsumerOptions {
            exclusive: true,
            ..ConsumerOptions::default()
        })
        .map_err(fail)?;
    let signer = match &ctx.session_owner {
        None => Signer::Anyone,
        Some(owner_of) => match owner_of(log.session_id) {
            Ok(Some(server_id)) => Signer::Only(routing::host_broker_user(server_id)),
            Ok(None) => Signer::Nobody,
            Err(e) => return Err((Some(generation), format!("cannot tell whose session: {e}"))),
        },
    };
    log.set_consuming(true);
    let result = pump(
        ctx, log, stop, &channel, &consumer, &name, generation, &signer,
    );
    log.set_consuming(false);
    result
}

#[allow(clippy::too_many_arguments)]
fn pump(
    ctx: &FeedContext,
    log: &SessionLog,
    stop: &Receiver<FeedStop>,
    channel: &Channel,
    consumer: &amiquip::Consumer<'_>,
    name: &str,
    generation: u64,
    signer: &Signer,
) -> Result<(), FeedError> {
    let fail = |e: amiquip::Error| (Some(generation), e.to_string());
    loop {
        let first = select! {
            recv(consumer.receiver()) -> msg => msg.map_err(|_| (Some(generation), "consumer channel closed".to_string()))?,
            recv(stop) -> how => {
                let _ = consumer.cancel();
                if how == Ok(FeedStop::SessionEnded) {
                    let _ = channel.queue_delete(name, QueueDeleteOptions::default());
                }
                return Ok(());
            }
        };
        let mut burst = Vec::new();
        let mut ended = take(first, &mut burst);
        while ended.is_none() && burst.len() < BURST {
            match consumer.receiver().try_recv() {
                Ok(msg) => ended = take(msg, &mut burst),
                Err(_) => break,
            }
        }
        if let Some(last) = deliver(ctx, log, channel, burst, signer)
            .map_err(|e| (Some(generation), e.to_string()))?
        {
            consumer.ack_multiple(last).map_err(fail)?;
        }
        if let Some(e) = ended {
            return Err((Some(generation), e.to_string()));
        }
    }
}

fn take(msg: ConsumerMessage, burst: &mut Vec<Delivery>) -> Option<BusError> {
    match msg {
        ConsumerMessage::Delivery(d) => {
            burst.push(d);
            None
        }
        ConsumerMessage::ServerClosedChannel(e) | ConsumerMessage::ServerClosedConnection(e) => {
            Some(BusError::Amqp(e))
        }
        other => Some(BusError::Other(format!("consumer ended: {other:?}"))),
    }
}

/// Parses a burst into the ring (one lock, one wake-up) and the archiver; unreadable messages
/// go to the dead-letter queue with the reason. Returns the delivery to acknowledge through.
fn deliver(
    ctx: &FeedContext,
    log: &SessionLog,
    channel: &Channel,
    mut burst: Vec<Delivery>,
    signer: &Signer,
) -> Result<Option<Delivery>, BusError> {
    let mut lines = Vec::with_capacity(burst.len());
    for d in &burst {
        let signed = signer.check(d.properties.user_id().as_deref());
        match signed.and_then(|_| parse(log.session_id, &d.body)) {
            Ok(line) => lines.push(line),
            Err(reason) => {
                ctx.metrics.malformed.inc();
                log::warn!(session_id = log.session_id, reason = reason.as_str();
                    "dead-lettering a log message");
                OutgoingMessage::raw("", routing::LOG_DLQ, d.body.clone())
                    .with_header(routing::DEAD_LETTER_REASON_HEADER, reason)
                    .with_header("x-original-routing-key", d.routing_key.clone())
                    .publish_unconfirmed(channel)?;
            }
        }
    }
    ctx.metrics.lines_in.add(lines.len() as u64);
    if ctx.debug_echo {
        for l in &lines {
            println!("[session {}] [{}] {}", l.session_id, l.source, l.message);
        }
    }
    if let Some(archive) = &ctx.archive {
        for l in &lines {
            if archive.try_send(ArchiveItem::Line(l.clone())).is_err() {
                ctx.metrics.archive_dropped.inc();
                let dropped = ctx.metrics.archive_dropped.get();
                if dropped % 10_000 == 1 {
                    log::warn!(dropped_total = dropped;
                        "archive buffer is full: lines are dropped from the archive (they still stream live)");
                }
            }
        }
    }
    log.push(lines);
    Ok(burst.pop())
}

fn parse(session_id: i64, body: &[u8]) -> Result<LogLine, String> {
    let line: LogLine = serde_json::from_slice(body).map_err(|e| format!("not a log line: {e}"))?;
    if line.session_id != session_id {
        return Err(format!(
            "session_id {} on the queue of session {session_id}",
            line.session_id
        ));
    }
    line.check_source()?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sessions_host_signs_its_lines_when_required() {
        assert!(Signer::Anyone.check(None).is_ok());
        let only = Signer::Only("manman-host-3".into());
        assert!(only.check(Some("manman-host-3")).is_ok());
        assert!(only
            .check(Some("manman-host-4"))
            .unwrap_err()
            .contains("\"manman-host-4\""));
        assert!(only.check(None).unwrap_err().contains("not signed"));
        assert!(Signer::Nobody.check(Some("manman-host-3")).is_err());
    }
}
