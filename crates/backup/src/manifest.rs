//! The manifest stored beside each archive: every entry's path, kind, size, mode, mtime and,
//! for a file, the SHA-256 of the bytes in the archive, so a restore is verified and a later
//! version can skip unchanged files (deduplication).

use serde::{Deserialize, Serialize};

use crate::BackupError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to the deployment's directory, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Hex SHA-256 of a file's bytes as archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The file changed size while it was read: archived at the size it had when its header
    /// was written (cut short, or padded with zeros). Only a pre action (`save-off`) makes a
    /// running game's files hold still.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_while_read: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    pub const VERSION: u32 = 1;

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest, BackupError> {
        serde_json::from_slice(bytes).map_err(BackupError::Manifest)
    }

    /// Bytes of file content it describes.
    pub fn content_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    pub fn files(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count()
    }
}
