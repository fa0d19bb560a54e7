//! `manman.v1.LogProcessor/StreamSessionLogs`: each client gets a plain thread that reads the
//! session's ring from its own cursor and writes to the gRPC stream, blocking only itself.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt};
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink};

use super::directory::SessionDirectory;
use super::metrics::LogMetrics;
use super::registry::Registry;
use super::ring::{SessionLog, StoredLine, DEFAULT_MAX_BYTES};
use crate::auth::{bearer_of, AuthError, Authenticator, Role};
use crate::lifecycle::ShutdownSignal;
use crate::proto::v1 as pb;

/// Lines written to a client per read of the ring.
const CHUNK: usize = 256;
/// How often an idle stream checks that its client is still there.
const IDLE_CHECK: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct LogStreamService {
    shared: Arc<Shared>,
}

struct Shared {
    auth: Authenticator,
    registry: Arc<Registry>,
    directory: SessionDirectory,
    metrics: Arc<LogMetrics>,
    max_clients: u64,
    shutdown: ShutdownSignal,
}

impl LogStreamService {
    pub fn new(
        auth: Authenticator,
        registry: Arc<Registry>,
        directory: SessionDirectory,
        metrics: Arc<LogMetrics>,
        max_clients: u64,
        shutdown: ShutdownSignal,
    ) -> Self {
        LogStreamService {
            shared: Arc::new(Shared {
                auth,
                registry,
                directory,
                metrics,
                max_clients,
                shutdown,
            }),
        }
    }

    /// Validates the request and finds (or starts buffering) the session.
    fn open(&self, req: &pb::StreamSessionLogsRequest) -> Result<Arc<SessionLog>, RpcStatus> {
        let invalid = |m: &str| RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, m.into());
        if req.session_id <= 0 {
            return Err(invalid("session_id must be a positive session id"));
        }
        if req.after_sequence_number < 0 {
            return Err(invalid("after_sequence_number must not be negative"));
        }
        let s = &self.shared;
        if s.metrics.clients.get() >= s.max_clients {
            return Err(RpcStatus::with_message(
                RpcStatusCode::RESOURCE_EXHAUSTED,
                format!(
                    "this log processor already streams to {} clients (LOG_MAX_CLIENTS)",
                    s.max_clients
                ),
            ));
        }
        let log = match s.registry.attach(req.session_id) {
            Some(log) => log,
            None => {
                let info = s
                    .directory
                    .lookup(req.session_id)
                    .map_err(|e| {
                        RpcStatus::with_message(
                            RpcStatusCode::UNAVAILABLE,
                            crate::errors::chain(&e),
                        )
                    })?
                    .ok_or_else(|| {
                        RpcStatus::with_message(
                            RpcStatusCode::NOT_FOUND,
                            format!("session {} does not exist", req.session_id),
                        )
                    })?;
                if info.status.is_terminal() {
                    // Nothing buffered and nothing more will come: an empty, finished stream.
                    let log = SessionLog::new(req.session_id, 1, DEFAULT_MAX_BYTES);
                    log.close();
                    s.metrics.clients.add(1);
                    return Ok(Arc::new(log));
                }
                s.registry.attach_started(req.session_id)
            }
        };
        s.metrics.clients.add(1);
        let last = log.last_sequence_number();
        if req.after_sequence_number > last {
            self.release(req.session_id);
            return Err(RpcStatus::with_message(
                RpcStatusCode::OUT_OF_RANGE,
                format!(
                    "after_sequence_number {} is ahead of the newest line ({last}) of session {}",
                    req.after_sequence_number, req.session_id
                ),
            ));
        }
        Ok(log)
    }

    fn release(&self, session_id: i64) {
        self.shared.registry.detach(session_id);
        self.shared.metrics.clients.sub(1);
    }
}

impl LogStreamService {
    /// Authorizes and opens the stream, then serves it from a plain thread; `group` turns
    /// each read of the ring into the stream's messages.
    fn serve<T: Send + 'static>(
        &self,
        ctx: &RpcContext<'_>,
        rpc: &str,
        req: pb::StreamSessionLogsRequest,
        sink: ServerStreamingSink<T>,
        group: fn(Vec<pb::LogMessage>) -> Vec<T>,
    ) {
        let token = bearer_of(ctx.request_headers());
        let authorized = self
            .shared
            .auth
            .authorize(token.as_deref(), Role::Viewer, rpc)
            .map_err(|e| e.status());
        let log = match authorized.and_then(|_| self.open(&req)) {
            Ok(log) => log,
            Err(status) => {
                ctx.spawn(sink.fail(status).map(|_| ()));
                return;
            }
        };
        let service = self.clone();
        let session_id = req.session_id;
        let rpc_name = rpc.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("log-client-{}", req.session_id))
            .stack_size(256 * 1024)
            .spawn(move || {
                serve_client(&service.shared, &log, &req, token, rpc_name, sink, group);
                service.release(req.session_id);
            });
        if let Err(e) = spawned {
            log::error!("cannot start a streaming thread: {e}");
            self.release(session_id);
        }
    }
}

