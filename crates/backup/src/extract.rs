//! Restoring a backup: the archive unpacked into a new directory with every file checked
//! against the manifest (size, SHA-256, link target; nothing missing, nothing extra), then
//! swapped with the live directory in one step (`renameat2(RENAME_EXCHANGE)`), the old one
//! kept beside it as `….previous`.
//!
//! The archive is treated as hostile (a compromised host could have written it): only
//! regular files, directories and links are made, only at relative paths that pass through no
//! link made by the archive itself, with permission bits only (no setuid/setgid/sticky).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::manifest::{EntryKind, Manifest, ManifestEntry};
use crate::select::relative;
use crate::BackupError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    pub files: usize,
    pub bytes: u64,
}

/// Unpacks the zstd tar stream `archive` into `dest` (which must not exist yet) and checks it
/// against `manifest`; `progress` is told the bytes of file content written so far. On an
/// error `dest` is left for the caller to remove.
pub fn extract_verified(
    archive: impl Read,
    dest: &Path,
    manifest: &Manifest,
    progress: &mut dyn FnMut(u64),
) -> Result<ExtractSummary, BackupError> {
    std::fs::create_dir(dest).map_err(BackupError::io("creating", dest))?;
    let expected: HashMap<&str, &ManifestEntry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut links: HashSet<PathBuf> = HashSet::new();
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut summary = ExtractSummary::default();

    let decoder = zstd::Decoder::new(archive).map_err(BackupError::Read)?;
    let mut tar = tar::Archive::new(decoder);
    for entry in tar.entries().map_err(BackupError::Read)? {
        let mut entry = entry.map_err(BackupError::Read)?;
        let raw = entry.path().map_err(BackupError::Read)?.into_owned();
        let name = raw.to_string_lossy().trim_end_matches('/').to_string();
        let rel = relative(&name)
            .filter(|r| !r.as_os_str().is_empty())
            .ok_or_else(|| BackupError::Path(name.clone()))?;
        if rel.ancestors().skip(1).any(|a| links.contains(a)) {
            return Err(BackupError::Mismatch(format!("{name} lies behind a link")));
        }
        let want = expected
            .get(name.as_str())
            .ok_or_else(|| BackupError::Mismatch(format!("{name} is not in the manifest")))?;
        if !seen.insert(name.clone()) {
            return Err(BackupError::Mismatch(format!("{name} appears twice")));
        }
        let path = dest.join(&rel);
        let kind = entry.header().entry_type();
        match (&want.kind, kind) {
            (EntryKind::Dir, tar::EntryType::Directory) => {
                std::fs::create_dir_all(&path).map_err(BackupError::io("creating", &path))?;
                dirs.push((path, want.mode & 0o777, want.mtime));
            }
            (EntryKind::Symlink, tar::EntryType::Symlink) => {
                let target = entry
                    .link_name()
                    .map_err(BackupError::Read)?
                    .map(|t| t.to_string_lossy().into_owned());
                if target != want.target {
                    return Err(BackupError::Mismatch(format!(
                        "{name}: link target differs"
                    )));
                }
                parent_dir(&path)?;
                std::os::unix::fs::symlink(target.unwrap_or_default(), &path)
                    .map_err(BackupError::io("linking", &path))?;
                links.insert(rel);
            }
            (EntryKind::File, tar::EntryType::Regular) => {
                parent_dir(&path)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(BackupError::io("creating", &path))?;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut size = 0u64;
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(BackupError::Read(e)),
                    };
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n])
                        .map_err(BackupError::io("writing", &path))?;
                    size += n as u64;
                    summary.bytes += n as u64;
                    progress(summary.bytes);
                }
                let sha = hex::encode(hasher.finalize());
                if size != want.size || Some(&sha) != want.sha256.as_ref() {
                    return Err(BackupError::Mismatch(format!(
                        "{name}: {size} bytes with SHA-256 {sha}, the manifest says {} bytes \
                         with {}",
                        want.size,
                        want.sha256.as_deref().unwrap_or("none")
                    )));
                }
                finish_file(&file, want).map_err(BackupError::io("finishing", &path))?;
                summary.files += 1;
            }
            (want_kind, got) => {
                return Err(BackupError::Mismatch(format!(
                    "{name}: the manifest says {want_kind:?}, the archive holds {got:?}"
                )))
            }
        }
    }
    if let Some(lost) = manifest.entries.iter().find(|e| !seen.contains(&e.path)) {
        return Err(BackupError::Mismatch(format!(
            "{} is in the manifest but not in the archive",
            lost.path
        )));
    }
    // Directory modes last (a read-only directory would refuse its children), deepest first.
    for (dir, mode, mtime) in dirs.iter().rev() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode))
            .map_err(BackupError::io("setting the mode of", dir))?;
        let _ = File::open(dir).and_then(|d| d.set_modified(at(*mtime)));
    }
    Ok(summary)
}

fn parent_dir(path: &Path) -> Result<(), BackupError> {
    match path.parent() {
        Some(p) => std::fs::create_dir_all(p).map_err(BackupError::io("creating", p)),
        None => Ok(()),
    }
}

fn finish_file(file: &File, want: &ManifestEntry) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(want.mode & 0o777))?;
    file.set_modified(at(want.mtime))
}

fn at(mtime: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64)
}

/// Puts `fresh` where `live` is in one step and keeps the old content as `live.previous`
/// (replacing an older one). Without a live directory, `fresh` is simply renamed. Both must be
/// on one filesystem (the caller makes `fresh` beside `live`).
pub fn swap_into_place(fresh: &Path, live: &Path) -> Result<PathBuf, BackupError> {
    let previous = previous_of(live);
    if !live.exists() {
        std::fs::rename(fresh, live).map_err(BackupError::io("renaming", fresh))?;
        return Ok(previous);
    }
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(BackupError::io("removing", &previous))?;
    }
    exchange(fresh, live).map_err(BackupError::io("swapping in", live))?;
    std::fs::rename(fresh, &previous).map_err(BackupError::io("renaming", fresh))?;
    Ok(previous)
}

/// `live`'s sibling `….previous`.
pub fn previous_of(live: &Path) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_os_string();
    name.push(".previous");
    live.with_file_name(name)
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two valid NUL-terminated paths; the flags ask for an atomic exchange.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
