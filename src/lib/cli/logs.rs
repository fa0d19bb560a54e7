//! `manman logs`: a session's console, live from the log processor (`-f` follows and resumes
//! after reconnects) or archived from the API (`--since` / `--until`).

use std::io::Write;
use std::time::Duration;

use grpcio::RpcStatusCode;
use serde_json::json;

use super::shared::{Ctx, Exit, Failure, Outcome};
use crate::grpc::Endpoint;
use crate::proto::v1 as pb;
use crate::retry::Backoff;

pub struct LogsRequest {
    pub session_id: i64,
    pub follow: bool,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
    pub json: bool,
    /// Control characters as sent; otherwise they are escaped when stdout is a terminal.
    pub raw: bool,
}

/// A console line made safe for a terminal: control characters (escape sequences, carriage
/// returns, bells) become visible `\x1b`-style text; tabs stay.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `2026-11-23T18:00:00Z`, or a time ago: `90s`, `10m`, `2h`, `1d`. Unix milliseconds.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let ago = super::spans::parse_span_ms(text).map_err(|_| {
        format!("bad time {text:?}: use RFC 3339 (2026-11-23T18:00:00Z) or an age like 10m")
    })?;
    Ok(now_ms - ago)
}

/// Writes console lines to stdout: escaped for a terminal unless `--raw`, JSON with `--json`.
/// A closed pipe (`| head`) ends the command quietly.
struct LinePrinter<W: Write> {
    out: W,
    escape: bool,
    json: bool,
}

impl<W: Write> LinePrinter<W> {
    fn new(out: W, req: &LogsRequest) -> Self {
        use std::io::IsTerminal;
        LinePrinter {
            out,
            escape: !req.raw && std::io::stdout().is_terminal(),
            json: req.json,
        }
    }

    fn print(&mut self, m: &pb::LogMessage) -> std::io::Result<()> {
        let message = if self.escape {
            escape_controls(&m.message)
        } else {
            std::borrow::Cow::Borrowed(m.message.as_str())
        };
        if m.source == "gap" {
            eprintln!("-- {message} --");
            return Ok(());
        }
        if self.json {
            let line = json!({"session_id": m.session_id, "timestamp": m.timestamp,
                "source": m.source, "message": m.message, "sequence_number": m.sequence_number});
            writeln!(self.out, "{line}")
        } else {
            let time = chrono::DateTime::from_timestamp_millis(m.timestamp)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default();
            writeln!(
                self.out,
                "{time} [{}] {message}",
                escape_controls(&m.source)
            )
        }
    }
}

/// A write error: a closed pipe is the reader saying it has enough (quiet success).
fn written(result: std::io::Result<()>) -> Result<(), Outcome> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Ok(())),
        Err(e) => Err(Err(Failure::new(
            Exit::IoError,
            format!("cannot write to stdout: {e}"),
        ))),
    }
}

pub fn run(ctx: &Ctx, log_processor: &Endpoint, req: &LogsRequest) -> Outcome {
    if req.since.is_some() || req.until.is_some() {
        history(ctx, req)
    } else {
        live(ctx, log_processor, req)
    }
}

fn history(ctx: &Ctx, req: &LogsRequest) -> Outcome {
    let now = chrono::Utc::now().timestamp_millis();
    let since_ms = req
        .since
        .as_deref()
        .map(|t| parse_time(t, now))
        .transpose()
        .map_err(Failure::invalid)?
        .unwrap_or(0);
    let until_ms = req
        .until
        .as_deref()
        .map(|t| parse_time(t, now))
        .transpose()
        .map_err(Failure::invalid)?
        .unwrap_or(0);
    // A stream, printed as it arrives: the API reads one archived minute at a time.
    let request = pb::GetHistoricalLogsRequest {
        session_id: req.session_id,
        since_ms,
        until_ms,
        offset: 0,
        limit: req.limit,
    };
    let stream = ctx
        .client
        .stream_historical_logs_opt(&request, ctx.opt_for(Duration::from_secs(3600)))?;
    let mut printer = LinePrinter::new(std::io::BufWriter::new(std::io::stdout().lock()), req);
    let mut printed = 0u64;
    for batch in futures::executor::block_on_stream(stream) {
        for line in &batch?.lines {
            if let Err(done) = written(printer.print(line)) {
                return done;
            }
            printed += 1;
        }
    }
    if let Err(done) = written(printer.out.flush()) {
        return done;
    }
    if printed == 0 && !req.json {
        eprintln!("(no archived lines in that range)");
    }
    Ok(())
}

