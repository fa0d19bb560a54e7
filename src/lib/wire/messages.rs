//! Message payloads on the `manman` exchange. Unknown fields are ignored; a missing required
//! field fails deserialisation, which the processor treats as a permanent error.

use serde::{Deserialize, Serialize};

use super::{HostStatus, SessionStatus};

/// `status.host.{server_id}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatusUpdate {
    pub server_id: i64,
    pub status: HostStatus,
}

/// `status.session.{session_id}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStatusUpdate {
    pub session_id: i64,
    #[serde(default)]
    pub sgc_id: Option<i64>,
    pub status: SessionStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it ended or failed (a spawn error, a give-up), in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Crash-restarts so far; a higher count than recorded announces a restart (with
    /// `exit_code` the exit that caused it), while the status stays what it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
}

/// Counts of a host's sessions by state, as reported in its heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    #[serde(default)]
    pub total: u32,
    #[serde(default)]
    pub running: u32,
    /// Any further per-state counts the host reports.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// `health.host.{server_id}`, every 5 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthUpdate {
    pub server_id: i64,
    #[serde(default)]
    pub session_stats: SessionStats,
    /// When the host sent it (unix ms); `last_seen` is this, clamped by the receive time, so
    /// heartbeats that waited in the queue while the processor was down count for when they
    /// were sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<i64>,
    /// What each live session's game is doing (its process group), sampled for this beat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionSample>,
    /// What placement needs to know of the host (agents before day two do not send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<HostCapacity>,
}

/// A host's memory (/proc/meminfo) and the ports `deploy --port auto` may give its games.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCapacity {
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub port_range_low: u16,
    pub port_range_high: u16,
}

/// One session's game, sampled by its host from the session's cgroup (or, where it has
/// none, from /proc).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionSample {
    pub session_id: i64,
    /// Of one core, since the previous beat (can exceed 100 on several cores).
    pub cpu_percent: f64,
    /// Memory in use: the cgroup's charge (`memory.current`) where the session has one,
    /// else the resident memory of its process group.
    pub rss_bytes: u64,
    pub threads: u32,
    pub open_files: u32,
    pub processes: u32,
    /// The most memory the session's cgroup was ever charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_bytes: Option<u64>,
    /// Bytes read from block devices by the session's cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_bytes: Option<u64>,
    /// The size of the deployment's directory, as last measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Who is playing, from the config's player query; absent: unknown (no query, or the
    /// last one failed), never 0 for "did not answer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<super::players::Players>,
}

/// `logs.session.{session_id}` from agents before batching: one line of a game server's output
/// (read as a batch of one; see [`super::ConsoleBatch`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub session_id: i64,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub source: String,
    pub message: String,
}

impl LogLine {
    /// The source names a stream (`stdout`, `stderr`, `host`, …): a short lowercase word, so a
    /// host cannot smuggle text (or whole lines) into the archive through it.
    pub fn check_source(&self) -> Result<(), String> {
        Self::check_source_name(&self.source)
    }

    pub fn check_source_name(source: &str) -> Result<(), String> {
        let ok = (1..=16).contains(&source.len())
            && source.starts_with(|c: char| c.is_ascii_lowercase())
            && source
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "source {:?} is not a stream name (1-16 of a-z 0-9 _ -)",
                source.chars().take(40).collect::<String>()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: T) {
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
    }

    #[test]
    fn every_message_type_round_trips() {
        round_trip(HostStatusUpdate {
            server_id: 1,
            status: HostStatus::Online,
        });
        round_trip(SessionStatusUpdate {
            session_id: 7,
            sgc_id: Some(3),
            status: SessionStatus::Crashed,
            exit_code: Some(137),
            reason: Some("was killed by signal 9".into()),
            restart_count: Some(2),
        });
        let mut other = serde_json::Map::new();
        other.insert("crashed".into(), 1.into());
        round_trip(HealthUpdate {
            server_id: 1,
            session_stats: SessionStats {
                total: 2,
                running: 1,
                other,
            },
            sent_at_ms: Some(1_732_300_000_123),
            sessions: vec![SessionSample {
                session_id: 7,
                cpu_percent: 12.5,
                rss_bytes: 512 << 20,
                threads: 40,
                open_files: 120,
                processes: 2,
                memory_peak_bytes: Some(600 << 20),
                io_read_bytes: Some(1 << 20),
                disk_bytes: Some(3 << 30),
                players: Some(crate::wire::players::Players {
                    online: 3,
                    max: Some(20),
                    names: vec!["alice".into()],
                }),
            }],
            capacity: Some(HostCapacity {
                memory_total_bytes: 32 << 30,
                memory_available_bytes: 20 << 30,
                port_range_low: 7000,
                port_range_high: 8000,
            }),
        });
        round_trip(LogLine {
            session_id: 7,
            timestamp: 1_732_300_000_123,
            source: "stdout".into(),
            message: "Done (3.2s)!".into(),
        });
    }

    #[test]
    fn contract_examples_parse_and_unknown_fields_are_ignored() {
        let s: SessionStatusUpdate = serde_json::from_str(
            r#"{"session_id":7,"sgc_id":3,"status":"starting","exit_code":null,"extra":true}"#,
        )
        .unwrap();
        assert_eq!(s.status, SessionStatus::Starting);
        let h: HealthUpdate = serde_json::from_str(
            r#"{"server_id":1,"session_stats":{"total":2,"running":1,"stopped":1}}"#,
        )
        .unwrap();
        assert_eq!(h.session_stats.other["stopped"], 1);
    }

    #[test]
    fn a_log_source_cannot_carry_text() {
        let line = |source: &str| LogLine {
            session_id: 1,
            timestamp: 0,
            source: source.into(),
            message: "m".into(),
        };
        assert!(line("stdout").check_source().is_ok());
        assert!(line("host").check_source().is_ok());
        assert!(line("stdout\n2026-01-01T00:00:00.000Z stdout forged")
            .check_source()
            .is_err());
        assert!(line("").check_source().is_err());
        assert!(line("Stdout").check_source().is_err());
    }

    #[test]
    fn missing_required_fields_are_errors() {
        let err = serde_json::from_str::<HostStatusUpdate>(r#"{"status":"online"}"#).unwrap_err();
        assert!(err.to_string().contains("server_id"));
        assert!(serde_json::from_str::<SessionStatusUpdate>(r#"{"session_id":1}"#).is_err());
        assert!(
            serde_json::from_str::<HostStatusUpdate>(r#"{"server_id":1,"status":"sleeping"}"#)
                .is_err()
        );
    }
}
