//! A deployment's files as a backup archive: selected (paths and exclude globs), snapshotted
//! copy-on-write where the filesystem has reflinks, written as a zstd-compressed tar stream
//! with a manifest of every file's SHA-256, cut into parts for a multipart upload while later
//! files are still being read, and restored into a fresh directory with every byte checked
//! against the manifest. No network and no database here:
//! the agent moves the parts, the control plane keeps the records.

mod archive;
mod extract;
mod manifest;
mod parts;
mod select;
mod snapshot;

pub use archive::{write_archive, ArchiveHooks, ArchiveSummary};
pub use extract::{extract_verified, previous_of, swap_into_place, ExtractSummary};
pub use manifest::{EntryKind, Manifest, ManifestEntry};
pub use parts::{Part, PartWriter, PartsDigest, Written};
pub use select::Selection;
pub use snapshot::{remove_tree, take_snapshot, Snapshot, Snapshotted};

/// Why an archive could not be written or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the archive")]
    Write(#[source] std::io::Error),
    #[error("reading the archive")]
    Read(#[source] std::io::Error),
    /// The glob's own words are part of the message (it is shown as one line).
    #[error("invalid exclude pattern {0:?}: {1}")]
    Pattern(String, globset::Error),
    #[error("invalid path {0:?}: only relative paths inside the deployment's directory")]
    Path(String),
    #[error("the archive does not match its manifest: {0}")]
    Mismatch(String),
    #[error("unreadable manifest")]
    Manifest(#[source] serde_json::Error),
    #[error("stopped: {0}")]
    Cancelled(String),
}

impl BackupError {
    fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| BackupError::Io { what, path, source }
    }
}
