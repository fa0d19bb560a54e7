//! Which Unix user each deployment's game runs as, and the directory that user owns. By
//! default every deployment gets a uid of its own from `HOST_GAME_UID_RANGE` (as systemd's
//! `DynamicUser=` does: no /etc/passwd entry), kept in `HOST_DATA_DIR/game-uids.json`, so a game
//! never runs as the agent and never shares a uid with another deployment's game.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::{ConfigError, Env};
use crate::procman::RunAs;

/// systemd's range for dynamic users (`DynamicUser=`), the default of `HOST_GAME_UID_RANGE`.
pub const DEFAULT_UID_RANGE: (u32, u32) = (61184, 65519);

/// How games get their users on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameUserPolicy {
    /// A uid per deployment from this inclusive range (the default).
    Dynamic { low: u32, high: u32 },
    /// `HOST_GAME_UID_RANGE=off`: games run as the agent's user unless their config names a
    /// `run_as` user. Only for development machines where the agent cannot switch users.
    AgentUser,
}

impl GameUserPolicy {
    /// `HOST_GAME_UID_RANGE=LOW-HIGH` (default 61184-65519) or `off`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let (low, high) = DEFAULT_UID_RANGE;
        let text = env.string("HOST_GAME_UID_RANGE", &format!("{low}-{high}"));
        if text.trim() == "off" {
            return Ok(GameUserPolicy::AgentUser);
        }
        text.split_once('-')
            .and_then(|(l, h)| Some((l.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
            .filter(|(l, h)| *l >= 1000 && l <= h && *h < 2_000_000_000)
            .map(|(low, high)| GameUserPolicy::Dynamic { low, high })
            .ok_or_else(|| {
                ConfigError::new(
                    "HOST_GAME_UID_RANGE",
                    "must be LOW-HIGH with 1000 <= LOW <= HIGH (e.g. 61184-65519), or off",
                )
            })
    }
}

/// The uids given to deployments, persisted so a deployment keeps its uid (and its files)
/// across agent restarts.
/// Why a game user or its directory cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum GameUserError {
    #[error("{} is unreadable", .0.display())]
    Corrupt(PathBuf, #[source] serde_json::Error),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("no free uid left in HOST_GAME_UID_RANGE {low}-{high}")]
    RangeFull { low: u32, high: u32 },
    #[error("cannot keep the uid map")]
    Keep(#[from] crate::secret::SecretFileError),
    #[error("cannot inspect {}", .0.display())]
    Inspect(PathBuf, #[source] std::io::Error),
    #[error("{} is not a directory (a symbolic link is refused)", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot restrict {}", .0.display())]
    Restrict(PathBuf, #[source] std::io::Error),
    #[error("cannot give {} to uid {uid} (the agent needs CAP_CHOWN)", dir.display())]
    Give {
        dir: PathBuf,
        uid: u32,
        #[source]
        source: std::io::Error,
    },
}

crate::errors::read_as_one_line!(GameUserError);

pub struct GameUsers {
    policy: GameUserPolicy,
    file: PathBuf,
    assigned: Mutex<BTreeMap<i64, u32>>,
}

impl GameUsers {
    pub fn open(policy: GameUserPolicy, data_dir: &Path) -> Result<GameUsers, GameUserError> {
        let file = data_dir.join("game-uids.json");
        let assigned = match std::fs::read(&file) {
            Ok(raw) => {
                serde_json::from_slice(&raw).map_err(|e| GameUserError::Corrupt(file.clone(), e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(GameUserError::Read(file, e)),
        };
        Ok(GameUsers {
            policy,
            file,
            assigned: Mutex::new(assigned),
        })
    }

    pub fn policy(&self) -> &GameUserPolicy {
        &self.policy
    }

    /// The uid (and gid, the same number) of deployment `sgc_id`'s games: the one it had, or
    /// the lowest free one in the range that no user or group of this host already has.
    /// `None` when games run as the agent.
    pub fn for_deployment(&self, sgc_id: i64) -> Result<Option<RunAs>, GameUserError> {
        let GameUserPolicy::Dynamic { low, high } = self.policy else {
            return Ok(None);
        };
        let mut assigned = crate::sync::lock(&self.assigned);
        if let Some(uid) = assigned.get(&sgc_id) {
            return Ok(Some(RunAs {
                uid: *uid,
                gid: *uid,
            }));
        }
        let taken: std::collections::HashSet<u32> = assigned.values().copied().collect();
        let uid = (low..=high)
            .find(|uid| !taken.contains(uid) && !id_is_known(*uid))
            .ok_or(GameUserError::RangeFull { low, high })?;
        assigned.insert(sgc_id, uid);
        let json = serde_json::to_string(&*assigned).expect("a map of numbers serialises");
        crate::auth::secret::write_file(&self.file, &json)?;
        Ok(Some(RunAs { uid, gid: uid }))
    }
}

/// Whether the host's user or group database already has `id` (a dynamic uid must be nobody's).
fn id_is_known(id: u32) -> bool {
    // SAFETY: getpwuid/getgrgid return pointers into static storage that we only test for
    // null; the agent calls them from one thread at a time (under the lock above).
    unsafe { !libc::getpwuid(id).is_null() || !libc::getgrgid(id).is_null() }
}

/// Gives `dir` (and, when it was someone else's, everything under it) to `who`, mode 0700 on
/// `dir`, never following a symbolic link: a game could have replaced any path inside its own
/// directory with a link to a file of the host's.
pub fn give_directory(dir: &Path, who: RunAs) -> Result<(), GameUserError> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| GameUserError::Inspect(dir.to_path_buf(), e))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(GameUserError::NotADirectory(dir.to_path_buf()));
    }
    // chmod first: once the directory is the game's, changing its mode needs CAP_FOWNER.
    if meta.mode() & 0o777 != 0o700 && meta.uid() != who.uid {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| GameUserError::Restrict(dir.to_path_buf(), e))?;
    }
    if meta.uid() != who.uid || meta.gid() != who.gid {
        chown_tree(dir, who).map_err(|source| GameUserError::Give {
            dir: dir.to_path_buf(),
            uid: who.uid,
            source,
        })?;
    }
    Ok(())
}

/// lchown on `path` and, for a real directory, on everything under it (links are changed
/// themselves, never followed).
fn chown_tree(path: &Path, who: RunAs) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(who.uid), Some(who.gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), who)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs)
    }

