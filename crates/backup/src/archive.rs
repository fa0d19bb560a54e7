//! Writing a backup: the selected entries of a deployment's directory as a zstd tar stream,
//! hashing each file as it is read. Links are archived as links, never followed; a FIFO,
//! socket or device the game left is skipped (opening a FIFO would block the backup forever).
//! Every file and directory is opened beneath the deployment's directory with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: a game that swaps a directory for a link
//! to a host directory between the walk and the read gets a refused open, not a host file in
//! its next restore.

use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::{EntryKind, Manifest, ManifestEntry};
use crate::{BackupError, Selection};

/// zstd's default level: `tar --zstd` uses the same, which is what operators compare with.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub manifest: Manifest,
    /// Configured paths that did not exist.
    pub missing: Vec<String>,
    /// Entries skipped (FIFOs, sockets, devices, files that vanished before they were read).
    pub skipped: Vec<String>,
}

/// Hooks the caller gives a running archive: progress (bytes of file content read so far)
/// and a reason to stop, asked between files and between reads.
pub trait ArchiveHooks {
    fn planned(&mut self, _files: usize, _bytes: u64) {}
    fn progress(&mut self, _bytes_read: u64) {}
    fn stop_reason(&mut self) -> Option<String> {
        None
    }
}

impl ArchiveHooks for () {}

pub(crate) struct Planned {
    pub(crate) relative: PathBuf,
    pub(crate) meta: Metadata,
}

/// Writes the archive of `root`'s selected entries to `out` and returns `out` (flushed, the
/// zstd frame finished) with the summary.
pub fn write_archive<W: Write>(
    root: &Path,
    selection: &Selection,
    out: W,
    hooks: &mut dyn ArchiveHooks,
) -> Result<(W, ArchiveSummary), BackupError> {
    let mut summary = ArchiveSummary::default();
    let root_dir = File::open(root).map_err(BackupError::io("opening", root))?;
    let plan = walk(root, &root_dir, selection, &mut summary)?;
    let total: u64 = plan
        .iter()
        .filter(|p| p.meta.is_file())
        .map(|p| p.meta.len())
        .sum();
    hooks.planned(plan.iter().filter(|p| p.meta.is_file()).count(), total);

    let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL).map_err(BackupError::Write)?;
    // One worker: compression runs beside this thread's reading and hashing (the output is
    // the same zstd format; `tar --zstd` and every zstd reader take it).
    encoder.multithread(1).map_err(BackupError::Write)?;
    // Jobs of 2 MiB (a quarter of the default at this level) keep the worker's buffers small.
    encoder
        .set_parameter(zstd::stream::raw::CParameter::JobSize(2 << 20))
        .map_err(BackupError::Write)?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    let mut done = 0u64;
    for item in plan {
        if let Some(reason) = hooks.stop_reason() {
            return Err(BackupError::Cancelled(reason));
        }
        let name = slash_path(&item.relative);
        let path = root.join(&item.relative);
        let mut header = tar::Header::new_gnu();
        header.set_mode(item.meta.mode() & 0o7777);
        header.set_mtime(item.meta.mtime().max(0) as u64);
        let mut entry = ManifestEntry {
            path: name.clone(),
            kind: EntryKind::File,
            size: 0,
            mode: item.meta.mode() & 0o7777,
            mtime: item.meta.mtime(),
            sha256: None,
            target: None,
            changed_while_read: false,
        };
        let ft = item.meta.file_type();
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, &name, io::empty())
                .map_err(BackupError::Write)?;
            entry.kind = EntryKind::Dir;
        } else if ft.is_symlink() {
            let target = match std::fs::read_link(&path) {
                Ok(t) => t,
                Err(_) => {
                    summary.skipped.push(name);
                    continue;
                }
            };
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &name, &target)
                .map_err(BackupError::Write)?;
            entry.kind = EntryKind::Symlink;
            entry.target = Some(target.to_string_lossy().into_owned());
        } else {
            let Some((file, meta)) = open_regular(&root_dir, &item.relative) else {
                summary.skipped.push(name);
                continue;
            };
            let size = meta.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            header.set_mtime(meta.mtime().max(0) as u64);
            let mut reader = ExactReader {
                file,
                left: size,
                hasher: Sha256::new(),
                short: false,
                done: &mut done,
                hooks: &mut *hooks,
                stopped: None,
            };
            let appended = tar.append_data(&mut header, &name, &mut reader);
            if let Some(reason) = reader.stopped.take() {
                return Err(BackupError::Cancelled(reason));
            }
            appended.map_err(BackupError::Write)?;
            let grew = reader
                .file
                .metadata()
                .map(|m| m.len() != size)
                .unwrap_or(false);
            entry.changed_while_read = reader.short || grew;
            entry.sha256 = Some(hex::encode(reader.hasher.finalize()));
            entry.size = size;
            entry.mtime = meta.mtime();
        }
        summary.manifest.entries.push(entry);
    }
    let encoder = tar.into_inner().map_err(BackupError::Write)?;
    let mut out = encoder.finish().map_err(BackupError::Write)?;
    out.flush().map_err(BackupError::Write)?;
    summary.manifest.version = Manifest::VERSION;
    Ok((out, summary))
}

