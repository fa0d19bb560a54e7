//! What the manager must remember across its own restarts: each process's spec, whether it
//! should be running, and the PID (with its kernel start time, so a recycled PID is never
//! mistaken for ours). The default store is one JSON file, replaced atomically.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Spec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProcess {
    pub spec: Spec,
    pub desired_running: bool,
    pub pid: Option<u32>,
    /// Field 22 of `/proc/{pid}/stat` when the process was started.
    pub pid_start_time: Option<u64>,
    /// The newest output line taken from its keeper, if a keeper holds it.
    #[serde(default)]
    pub last_seq: u64,
}

pub trait Store: Send + Sync {
    fn load(&self) -> std::io::Result<Vec<StoredProcess>>;
    fn save(&self, processes: &[StoredProcess]) -> std::io::Result<()>;
}

/// A JSON file under the data directory, written to a temporary file, fsynced and renamed over
/// the old one: a crash mid-write leaves the previous version.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }
}

impl Store for FileStore {
    fn load(&self) -> std::io::Result<Vec<StoredProcess>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn save(&self, processes: &[StoredProcess]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(processes)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_round_trips_and_starts_empty() {
        let dir = std::env::temp_dir().join(format!("manman-store-test-{}", std::process::id()));
        let store = FileStore::new(dir.join("procs.json"));
        assert!(store.load().unwrap().is_empty());
        let record = StoredProcess {
            spec: Spec::new("a", "/bin/sleep", &["1"]),
            desired_running: true,
            pid: Some(42),
            pid_start_time: Some(7),
            last_seq: 9,
        };
        store.save(std::slice::from_ref(&record)).unwrap();
        assert_eq!(store.load().unwrap(), vec![record]);
        assert!(!dir.join("procs.tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