    #[test]
    fn the_range_is_read_from_the_environment() {
        assert_eq!(
            GameUserPolicy::from_env(&env(&[])).unwrap(),
            GameUserPolicy::Dynamic {
                low: 61184,
                high: 65519
            }
        );
        assert_eq!(
            GameUserPolicy::from_env(&env(&[("HOST_GAME_UID_RANGE", "off")])).unwrap(),
            GameUserPolicy::AgentUser
        );
        for bad in ["0-100", "70000-60000", "abc", "5000"] {
            let err = GameUserPolicy::from_env(&env(&[("HOST_GAME_UID_RANGE", bad)]));
            assert!(err.is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn each_deployment_keeps_its_own_uid() {
        let dir = std::env::temp_dir().join(format!("mm-uids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = GameUserPolicy::Dynamic {
            low: 61184,
            high: 61186,
        };
        let users = GameUsers::open(policy.clone(), &dir).unwrap();
        let a = users.for_deployment(7).unwrap().unwrap();
        let b = users.for_deployment(8).unwrap().unwrap();
        assert_ne!(a.uid, b.uid);
        assert_eq!(users.for_deployment(7).unwrap(), Some(a));
        // Reopened (an agent restart): the same answers, and a full range is an error.
        let users = GameUsers::open(policy, &dir).unwrap();
        assert_eq!(users.for_deployment(8).unwrap(), Some(b));
        users.for_deployment(9).unwrap();
        assert!(matches!(
            users.for_deployment(10),
            Err(GameUserError::RangeFull { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_is_given_away_without_following_links() {
        if unsafe { libc::geteuid() } != 0 {
            return; // chown needs root (or CAP_CHOWN); the suite runs as root on CI
        }
        let dir = std::env::temp_dir().join(format!("mm-give-{}", std::process::id()));
        let outside = dir.with_extension("outside");
        std::fs::create_dir_all(dir.join("world")).unwrap();
        std::fs::write(&outside, b"host file").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("world/evil")).unwrap();
        let who = RunAs {
            uid: 61190,
            gid: 61190,
        };
        give_directory(&dir, who).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (61190, 0o700));
        assert_eq!(std::fs::metadata(dir.join("world")).unwrap().uid(), 61190);
        assert_eq!(
            std::fs::metadata(&outside).unwrap().uid(),
            0,
            "link followed"
        );
        // A link where the directory should be is refused.
        std::os::unix::fs::symlink(&outside, dir.with_extension("link")).unwrap();
        assert!(give_directory(&dir.with_extension("link"), who).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&outside);
        let _ = std::fs::remove_file(dir.with_extension("link"));
    }
}
