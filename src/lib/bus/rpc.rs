//! Request/reply over RabbitMQ: publish with `reply_to` + `correlation_id`, wait for the answer
//! on an exclusive reply queue. One thread owns the connection; callers wait on their own
//! channel with their own timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amiquip::{ConsumerMessage, ConsumerOptions, QueueDeclareOptions};
use crossbeam_channel::{select, Receiver, Sender};

use super::{connection, BusError, ConfirmedPublisher, OutgoingMessage};
use crate::retry::Backoff;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RpcError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

type ReplySender = Sender<Result<Vec<u8>, RpcError>>;

struct Call {
    message: OutgoingMessage,
    reply: ReplySender,
    /// Connections that failed it (see `run`).
    tries: u32,
}

/// A cheap handle; the thread behind it ends when every handle is dropped.
#[derive(Clone)]
pub struct RpcClient {
    calls: Sender<Call>,
    /// The broker user every call is signed with (AMQP `user_id`).
    sender: Option<String>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl RpcClient {
    pub fn start(url: &str) -> std::io::Result<RpcClient> {
        let (calls, rx) = crossbeam_channel::unbounded();
        let sender = super::broker_user(url);
        let url = url.to_string();
        std::thread::Builder::new()
            .name("rpc-client".into())
            .spawn(move || run(&url, &rx))?;
        Ok(RpcClient { calls, sender })
    }

    /// The broker user calls are signed with (`None`: the URL names no user).
    pub fn sender(&self) -> Option<&str> {
        self.sender.as_deref()
    }

    /// Publishes `message` and waits for the reply body.
    pub fn call(
        &self,
        mut message: OutgoingMessage,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros()
        );
        message.correlation_id = Some(id);
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.calls
            .send(Call {
                message,
                reply,
                tries: 0,
            })
            .map_err(|_| RpcError::Unavailable("rpc client stopped".into()))?;
        rx.recv_timeout(timeout)
            .unwrap_or(Err(RpcError::Timeout(timeout)))
    }
}

fn run(url: &str, calls: &Receiver<Call>) {
    let backoff = Backoff::reconnect();
    let mut failures = 0;
    // A call whose publish failed: sent first on the next connection, failed if that one
    // fails too.
    let mut carried: Option<Call> = None;
    loop {
        match session(url, calls, &mut carried) {
            Ok(()) => return, // every client handle dropped
            Err(e) => {
                log::warn!("rpc client lost the broker: {}", crate::errors::chain(&e));
                if let Some(call) = carried.as_mut() {
                    call.tries += 1;
                }
                if let Some(call) = carried.take_if(|c| c.tries >= 2) {
                    let _ = call
                        .reply
                        .send(Err(RpcError::Unavailable(crate::errors::chain(&e))));
                }
                let until = Instant::now() + backoff.delay(failures);
                failures += 1;
                // While disconnected, fail calls at once rather than let them time out.
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    match calls.recv_timeout(left) {
                        Ok(call) => {
                            let _ = call
                                .reply
                                .send(Err(RpcError::Unavailable(crate::errors::chain(&e))));
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

fn session(url: &str, calls: &Receiver<Call>, carried: &mut Option<Call>) -> Result<(), BusError> {
    let mut conn = connection::open_first(url, "rpc")?;
    let channel = conn.open_channel(None)?;
    let queue = channel.queue_declare(
        "",
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        },
    )?;
    let reply_to = queue.name().to_string();
    let consumer = queue.consume(ConsumerOptions {
        no_ack: true,
        ..ConsumerOptions::default()
    })?;
    // Signed: a host acts only on commands whose user_id is the API's broker user.
    let mut publisher =
        ConfirmedPublisher::new(conn.open_channel(None)?)?.signed_as(super::broker_user(url));
    let mut pending: HashMap<String, (ReplySender, Instant)> = HashMap::new();
    if let Some(mut call) = carried.take() {
        call.message.reply_to = Some(reply_to.clone());
        let id = call.message.correlation_id.clone().unwrap_or_default();
        if let Err(e) =
            publisher.publish_all(std::slice::from_ref(&call.message), Duration::from_secs(5))
        {
            *carried = Some(call);
            return Err(e);
        }
        pending.insert(id, (call.reply, Instant::now()));
    }
    loop {
        select! {
            recv(calls) -> call => {
                let Ok(mut call) = call else {
                    let _ = conn.close();
                    return Ok(());
                };
                call.message.reply_to = Some(reply_to.clone());
                let id = call.message.correlation_id.clone().unwrap_or_default();
                if let Err(e) = publisher.publish_all(std::slice::from_ref(&call.message), Duration::from_secs(5)) {
                    // Tried once more on the next connection (a nack while a queue's
                    // leader is elected after a node's loss, a connection that died).
                    *carried = Some(call);
                    return Err(e);
                }
                pending.insert(id, (call.reply, Instant::now()));
            }
            recv(consumer.receiver()) -> msg => match msg {
                Ok(ConsumerMessage::Delivery(d)) => {
                    let id = d.properties.correlation_id().clone().unwrap_or_default();
                    if let Some((reply, _)) = pending.remove(&id) {
                        let _ = reply.send(Ok(d.body));
                    }
                }
                Ok(other) => return Err(BusError::ConsumerEnded(format!("replies: {other:?}"))),
                Err(_) => return Err(BusError::ConsumerEnded("replies: its channel closed".into())),
            },
            default(Duration::from_secs(30)) => {}
        }
        // Callers that gave up long ago will not read their reply.
        pending.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(300));
    }
}