impl pb::LogProcessor for LogStreamService {
    fn stream_session_logs(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::StreamSessionLogsRequest,
        sink: ServerStreamingSink<pb::LogMessage>,
    ) {
        self.serve(&ctx, "stream_session_logs", req, sink, |lines| lines);
    }

    fn stream_session_log_batches(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::StreamSessionLogsRequest,
        sink: ServerStreamingSink<pb::LogBatch>,
    ) {
        self.serve(&ctx, "stream_session_log_batches", req, sink, |lines| {
            vec![pb::LogBatch { lines }]
        });
    }
}

fn message(session_id: i64, l: StoredLine) -> pb::LogMessage {
    pb::LogMessage {
        session_id,
        timestamp: l.timestamp,
        // Box<str> → String moves the text: no copy.
        source: l.source.into(),
        message: l.message.into(),
        sequence_number: l.sequence_number,
    }
}

fn gap_marker(session_id: i64, missed: i64, next: i64) -> pb::LogMessage {
    let message = if missed < 0 {
        "an unknown number of lines were missed (the log processor restarted since)".to_string()
    } else {
        format!("{missed} lines were missed: this client fell behind the buffer")
    };
    pb::LogMessage {
        session_id,
        timestamp: chrono::Utc::now().timestamp_millis(),
        source: "gap".into(),
        message,
        // Resuming after the marker continues at the first line still buffered.
        sequence_number: next - 1,
    }
}

fn serve_client<T: Send + 'static>(
    shared: &Shared,
    log: &SessionLog,
    req: &pb::StreamSessionLogsRequest,
    token: Option<String>,
    rpc: String,
    mut sink: ServerStreamingSink<T>,
    group: fn(Vec<pb::LogMessage>) -> Vec<T>,
) {
    let mut cursor = req.after_sequence_number;
    let backlog_end = log.last_sequence_number();
    let mut token_checked = std::time::Instant::now();
    loop {
        if token_checked.elapsed() >= crate::auth::STREAM_RECHECK {
            token_checked = std::time::Instant::now();
            // A token directory that cannot be reached is not a revocation: go on.
            match shared.auth.authorize(token.as_deref(), Role::Viewer, &rpc) {
                Err(AuthError::Unavailable(_)) | Ok(_) => {}
                Err(e) => {
                    let _ = futures::executor::block_on(sink.fail(e.status()));
                    return;
                }
            }
        }
        if shared.shutdown.is_triggered() {
            let _ = futures::executor::block_on(sink.fail(shutting_down()));
            return;
        }
        if req.backlog_only && cursor >= backlog_end {
            break;
        }
        // The backlog is what is buffered now: never wait for more.
        let wait = if req.backlog_only {
            Duration::ZERO
        } else {
            IDLE_CHECK
        };
        let read = log.read_after(cursor, CHUNK, wait);
        let mut batch = Vec::with_capacity(read.lines.len() + 1);
        if let (Some(missed), Some(first)) = (read.missed, read.lines.first()) {
            shared.metrics.gaps.inc();
            batch.push(gap_marker(log.session_id, missed, first.sequence_number));
        }
        for l in read.lines {
            if req.backlog_only && l.sequence_number > backlog_end {
                break;
            }
            cursor = l.sequence_number;
            batch.push(message(log.session_id, l));
        }
        if batch.is_empty() {
            // Shutdown closes every ring once its lines are out: that is not the session's
            // end, and a follower must reconnect and resume (it once took it for the end).
            if read.closed && !req.backlog_only && shared.shutdown.is_triggered() {
                let _ = futures::executor::block_on(sink.fail(shutting_down()));
                return;
            }
            // An empty buffer, or only lines newer than the backlog: a backlog read is done.
            if read.closed || req.backlog_only {
                break;
            }
            if crate::grpc::client_gone(&mut sink) {
                return;
            }
            continue;
        }
        let sent = batch.iter().filter(|m| m.source != "gap").count() as u64;
        if crate::grpc::send_batch(&mut sink, group(batch)).is_err() {
            return; // the client went away
        }
        shared.metrics.lines_out.add(sent);
    }
    let _ = futures::executor::block_on(sink.close());
}

/// What a follower gets when this instance stops: retry elsewhere or later, from its cursor.
fn shutting_down() -> RpcStatus {
    RpcStatus::with_message(
        RpcStatusCode::UNAVAILABLE,
        "the log processor is shutting down; resume with the last sequence number".into(),
    )
}
