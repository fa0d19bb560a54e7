//! Lifecycle history: starts, exits (code or signal), restarts, give-ups, for whoever wants a
//! record. Sinks are called from supervisor threads and must not block for long.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ExitInfo;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    Started {
        name: String,
        pid: u32,
        at: DateTime<Utc>,
    },
    SpawnFailed {
        name: String,
        error: String,
        at: DateTime<Utc>,
    },
    Exited {
        name: String,
        pid: u32,
        exit: ExitInfo,
        uptime_ms: u64,
        requested: bool,
        at: DateTime<Utc>,
    },
    /// Stayed up for the start duration (or the start duration is zero).
    Running {
        name: String,
        pid: u32,
        at: DateTime<Utc>,
    },
    /// The supervisor is done: `stopped` (asked to, or a clean exit that is not restarted) or
    /// `failed` (no more restarts).
    Finished {
        name: String,
        state: super::ProcessState,
        last_exit: Option<ExitInfo>,
        requested: bool,
        /// Why it ended, when it was not asked to (an exit, a spawn error, a give-up).
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    /// It ended on its own and will be started again after `delay_ms`.
    Restarting {
        name: String,
        /// 1 for the first restart.
        attempt: u32,
        delay_ms: u64,
        last_exit: Option<ExitInfo>,
        reason: String,
        at: DateTime<Utc>,
    },
    GaveUp {
        name: String,
        failures: u32,
        last_exit: Option<ExitInfo>,
        at: DateTime<Utc>,
    },
    /// A process from a previous manager run, found alive at start and ended.
    Reaped {
        name: String,
        pid: u32,
        at: DateTime<Utc>,
    },
}

impl HistoryEvent {
    pub fn name(&self) -> &str {
        match self {
            HistoryEvent::Started { name, .. }
            | HistoryEvent::SpawnFailed { name, .. }
            | HistoryEvent::Exited { name, .. }
            | HistoryEvent::Running { name, .. }
            | HistoryEvent::Finished { name, .. }
            | HistoryEvent::Restarting { name, .. }
            | HistoryEvent::GaveUp { name, .. }
            | HistoryEvent::Reaped { name, .. } => name,
        }
    }
}

pub trait HistorySink: Send + Sync {
    fn record(&self, event: &HistoryEvent);
}

/// Appends one JSON object per line to a file.
pub struct JsonLinesHistory {
    file: Mutex<std::fs::File>,
}

impl JsonLinesHistory {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonLinesHistory {
            file: Mutex::new(file),
        })
    }
}

impl HistorySink for JsonLinesHistory {
    fn record(&self, event: &HistoryEvent) {
        let mut line = serde_json::to_string(event).expect("history events serialise");
        line.push('\n');
        let mut file = manman_base::sync::lock(&self.file);
        if let Err(e) = file.write_all(line.as_bytes()) {
            log::warn!("cannot write process history: {e}");
        }
    }
}

/// Sends events down a crossbeam channel.
pub struct ChannelHistory(pub crossbeam_channel::Sender<HistoryEvent>);

impl HistorySink for ChannelHistory {
    fn record(&self, event: &HistoryEvent) {
        let _ = self.0.send(event.clone());
    }
}
