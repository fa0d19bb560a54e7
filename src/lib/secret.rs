//! Secrets: generating tokens, hashing them for storage, and keeping them in files only their
//! owner can read.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Every ManMan secret starts with this, so a leaked one is easy to recognise and to scan for.
pub const PREFIX: &str = "mm_";

/// A new random secret: `mm_{kind}_` and 256 bits from the OS, hex-encoded.
pub fn generate(kind: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS random source is unavailable");
    format!("{PREFIX}{kind}_{}", hex::encode(bytes))
}

/// What is stored for a secret: its SHA-256 (a 256-bit random secret needs no slow hash).
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.trim().as_bytes()).to_vec()
}

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {}", .0.display())]
    Read(std::path::PathBuf, #[source] std::io::Error),
    #[error("{} is readable by others (mode {mode:04o}); run: chmod 600 {}", path.display(), path.display())]
    Exposed { path: std::path::PathBuf, mode: u32 },
    #[error("{} is empty", .0.display())]
    Empty(std::path::PathBuf),
    #[error("cannot create {}", .0.display())]
    CreateDir(std::path::PathBuf, #[source] std::io::Error),
    #[error("cannot write {}", .0.display())]
    Write(std::path::PathBuf, #[source] std::io::Error),
}

crate::errors::read_as_one_line!(SecretFileError);

/// Reads a secret from a file that only its owner may read (mode 0600 or 0400); a file that
/// others can read is refused with a message saying how to fix it.
pub fn read_file(path: &Path) -> Result<String, SecretFileError> {
    let read_error = |e| SecretFileError::Read(path.to_path_buf(), e);
    let meta = std::fs::metadata(path).map_err(read_error)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(SecretFileError::Empty(path.to_path_buf()));
    }
    Ok(secret)
}

/// A secret given in `var`, else in the file `file_var` names (which must be private):
/// `Ok(None)` when neither is set.
pub fn from_env(
    env: &crate::config::Env,
    var: &str,
    file_var: &str,
) -> Result<Option<String>, crate::config::ConfigError> {
    if let Some(secret) = env.get(var) {
        return Ok(Some(secret.to_string()));
    }
    match env.get(file_var) {
        Some(path) => read_file(Path::new(path))
            .map(Some)
            .map_err(|e| crate::config::ConfigError::new(file_var, String::from(e))),
        None => Ok(None),
    }
}

/// Writes a secret to `path` with mode 0600, replacing it atomically; a missing parent
/// directory is made (0700).
pub fn write_file(path: &Path, secret: &str) -> Result<(), SecretFileError> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| SecretFileError::CreateDir(dir.to_path_buf(), e))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| SecretFileError::Write(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_stored_only_as_digests() {
        let a = generate("tok");
        let b = generate("tok");
        assert_ne!(a, b);
        assert!(a.starts_with("mm_tok_") && a.len() == "mm_tok_".len() + 64);
        assert_eq!(digest(&a).len(), 32);
        assert_eq!(digest(&a), digest(&format!("{a}\n")));
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = std::env::temp_dir().join(format!("manman-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config/manman/token");
        write_file(&path, "mm_tok_abc").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_file(&path).unwrap(), "mm_tok_abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_file(&path).unwrap_err();
        assert!(
            matches!(err, SecretFileError::Exposed { mode: 0o644, .. }),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains("readable by others (mode 0644)"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
