//! The archive layout: object keys per session minute and the gzip'd text lines inside.
//!
//! An object is one or more concatenated gzip members (RFC 1952 allows it; `zcat` and
//! `MultiGzDecoder` read them as one stream), so late lines are appended by adding a member
//! without re-compressing what is already there.

use std::io::{Read, Write};

use chrono::{DateTime, TimeZone, Timelike, Utc};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// One archived line: `2026-11-23T18:36:47.123Z stdout the message` in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedLine {
    /// Unix milliseconds.
    pub timestamp: i64,
    pub source: String,
    pub message: String,
}

/// The UTC minute (as unix milliseconds) a timestamp falls in.
pub fn minute_of(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(60_000) * 60_000
}

/// `logs/sgc-{sgc}/session-{id}/YYYY/MM/DD/HH/mm.log.gz` for the minute starting at `minute_ms`.
pub fn object_key(sgc_id: i64, session_id: i64, minute_ms: i64) -> String {
    let t: DateTime<Utc> = Utc
        .timestamp_millis_opt(minute_ms)
        .single()
        .unwrap_or_default();
    format!(
        "logs/sgc-{sgc_id}/session-{session_id}/{}/{:02}.log.gz",
        t.format("%Y/%m/%d/%H"),
        t.minute()
    )
}

/// One gzip member holding `lines`, one per text line. Newlines inside a message are escaped
/// so a line stays a line.
pub fn encode_lines(lines: &[ArchivedLine]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    for line in lines {
        let time = Utc
            .timestamp_millis_opt(line.timestamp)
            .single()
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let message = line.message.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a Vec cannot fail.
        let _ = writeln!(gz, "{time} {} {message}", line.source);
    }
    gz.finish().unwrap_or_default()
}

/// Every line of an object (all its gzip members). Unparseable lines are kept as messages of
/// source `unknown` rather than hidden.
pub fn decode_object(bytes: &[u8]) -> std::io::Result<Vec<ArchivedLine>> {
    let mut text = String::new();
    MultiGzDecoder::new(bytes).read_to_string(&mut text)?;
    Ok(text.lines().map(parse_line).collect())
}

fn parse_line(line: &str) -> ArchivedLine {
    let mut parts = line.splitn(3, ' ');
    let (time, source, message) = (parts.next(), parts.next(), parts.next());
    let timestamp = time
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    match (timestamp, source) {
        (Some(timestamp), Some(source)) => ArchivedLine {
            timestamp,
            source: source.to_string(),
            message: unescape(message.unwrap_or("")),
        },
        _ => ArchivedLine {
            timestamp: 0,
            source: "unknown".into(),
            message: line.to_string(),
        },
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: i64, source: &str, message: &str) -> ArchivedLine {
        ArchivedLine {
            timestamp: ts,
            source: source.into(),
            message: message.into(),
        }
    }

    #[test]
    fn key_names_the_utc_minute() {
        // 2024-11-22T18:26:40.123Z
        let ts = 1_732_300_000_123;
        assert_eq!(minute_of(ts), 1_732_299_960_000);
        assert_eq!(
            object_key(3, 7, minute_of(ts)),
            "logs/sgc-3/session-7/2024/11/22/18/26.log.gz"
        );
        assert_eq!(minute_of(-1), -60_000);
    }

    #[test]
    fn members_concatenate_and_lines_round_trip() {
        let first = vec![
            line(1_732_300_000_123, "stdout", "hello world"),
            line(1_732_300_001_000, "stderr", "two\nlines \\ and a backslash"),
        ];
        let late = vec![line(1_732_300_002_000, "host", "")];
        let mut object = encode_lines(&first);
        object.extend(encode_lines(&late));
        let decoded = decode_object(&object).unwrap();
        assert_eq!(decoded, [first, late].concat());
    }

    #[test]
    fn garbage_lines_are_kept_visible() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(b"not a log line\n").unwrap();
        let decoded = decode_object(&gz.finish().unwrap()).unwrap();
        assert_eq!(decoded[0].source, "unknown");
        assert_eq!(decoded[0].message, "not a log line");
        assert!(decode_object(b"not gzip").is_err());
    }
}
