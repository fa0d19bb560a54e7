//! A copy-on-write snapshot of a deployment's selected files, so a running game's saves pause
//! only while the snapshot is taken, not while the archive is read, compressed and uploaded.
//! Every file is cloned with `FICLONE` (reflinks: XFS, btrfs, bcachefs, ZFS 2.2): its blocks
//! are shared, nothing is copied, and the game's later writes go to new blocks. A filesystem
//! without reflinks (ext4) gives `Unsupported`: the caller reads the live files instead, with
//! the saves paused the whole time. A clone never falls back to copying: a snapshot is never
//! a staged copy of the world.
//!
//! The sources are opened as the archive opens them (beneath the root, through no link); the
//! snapshot directory is the agent's own (0700), out of the game's reach.

use std::fs::{File, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::archive::{open_regular, walk};
use crate::{ArchiveSummary, BackupError, Selection};

/// A snapshot on disk; removed when dropped.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    files: usize,
}

/// What [`take_snapshot`] did.
#[derive(Debug)]
pub enum Snapshotted {
    Taken(Snapshot),
    /// The filesystem (or this file) cannot be cloned: why, in a few words.
    Unsupported(String),
}

impl Snapshot {
    /// The directory holding the snapshot: archive it as the deployment's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files cloned.
    pub fn files(&self) -> usize {
        self.files
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // What cannot be removed now (a full disk, a dying agent) goes at the agent's next
        // start, with every snapshot it finds.
        let _ = remove_tree(&self.dir);
    }
}

/// Removes `dir` and everything under it, if it exists (a snapshot an earlier agent left).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Clones `root`'s selected entries into `dest` (which must not exist; it is made 0700):
/// directories, links and regular files with their modes and modification times, so the
/// archive of `dest` is the archive `root` had at this moment. Entries that vanish meanwhile
/// are left out, as the archive leaves them out.
pub fn take_snapshot(
    root: &Path,
    selection: &Selection,
    dest: &Path,
) -> Result<Snapshotted, BackupError> {
    let root_dir = File::open(root).map_err(BackupError::io("opening", root))?;
    let plan = walk(root, &root_dir, selection, &mut ArchiveSummary::default())?;
    std::fs::create_dir(dest).map_err(BackupError::io("creating", dest))?;
    std::fs::set_permissions(dest, Permissions::from_mode(0o700))
        .map_err(BackupError::io("securing", dest))?;
    let mut snapshot = Snapshot {
        dir: dest.to_path_buf(),
        files: 0,
    };
    let mut dirs = Vec::new();
    for item in plan {
        let target = dest.join(&item.relative);
        // A configured path deep in the tree ("world/region") comes without its parents.
        if let Some(parent) = target.parent().filter(|p| !p.exists()) {
            std::fs::create_dir_all(parent).map_err(BackupError::io("creating", parent))?;
        }
        let ft = item.meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&target).map_err(BackupError::io("creating", &target))?;
            dirs.push((target, item.meta));
        } else if ft.is_symlink() {
            let Ok(link) = std::fs::read_link(root.join(&item.relative)) else {
                continue;
            };
            std::os::unix::fs::symlink(&link, &target)
                .map_err(BackupError::io("creating", &target))?;
            set_link_mtime(&target, &item.meta)
                .map_err(BackupError::io("setting the time of", &target))?;
        } else {
            let Some((source, meta)) = open_regular(&root_dir, &item.relative) else {
                continue;
            };
            let clone = File::options()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(BackupError::io("creating", &target))?;
            // SAFETY: two open descriptors; FICLONE takes the source's as its argument.
            let cloned =
                unsafe { libc::ioctl(clone.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
            if cloned != 0 {
                let why = io::Error::last_os_error();
                return Ok(Snapshotted::Unsupported(format!(
                    "{} cannot be cloned: {}",
                    item.relative.display(),
                    unsupported_reason(&why)
                )));
            }
            clone
                .set_permissions(Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(BackupError::io("setting the mode of", &target))?;
            clone
                .set_modified(mtime(&meta))
                .map_err(BackupError::io("setting the time of", &target))?;
            snapshot.files += 1;
        }
    }
    // Last, deepest first: adding entries changed the directories' times, and a read-only
    // directory would have refused them.
    for (dir, meta) in dirs.into_iter().rev() {
        std::fs::set_permissions(&dir, Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(BackupError::io("setting the mode of", &dir))?;
        File::open(&dir)
            .and_then(|d| d.set_modified(mtime(&meta)))
            .map_err(BackupError::io("setting the time of", &dir))?;
    }
    Ok(Snapshotted::Taken(snapshot))
}

fn mtime(meta: &std::fs::Metadata) -> SystemTime {
    let secs = meta.mtime();
    let nanos = Duration::new(secs.unsigned_abs(), meta.mtime_nsec() as u32);
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + nanos
    } else {
        SystemTime::UNIX_EPOCH - nanos
    }
}

/// A link's own modification time (std sets times only through a link, on its target).
fn set_link_mtime(link: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(link.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    // SAFETY: a NUL-terminated path and two timespecs, as utimensat takes them.
    let set = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn unsupported_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::EINVAL) => {
            "the filesystem has no reflinks".into()
        }
        Some(libc::EXDEV) => "it is on another filesystem than the snapshot".into(),
        _ => e.to_string(),
    }
}