fn live(ctx: &Ctx, endpoint: &Endpoint, req: &LogsRequest) -> Outcome {
    // Line by line: a followed console shows each line as it comes.
    let mut printer = LinePrinter::new(std::io::stdout(), req);
    let mut printed = 0u64;
    let followed = follow_console(ctx, endpoint, req.session_id, req.follow, &mut |event| {
        match event {
            ConsoleEvent::Line(m) => {
                written(printer.print(m))?;
                printed += 1;
            }
            ConsoleEvent::Interrupted { why, retry_in } => {
                eprintln!("-- log stream interrupted ({why}); reconnecting in {retry_in:?} --");
            }
        }
        Ok(())
    })?;
    if followed == Followed::Stopped {
        return Ok(()); // the reader closed the pipe
    }
    if followed == Followed::Ended {
        eprintln!("-- session {} ended --", req.session_id);
    } else if printed == 0 && !req.json {
        eprintln!(
            "(no lines in session {id}'s live buffer: it holds the newest lines while the session runs and for LOG_BUFFER_TTL after; archived lines: manman logs {id} --since 1h)",
            id = req.session_id
        );
    }
    Ok(())
}

/// What [`follow_console`] hands its caller.
pub(crate) enum ConsoleEvent<'a> {
    Line(&'a pb::LogMessage),
    /// The stream broke (log processor restarted, network blip); it resumes after the last
    /// line seen, so no line is shown twice.
    Interrupted {
        why: String,
        retry_in: Duration,
    },
}

/// How [`follow_console`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Followed {
    /// The session ended (its stream closed while following).
    Ended,
    /// Without `follow`: the buffered lines were read.
    BacklogRead,
    /// The caller's handler said stop (a closed pipe, a detach).
    Stopped,
}

/// Streams a session's live console from the log processor: the buffered lines, then (with
/// `follow`) new ones as they come, reconnecting with backoff and resuming after the last
/// sequence number seen. `on` returns `Err(Ok(()))` to stop quietly, `Err(Err(f))` to fail.
pub(crate) fn follow_console(
    ctx: &Ctx,
    endpoint: &Endpoint,
    session_id: i64,
    follow: bool,
    on: &mut dyn FnMut(ConsoleEvent<'_>) -> Result<(), Outcome>,
) -> Result<Followed, Failure> {
    let address = &endpoint.address;
    let client = pb::LogProcessorClient::new(endpoint.channel());
    let backoff = Backoff::reconnect();
    let mut after = 0;
    let mut failures = 0;
    let stop = |outcome: Outcome| outcome.map(|()| Followed::Stopped);
    loop {
        let request = pb::StreamSessionLogsRequest {
            session_id,
            after_sequence_number: after,
            backlog_only: !follow,
        };
        // A stream has no deadline: it lasts as long as the session.
        let option = crate::grpc::authorized(ctx.token.as_deref());
        let failure = match client.stream_session_logs_opt(&request, option) {
            Ok(stream) => {
                let mut failure = None;
                for item in futures::executor::block_on_stream(stream) {
                    match item {
                        Ok(m) => {
                            failures = 0;
                            after = m.sequence_number;
                            if let Err(outcome) = on(ConsoleEvent::Line(&m)) {
                                return stop(outcome);
                            }
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                match failure {
                    None if follow => return Ok(Followed::Ended),
                    None => return Ok(Followed::BacklogRead),
                    Some(e) => e,
                }
            }
            Err(e) => e,
        };
        let retryable = match &failure {
            grpcio::Error::RpcFailure(s) => matches!(
                s.code(),
                RpcStatusCode::UNAVAILABLE
                    | RpcStatusCode::DEADLINE_EXCEEDED
                    | RpcStatusCode::CANCELLED
            ),
            _ => true,
        };
        if !follow || !retryable {
            let f = Failure::from(failure);
            return Err(Failure::new(
                f.exit,
                format!("log processor at {address}: {}", f.message),
            ));
        }
        let delay = backoff.delay(failures);
        failures += 1;
        if let Err(outcome) = on(ConsoleEvent::Interrupted {
            why: failure.to_string(),
            retry_in: delay,
        }) {
            return stop(outcome);
        }
        std::thread::sleep(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_ages() {
        let now = 1_000_000_000;
        assert_eq!(parse_time("10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_time("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_time("2024-11-22T18:26:40Z", now).unwrap(),
            1_732_300_000_000
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("10w", now).is_err());
    }

    #[test]
    fn terminal_escapes_from_a_game_are_neutralised() {
        let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2Jhello\tworld\r";
        let shown = escape_controls(evil);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\t'),
            "{shown:?}"
        );
        assert_eq!(shown, "\\x1b]0;pwned\\x07\\x1b[2Jhello\tworld\\x0d");
        assert!(matches!(
            escape_controls("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
