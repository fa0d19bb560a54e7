//! Who is logged in to the dashboard: a login is an API token checked once with the control
//! API (`WhoAmI`), kept on the server under a random id that the browser holds in an
//! `HttpOnly; SameSite=Strict` cookie, with its own CSRF token that every state-changing
//! request must echo in `X-CSRF-Token`. The browser never sees the API token again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::secret;

/// The cookie that names a login.
pub const COOKIE: &str = "mm_web";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The operator's API token: every call to the API is made with it.
    pub token: String,
    pub name: String,
    pub role: String,
    pub csrf: String,
    last_used: Instant,
}

pub struct Logins {
    ttl: Duration,
    by_id: Mutex<HashMap<String, Login>>,
}

impl Logins {
    pub fn new(ttl: Duration) -> Logins {
        Logins {
            ttl,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Login>> {
        crate::sync::lock(&self.by_id)
    }

    /// A new login for a checked token; returns the cookie value and the login.
    pub fn create(&self, token: String, name: String, role: String) -> (String, Login) {
        let id = secret::generate("web");
        let login = Login {
            token,
            name,
            role,
            csrf: secret::generate("csrf"),
            last_used: Instant::now(),
        };
        let mut map = self.map();
        let ttl = self.ttl;
        map.retain(|_, l| l.last_used.elapsed() < ttl);
        map.insert(id.clone(), login.clone());
        (id, login)
    }

    /// The login a cookie names, if it has not expired (using it extends it).
    pub fn get(&self, id: &str) -> Option<Login> {
        let mut map = self.map();
        let login = map.get_mut(id)?;
        if login.last_used.elapsed() >= self.ttl {
            map.remove(id);
            return None;
        }
        login.last_used = Instant::now();
        Some(login.clone())
    }

    /// Whether the login is still open (logged out or expired: no), without extending it.
    pub fn is_open(&self, id: &str) -> bool {
        self.map()
            .get(id)
            .is_some_and(|l| l.last_used.elapsed() < self.ttl)
    }

    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }
}

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value for a login (or, with an empty id, one that ends it).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let max_age = if id.is_empty() { "; Max-Age=0" } else { "" };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_expire_and_cookies_are_strict() {
        let logins = Logins::new(Duration::from_secs(3600));
        let (id, login) = logins.create("mm_tok_x".into(), "ops".into(), "operator".into());
        assert!(id.starts_with("mm_web_") && login.csrf.starts_with("mm_csrf_"));
        assert_eq!(logins.get(&id).unwrap().name, "ops");
        logins.remove(&id);
        assert_eq!(logins.get(&id), None, "logged out");
        let expiring = Logins::new(Duration::ZERO);
        let (id, _) = expiring.create("mm_tok_x".into(), "ops".into(), "operator".into());
        assert_eq!(expiring.get(&id), None, "expired");
        assert_eq!(
            set_cookie("abc", false),
            "mm_web=abc; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie("", true).ends_with("; Max-Age=0; Secure"));
        assert_eq!(cookie_value("a=1; mm_web=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie_value("a=1", COOKIE), None);
    }
}
