//! What the processor adds to a host's report when it announces a change on the external
//! exchange (`manman.external`, read by manman-notify and anyone the operator lets bind). The
//! announced payload is the host's report with these fields over it: a host cannot write them
//! (a notification's text would otherwise say what the host wrote).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `manman.host.online|offline|stale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostChanged {
    pub status: String,
    pub previous_status: String,
    /// The host's registered name (never the name a report carries).
    pub name: String,
}

/// `manman.session.<status>` for a session that moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionChanged {
    pub previous_status: String,
    pub sgc_id: i64,
    pub server_id: i64,
    pub started_at: Option<DateTime<Utc>>,
    /// Set once the session has ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Host ports its deployment gave back when it ended (0 while live).
    pub ports_freed: i64,
}

/// `manman.session.restarted`: its game was restarted in place by the restart policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRestarted {
    pub restart_count: i32,
    pub reason: Option<String>,
    pub sgc_id: i64,
    pub server_id: i64,
}

/// `manman.backup.completed|failed`, announced by the API in the transaction that ends the
/// backup (the processor's relay publishes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupEnded {
    pub backup_id: i64,
    pub sgc_id: i64,
    pub server_id: i64,
    pub status: String,
    pub size_bytes: Option<i64>,
    pub file_count: Option<i32>,
    pub reason: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// `manman.schedule.failed`: a schedule's run ended on a failed step (or could not start),
/// announced by the API in the transaction that records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleFailed {
    pub schedule_id: i64,
    pub run_id: i64,
    pub sgc_id: i64,
    pub name: String,
    pub reason: String,
    pub scheduled_for: DateTime<Utc>,
}

/// The fields only the processor sets, removed from a host's report before it is announced.
pub const PROCESSOR_FIELDS: [&str; 2] = ["name", "previous_status"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_announcement_round_trips_and_carries_the_fields_the_processor_owns() {
        let host = HostChanged {
            status: "online".into(),
            previous_status: "offline".into(),
            name: "alpha".into(),
        };
        let v = serde_json::to_value(&host).unwrap();
        assert_eq!(
            serde_json::from_value::<HostChanged>(v.clone()).unwrap(),
            host
        );
        for field in PROCESSOR_FIELDS {
            assert!(v.get(field).is_some(), "{field}");
        }
        let moved = SessionChanged {
            previous_status: "running".into(),
            sgc_id: 4,
            server_id: 1,
            started_at: Some(Utc::now()),
            ended_at: None,
            ports_freed: 0,
        };
        let v = serde_json::to_value(&moved).unwrap();
        assert_eq!(serde_json::from_value::<SessionChanged>(v).unwrap(), moved);
        let restarted = SessionRestarted {
            restart_count: 2,
            reason: Some("exited with code 3".into()),
            sgc_id: 4,
            server_id: 1,
        };
        let v = serde_json::to_value(&restarted).unwrap();
        assert_eq!(
            serde_json::from_value::<SessionRestarted>(v).unwrap(),
            restarted
        );
    }
}
