//! Backups on the wire: what a config says to back up and how to make it consistent (the one
//! validation, used by the API and again by the host), the commands that start a backup or a
//! restore on a host, and a backup's statuses.

use serde::{Deserialize, Serialize};

/// The longest a pre or post action may wait for its line.
pub const MAX_ACTION_TIMEOUT_SECONDS: u32 = 3_600;
pub const DEFAULT_ACTION_TIMEOUT_SECONDS: u32 = 60;

/// A console command sent to a running game around the copy, optionally waiting for a line
/// (Minecraft: `save-all flush` until `Saved the game`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleAction {
    pub command: String,
    /// A regex a console line must match before the next step; none: do not wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<String>,
    /// How long to wait for it (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

impl ConsoleAction {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.timeout_seconds
                .unwrap_or(DEFAULT_ACTION_TIMEOUT_SECONDS)
                .into(),
        )
    }

    fn validate(&self, which: &str) -> Result<(), String> {
        if self.command.trim().is_empty() || self.command.contains(['\n', '\r']) {
            return Err(format!("{which}: a command is one non-empty line"));
        }
        if let Some(p) = &self.wait_for {
            regex::Regex::new(p).map_err(|e| format!("{which}: wait_for {p:?}: {e}"))?;
        }
        if self
            .timeout_seconds
            .is_some_and(|t| t == 0 || t > MAX_ACTION_TIMEOUT_SECONDS)
        {
            return Err(format!(
                "{which}: timeout_seconds must be 1 .. {MAX_ACTION_TIMEOUT_SECONDS}"
            ));
        }
        Ok(())
    }
}

/// A config's backup settings. Everything optional: no paths is the whole deployment
/// directory, no actions is a plain copy, no retention keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPolicy {
    /// Relative to the deployment's directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Globs matched against paths relative to the deployment's directory (`logs/**`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<ConsoleAction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<ConsoleAction>,
    /// Keep the newest N completed backups (pinned ones are kept on top).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep completed backups younger than D days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
}

impl BackupPolicy {
    pub fn validate(&self) -> Result<(), String> {
        manman_backup::Selection::new(&self.paths, &self.excludes).map_err(|e| e.to_string())?;
        for (i, a) in self.pre.iter().enumerate() {
            a.validate(&format!("pre action {}", i + 1))?;
        }
        for (i, a) in self.post.iter().enumerate() {
            a.validate(&format!("post action {}", i + 1))?;
        }
        if self.pre.len() + self.post.len() > 20 {
            return Err("at most 20 pre and post actions".into());
        }
        if self.keep_last == Some(0) {
            return Err("keep_last must be at least 1 (unset keeps every backup)".into());
        }
        if self.keep_days == Some(0) {
            return Err("keep_days must be at least 1 (unset keeps every backup)".into());
        }
        Ok(())
    }
}

/// A completed backup as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub backup_id: i64,
    pub ended_at_s: i64,
    pub pinned: bool,
}

impl BackupPolicy {
    /// Which of a deployment's completed backups (newest first) retention prunes at `now_s`:
    /// those kept by neither rule (the newest `keep_last`; any younger than `keep_days`),
    /// never a pinned one, and nothing when no rule is set.
    pub fn to_prune(&self, newest_first: &[Kept], now_s: i64) -> Vec<i64> {
        if self.keep_last.is_none() && self.keep_days.is_none() {
            return Vec::new();
        }
        newest_first
            .iter()
            .filter(|b| !b.pinned)
            .enumerate()
            .filter(|(rank, b)| {
                let by_count = self.keep_last.is_some_and(|n| *rank < n as usize);
                let by_age = self
                    .keep_days
                    .is_some_and(|d| now_s - b.ended_at_s < i64::from(d) * 86_400);
                !by_count && !by_age
            })
            .map(|(_, b)| b.backup_id)
            .collect()
    }
}

