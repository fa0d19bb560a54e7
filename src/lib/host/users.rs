//! Unix users and groups a game may run as (`run_as` in its config), looked up on this host.

use std::ffi::{CStr, CString};

use crate::procman::RunAs;

/// A user found in the host's user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub id: RunAs,
    pub home: String,
}

/// Why a `run_as` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("run_as: no user {0:?} on this host")]
    NoUser(String),
    #[error("run_as: no group {0:?} on this host")]
    NoGroup(String),
    #[error("run_as: {0:?} contains a NUL byte")]
    Nul(String),
    #[error("run_as: user database lookup failed")]
    Lookup(#[source] std::io::Error),
}

/// `user` (its primary group) or `user:group`, or why it cannot be used.
pub fn resolve(who: &str) -> Result<User, UserError> {
    let (user, group) = match who.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (who, None),
    };
    let mut found = passwd(user)?.ok_or_else(|| UserError::NoUser(user.to_string()))?;
    if let Some(group) = group {
        found.id.gid = group_id(group)?.ok_or_else(|| UserError::NoGroup(group.to_string()))?;
    }
    Ok(found)
}

fn c_name(name: &str) -> Result<CString, UserError> {
    CString::new(name).map_err(|_| UserError::Nul(name.to_string()))
}

/// The `_r` lookups write strings into a caller's buffer; grow it while it is too small.
fn with_buffer<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> Result<Option<T>, i32>,
) -> Result<Option<T>, UserError> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        match call(&mut buf) {
            Err(libc::ERANGE) if size < 1 << 20 => size *= 4,
            Err(e) => return Err(UserError::Lookup(std::io::Error::from_raw_os_error(e))),
            Ok(v) => return Ok(v),
        }
    }
}

fn passwd(name: &str) -> Result<Option<User>, UserError> {
    let c = c_name(name)?;
    with_buffer(|buf| {
        // SAFETY: getpwnam_r fills `pw` with pointers into `buf`, both alive for this block.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut out: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
            if rc != 0 {
                return Err(rc);
            }
            Ok((!out.is_null()).then(|| User {
                name: name.to_string(),
                id: RunAs {
                    uid: pw.pw_uid,
                    gid: pw.pw_gid,
                },
                home: CStr::from_ptr(pw.pw_dir).to_string_lossy().into_owned(),
            }))
        }
    })
}

fn group_id(name: &str) -> Result<Option<u32>, UserError> {
    let c = c_name(name)?;
    with_buffer(|buf| {
        // SAFETY: as in `passwd`.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut out: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out);
            if rc != 0 {
                return Err(rc);
            }
            Ok((!out.is_null()).then_some(gr.gr_gid))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve_from_the_host() {
        let root = resolve("root").unwrap();
        assert_eq!(
            (root.id.uid, root.id.gid, root.home.as_str()),
            (0, 0, "/root")
        );
        let nobody = resolve("nobody:nogroup").unwrap();
        assert_eq!(nobody.id.uid, 65534);
        assert_eq!(nobody.id.gid, 65534);
        assert_eq!(
            resolve("no-such-user-here").unwrap_err().to_string(),
            "run_as: no user \"no-such-user-here\" on this host"
        );
        assert!(matches!(
            resolve("root:no-such-group"),
            Err(UserError::NoGroup(g)) if g == "no-such-group"
        ));
        assert!(matches!(resolve("a\0b"), Err(UserError::Nul(_))));
    }
}
