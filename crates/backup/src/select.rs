//! Which files of a deployment a backup takes: the configured paths (default: everything),
//! less what the exclude globs match (`logs/**`, `*.tmp`, matched against the path relative
//! to the deployment's directory).

use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::BackupError;

#[derive(Debug, Clone)]
pub struct Selection {
    paths: Vec<PathBuf>,
    excludes: GlobSet,
}

impl Selection {
    /// `paths` relative to the deployment's directory (empty: all of it); they and the
    /// patterns were validated by the API, and are checked again here (the host trusts no
    /// command blindly).
    pub fn new(paths: &[String], excludes: &[String]) -> Result<Selection, BackupError> {
        let mut set = GlobSetBuilder::new();
        for pattern in excludes {
            set.add(Glob::new(pattern).map_err(|e| BackupError::Pattern(pattern.clone(), e))?);
        }
        let paths = paths
            .iter()
            .map(|p| relative(p).ok_or_else(|| BackupError::Path(p.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selection {
            paths: if paths.is_empty() {
                vec![PathBuf::new()]
            } else {
                paths
            },
            excludes: set
                .build()
                .map_err(|e| BackupError::Pattern(excludes.join(","), e))?,
        })
    }

    /// The starting points, relative (the empty path is the whole directory).
    pub fn roots(&self) -> &[PathBuf] {
        &self.paths
    }

    pub fn excluded(&self, relative: &Path) -> bool {
        self.excludes.is_match(relative)
    }
}

/// A path made only of normal components (no root, `..`, or `.` tricks); empty for "".
pub fn relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside() {
        assert!(Selection::new(&["../etc".into()], &[]).is_err());
        assert!(Selection::new(&["/etc".into()], &[]).is_err());
        assert!(Selection::new(&["world/../x".into()], &[]).is_err());
        let s = Selection::new(&["./world".into()], &[]).unwrap();
        assert_eq!(s.roots(), &[PathBuf::from("world")]);
    }

    #[test]
    fn excludes_match_relative_paths() {
        let s = Selection::new(&[], &["logs/**".into(), "*.tmp".into()]).unwrap();
        assert!(s.excluded(Path::new("logs/latest.log")));
        assert!(s.excluded(Path::new("world/region/a.tmp")));
        assert!(!s.excluded(Path::new("world/level.dat")));
        assert!(Selection::new(&[], &["[".into()]).is_err());
    }
}