/// A backup's life: `pending` (asked of the host) → `running` (the host accepted) →
/// `completed` | `failed`; a completed backup later `pruned` or `deleted` (its objects gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Pruned,
    Deleted,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Pending => "pending",
            BackupStatus::Running => "running",
            BackupStatus::Completed => "completed",
            BackupStatus::Failed => "failed",
            BackupStatus::Pruned => "pruned",
            BackupStatus::Deleted => "deleted",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, BackupStatus::Pending | BackupStatus::Running)
    }
}

impl std::str::FromStr for BackupStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| format!("unknown backup status {s:?}"))
    }
}

/// `command.host.{id}.backup.create`: back up a deployment's directory into a multipart upload
/// the API has opened. The host holds no bucket keys: it gets pre-signed URLs, a first batch
/// here and more from `PresignBackupParts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateBackup {
    pub backup_id: i64,
    pub sgc_id: i64,
    /// The deployment's live session, whose console the actions go to; none when stopped.
    #[serde(default)]
    pub session_id: Option<i64>,
    pub policy: BackupPolicy,
    /// Bytes per part (every part but the last), at least S3's 5 MiB.
    pub part_size: u64,
    /// Pre-signed PUT URLs for parts 1, 2, ...
    pub part_urls: Vec<String>,
    /// Pre-signed PUT URL for the manifest.
    pub manifest_url: String,
    /// When the API fails the backup if the host has not finished (unix ms).
    pub finish_by_ms: i64,
}

/// `command.host.{id}.backup.restore`: replace a deployment's directory with a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreBackup {
    pub restore_id: i64,
    pub backup_id: i64,
    pub sgc_id: i64,
    /// Pre-signed GET URLs.
    pub archive_url: String,
    pub manifest_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_checked_once_here() {
        let ok = BackupPolicy {
            paths: vec!["world".into()],
            excludes: vec!["logs/**".into()],
            pre: vec![ConsoleAction {
                command: "save-all flush".into(),
                wait_for: Some("Saved the game".into()),
                timeout_seconds: Some(30),
            }],
            ..BackupPolicy::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = |p: BackupPolicy| p.validate().unwrap_err();
        assert!(bad(BackupPolicy {
            paths: vec!["../x".into()],
            ..ok.clone()
        })
        .contains("invalid path"));
        let mut regex = ok.clone();
        regex.pre[0].wait_for = Some("(".into());
        assert!(bad(regex).contains("pre action 1: wait_for"));
        let mut two_lines = ok.clone();
        two_lines.pre[0].command = "save-off\nop griefer".into();
        assert!(bad(two_lines).contains("one non-empty line"));
        assert!(bad(BackupPolicy {
            keep_last: Some(0),
            ..ok.clone()
        })
        .contains("keep_last"));
        assert_eq!("running".parse(), Ok(BackupStatus::Running));
    }

    #[test]
    fn retention_keeps_the_newest_the_young_and_the_pinned() {
        let day = 86_400;
        let now = 100 * day;
        // Newest first: ids 6..1, one a day, id 4 pinned.
        let backups: Vec<Kept> = (1..=6)
            .rev()
            .map(|id| Kept {
                backup_id: id,
                ended_at_s: now - (7 - id) * day,
                pinned: id == 4,
            })
            .collect();
        let policy = |last, days| BackupPolicy {
            keep_last: last,
            keep_days: days,
            ..BackupPolicy::default()
        };
        assert_eq!(
            policy(None, None).to_prune(&backups, now),
            Vec::<i64>::new()
        );
        // The pinned one does not count towards the newest N.
        assert_eq!(policy(Some(2), None).to_prune(&backups, now), vec![3, 2, 1]);
        // Younger than 3 days: ids 6 (1 day), 5 (2 days).
        assert_eq!(policy(None, Some(3)).to_prune(&backups, now), vec![3, 2, 1]);
        // Either rule keeps: the newest 1, or younger than 5 days (6, 5, 3; 4 is pinned).
        assert_eq!(policy(Some(1), Some(5)).to_prune(&backups, now), vec![2, 1]);
        // Exactly 4 days old is not younger than 4 days.
        assert_eq!(
            policy(Some(1), Some(4)).to_prune(&backups, now),
            vec![3, 2, 1]
        );
        assert!("bogus".parse::<BackupStatus>().is_err());
    }
}
