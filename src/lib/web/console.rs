//! Live consoles in the browser: a session's stream from the log processor, bridged to
//! Server-Sent Events. An open console has a thread writing to the browser (a keep-alive
//! comment every 5 s finds a closed tab, and a logout ends it) and one reading the gRPC stream. A reconnecting
//! browser sends `Last-Event-ID` (the last line's sequence number) and resumes after it, as
//! `manman logs -f` does; lines it missed beyond the buffer arrive as one `gap` event.

use std::io::Write;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::json;
use tiny_http::Request;

use crate::proto::v1 as pb;
use crate::slots::Slot;

/// A keep-alive comment this often finds a closed tab; the login is checked as often.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Lines waiting for a slow browser; beyond it the reader waits (and the log processor's own
/// per-client cursor turns what this client misses into a gap marker).
const QUEUE: usize = 4096;

enum Item {
    /// Lines as one read of the session's buffer gave them.
    Lines(Vec<pb::LogMessage>),
    /// The stream ended: the session is over (or the stream failed: why).
    End(Option<String>),
}

/// What a console streams, and with whose token.
pub(super) struct Stream {
    pub logs: pb::LogProcessorClient,
    pub token: String,
    pub session_id: i64,
    pub after: i64,
}

/// Takes over `request` and streams `stream` to it while `logged_in()` holds.
pub(super) fn open(
    request: Request,
    stream: Stream,
    slot: Slot,
    logged_in: Box<dyn Fn() -> bool + Send>,
) {
    let session_id = stream.session_id;
    let spawned = std::thread::Builder::new()
        .name(format!("console-{session_id}"))
        .spawn(move || {
            let _slot = slot;
            let (tx, rx) = crossbeam_channel::bounded(QUEUE);
            let reader = std::thread::Builder::new()
                .name(format!("console-{session_id}-grpc"))
                .spawn(move || {
                    read_stream(&stream.logs, &stream.token, session_id, stream.after, &tx)
                });
            if let Err(e) = reader {
                log::error!("cannot start a console reader: {e}");
                return;
            }
            let writer = request.into_writer();
            write_events(writer, &rx, &*logged_in);
            log::debug!(session_id = session_id; "console closed");
        });
    if let Err(e) = spawned {
        log::error!("cannot start a console thread: {e}");
    }
}

fn read_stream(
    logs: &pb::LogProcessorClient,
    token: &str,
    session_id: i64,
    after: i64,
    tx: &Sender<Item>,
) {
    let request = pb::StreamSessionLogsRequest {
        session_id,
        after_sequence_number: after,
        backlog_only: false,
    };
    // Batches: one gRPC message per read of the buffer, not per line (a busy server prints
    // thousands of lines a second to every open console).
    let stream =
        logs.stream_session_log_batches_opt(&request, crate::grpc::authorized(Some(token)));
    let failure = match stream {
        Ok(stream) => {
            let mut failure = None;
            for item in futures::executor::block_on_stream(stream) {
                match item {
                    // The browser is gone once its writer dropped the receiver.
                    Ok(batch) => {
                        if tx.send(Item::Lines(batch.lines)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        failure = Some(describe(e));
                        break;
                    }
                }
            }
            failure
        }
        Err(e) => Some(describe(e)),
    };
    let _ = tx.send(Item::End(failure));
}

fn describe(e: grpcio::Error) -> String {
    match e {
        grpcio::Error::RpcFailure(s) => s.message().to_string(),
        other => format!("the log processor is unavailable: {other}"),
    }
}

/// One line as an SSE event: `id` is its sequence number (what `Last-Event-ID` resumes
/// after), `event` is `line` or `gap`, `data` one line of JSON (text, never markup).
pub(super) fn event(m: &pb::LogMessage) -> String {
    let kind = if m.source == "gap" { "gap" } else { "line" };
    let data = json!({
        "seq": m.sequence_number,
        "timestamp": crate::views::json_time(m.timestamp),
        "source": m.source,
        "message": m.message,
    });
    format!("id: {}\nevent: {kind}\ndata: {data}\n\n", m.sequence_number)
}

fn write_events(mut out: Box<dyn Write + Send>, rx: &Receiver<Item>, logged_in: &dyn Fn() -> bool) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
                Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
                Connection: close\r\n\r\nretry: 2000\n\n";
    if out
        .write_all(head.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return;
    }
    loop {
        let mut chunk = String::new();
        let mut ended = None;
        match rx.recv_timeout(KEEP_ALIVE) {
            Ok(first) => {
                // Whatever else is queued goes in the same write.
                for item in std::iter::once(first).chain(rx.try_iter()) {
                    match item {
                        Item::Lines(lines) => {
                            for m in &lines {
                                chunk.push_str(&event(m));
                            }
                        }
                        Item::End(why) => {
                            ended = Some(why);
                            break;
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => chunk.push_str(": keep-alive\n\n"),
            Err(RecvTimeoutError::Disconnected) => ended = Some(None),
        }
        if ended.is_none() && !logged_in() {
            ended = Some(Some("logged out".to_string()));
        }
        if let Some(why) = &ended {
            let data = json!({ "error": why });
            chunk.push_str(&format!("event: end\ndata: {data}\n\n"));
        }
        if out
            .write_all(chunk.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
            || ended.is_some()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_event_with_its_sequence_as_id_and_text_as_json() {
        let m = pb::LogMessage {
            session_id: 7,
            timestamp: 1_732_300_000_123,
            source: "stdout".into(),
            message: "<script>alert(1)</script>\nnot a second line".into(),
            sequence_number: 42,
        };
        let e = event(&m);
        assert!(e.starts_with("id: 42\nevent: line\ndata: {"), "{e}");
        assert!(e.ends_with("}\n\n"));
        assert_eq!(
            e.matches('\n').count(),
            4,
            "the message's newline stays inside the JSON"
        );
        let data: serde_json::Value =
            serde_json::from_str(e.lines().nth(2).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(data["message"], m.message);
        let gap = event(&pb::LogMessage {
            source: "gap".into(),
            ..m
        });
        assert!(gap.contains("event: gap\n"));
    }
}