/// Every entry to archive, parents before children, sorted by name within a directory.
pub(crate) fn walk(
    root: &Path,
    root_dir: &File,
    selection: &Selection,
    summary: &mut ArchiveSummary,
) -> Result<Vec<Planned>, BackupError> {
    let mut plan = Vec::new();
    for start in selection.roots() {
        let full = root.join(start);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                summary.missing.push(slash_path(start));
                continue;
            }
            Err(e) => return Err(BackupError::io("reading", &full)(e)),
        };
        let mut stack = vec![(start.clone(), meta)];
        while let Some((relative, meta)) = stack.pop() {
            let is_dir = meta.is_dir();
            if !relative.as_os_str().is_empty() {
                if selection.excluded(&relative) {
                    continue;
                }
                plan.push(Planned {
                    relative: relative.clone(),
                    meta,
                });
            }
            if is_dir {
                let dir = root.join(&relative);
                let opened = match open_beneath(root_dir, &relative, libc::O_DIRECTORY) {
                    Ok(d) => d,
                    // A kernel before 5.6: no safe way to read, and no silently empty backup.
                    Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                        return Err(BackupError::io("openat2 (Linux 5.6 or later) for", &dir)(e))
                    }
                    // Swapped for a link (or removed) since it was looked at: left out.
                    Err(_) => {
                        summary.skipped.push(slash_path(&relative));
                        continue;
                    }
                };
                let listed = PathBuf::from(format!("/proc/self/fd/{}", opened.as_raw_fd()));
                let mut children: Vec<_> = std::fs::read_dir(&listed)
                    .map_err(BackupError::io("listing", &dir))?
                    .filter_map(Result::ok)
                    .filter_map(|e| Some((e.file_name(), e.metadata().ok()?)))
                    .collect();
                // Reversed: popped from the stack in name order.
                children.sort_by(|a, b| b.0.cmp(&a.0));
                for (name, meta) in children {
                    stack.push((relative.join(name), meta));
                }
            }
        }
    }
    Ok(plan)
}

/// The file at `relative` if it is (still) a regular file beneath the root, opened without
/// passing through a link and without blocking on a FIFO.
pub(crate) fn open_regular(root_dir: &File, relative: &Path) -> Option<(File, Metadata)> {
    let file = open_beneath(root_dir, relative, libc::O_NONBLOCK).ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta))
}

/// Opens `relative` (read-only, with `flags`) beneath `root_dir`, refusing any link on the way
/// and any escape from it (`openat2`, Linux 5.6+).
fn open_beneath(root_dir: &File, relative: &Path, flags: i32) -> io::Result<File> {
    use std::os::unix::ffi::OsStrExt;
    let path = if relative.as_os_str().is_empty() {
        std::ffi::CString::new(".")
    } else {
        std::ffi::CString::new(relative.as_os_str().as_bytes())
    }
    .map_err(io::Error::other)?;
    // SAFETY: open_how is plain integers; all zero is its "nothing asked" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | flags) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: a valid directory fd, a NUL-terminated path and an open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

fn slash_path(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Exactly `left` bytes of a file whose size was written in the tar header already: cut at
/// that size if the file grew, padded with zeros if it shrank. Hashes what it gives.
struct ExactReader<'a> {
    file: File,
    left: u64,
    hasher: Sha256,
    short: bool,
    done: &'a mut u64,
    hooks: &'a mut dyn ArchiveHooks,
    stopped: Option<String>,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if let Some(reason) = self.hooks.stop_reason() {
            self.stopped = Some(reason);
            // Not `Interrupted`: io::copy would retry it.
            return Err(io::Error::other("stopped"));
        }
        let want = buf.len().min(self.left as usize);
        let n = if self.short {
            0
        } else {
            loop {
                match self.file.read(&mut buf[..want]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            }
        };
        let n = if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        *self.done += n as u64;
        self.hooks.progress(*self.done);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_opened_through_a_link_or_outside_the_root() {
        let root = std::env::temp_dir().join(format!("manman-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("world")).unwrap();
        std::fs::write(root.join("world/level.dat"), "mine").unwrap();
        // What a game would swap in for a directory: a link to the host's.
        std::os::unix::fs::symlink("/etc", root.join("swapped")).unwrap();
        let dir = File::open(&root).unwrap();
        assert!(open_regular(&dir, Path::new("world/level.dat")).is_some());
        assert!(open_regular(&dir, Path::new("swapped/hostname")).is_none());
        assert!(open_beneath(&dir, Path::new("swapped"), libc::O_DIRECTORY).is_err());
        assert!(open_beneath(&dir, Path::new("../../etc/hostname"), 0).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
