//! `logs.session.{session_id}` payloads: a batch of one session's console lines, each with its
//! own sequence, timestamp and source. The single-line message of agents before batching is
//! still read (as a batch of one, unnumbered) for one release, then refused.

use serde::{Deserialize, Serialize};

use super::LogLine;

/// One console line inside a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleLine {
    /// The host's number for the line, 1, 2, … per session and agent run (0: not numbered, an
    /// older agent). A jump tells the log processor that lines were lost on the way.
    #[serde(default)]
    pub seq: u64,
    /// Unix milliseconds, when the host read the line.
    pub timestamp: i64,
    /// `stdout`, `stderr` or `host` (the agent's own markers).
    pub source: String,
    pub message: String,
    /// On the throttle's marker line: how many lines it stands for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The lines of one session that the host publishes in one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleBatch {
    pub session_id: i64,
    pub lines: Vec<ConsoleLine>,
}

/// Either shape a `logs.session.*` body may have.
#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    Batch(ConsoleBatch),
    Single(LogLine),
}

impl ConsoleBatch {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a console batch is serialisable")
    }

    /// Reads a batch (or an older agent's single line), checks every source, and that it is
    /// for `session_id` when one is expected. The error is the dead-letter reason.
    pub fn decode(body: &[u8]) -> Result<ConsoleBatch, String> {
        let batch = match serde_json::from_slice::<Payload>(body) {
            Ok(Payload::Batch(b)) => b,
            Ok(Payload::Single(l)) => ConsoleBatch {
                session_id: l.session_id,
                lines: vec![ConsoleLine {
                    seq: 0,
                    timestamp: l.timestamp,
                    source: l.source,
                    message: l.message,
                    dropped: 0,
                }],
            },
            Err(_) => return Err(Self::why_unreadable(body)),
        };
        if batch.session_id <= 0 {
            return Err(format!("session_id {} is not a session", batch.session_id));
        }
        for line in &batch.lines {
            LogLine::check_source_name(&line.source)?;
        }
        Ok(batch)
    }

    /// Serde's untagged error says only "did not match any variant": say what is wrong.
    fn why_unreadable(body: &[u8]) -> String {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Err(e) => format!("not JSON: {e}"),
            Ok(v) if v.get("lines").is_some() => match serde_json::from_value::<ConsoleBatch>(v) {
                Err(e) => format!("not a console batch: {e}"),
                Ok(_) => "not a console batch".into(),
            },
            Ok(v) => match serde_json::from_value::<LogLine>(v) {
                Err(e) => format!("not a console batch or log line: {e}"),
                Ok(_) => "not a console batch or log line".into(),
            },
        }
    }

    /// Bytes of text the lines carry (what a batch's size limit counts).
    pub fn text_bytes(&self) -> usize {
        self.lines.iter().map(ConsoleLine::text_bytes).sum()
    }
}

impl ConsoleLine {
    pub fn text_bytes(&self) -> usize {
        self.message.len() + self.source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The host cuts longer lines (procman's `MAX_LINE_BYTES`).
    const MAX_LINE_BYTES: usize = 16 * 1024;

    fn line(seq: u64, source: &str, message: &str) -> ConsoleLine {
        ConsoleLine {
            seq,
            timestamp: 1_732_300_000_000 + seq as i64,
            source: source.into(),
            message: message.into(),
            dropped: 0,
        }
    }

    #[test]
    fn a_batch_round_trips_with_sources_and_order_kept() {
        let invalid_utf8 = String::from_utf8_lossy(b"caf\xc3 \xff end").into_owned();
        let batch = ConsoleBatch {
            session_id: 7,
            lines: vec![
                line(1, "stdout", "Loading world"),
                line(2, "stderr", "warning: slow tick"),
                line(3, "stdout", &"x".repeat(MAX_LINE_BYTES)),
                line(4, "stderr", &invalid_utf8),
                ConsoleLine {
                    dropped: 3,
                    ..line(5, "host", "[manman] 3 lines dropped: output too fast")
                },
                line(6, "stdout", "quote \" backslash \\ tab \t nul \u{0} <b>"),
            ],
        };
        let decoded = ConsoleBatch::decode(&batch.encode()).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(decoded.lines[2].message.len(), MAX_LINE_BYTES);
        assert!(decoded.lines[3].message.contains('\u{FFFD}'));
        let sources: Vec<&str> = decoded.lines.iter().map(|l| l.source.as_str()).collect();
        assert_eq!(
            sources,
            ["stdout", "stderr", "stdout", "stderr", "host", "stdout"]
        );
    }

    #[test]
    fn an_older_agents_single_line_is_a_batch_of_one() {
        let b = ConsoleBatch::decode(
            br#"{"session_id":7,"timestamp":1732300000123,"source":"stdout","message":"hi"}"#,
        )
        .unwrap();
        assert_eq!(b.session_id, 7);
        assert_eq!(
            b.lines,
            [line(0, "stdout", "hi")].map(|mut l| {
                l.timestamp = 1_732_300_000_123;
                l
            })
        );
    }

    #[test]
    fn unreadable_bodies_say_why() {
        let bad_utf8 = b"{\"session_id\":7,\"lines\":[{\"seq\":1,\"timestamp\":1,\"source\":\"stdout\",\"message\":\"\xff\"}]}";
        assert!(ConsoleBatch::decode(bad_utf8)
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(
            ConsoleBatch::decode(br#"{"session_id":7,"lines":[{"seq":1}]}"#)
                .unwrap_err()
                .contains("timestamp")
        );
        assert!(ConsoleBatch::decode(br#"{"session_id":7}"#)
            .unwrap_err()
            .contains("not a console batch or log line"));
        let forged = ConsoleBatch {
            session_id: 7,
            lines: vec![line(1, "stdout\n2026-01-01 stdout forged", "x")],
        };
        assert!(ConsoleBatch::decode(&forged.encode())
            .unwrap_err()
            .contains("not a stream name"));
        let nobody = ConsoleBatch {
            session_id: 0,
            lines: vec![],
        };
        assert!(ConsoleBatch::decode(&nobody.encode()).is_err());
    }
}
