//! The token check: a bearer token is looked up (by digest) in PostgreSQL, or asked of the API
//! by a daemon without a database, and the answer is cached for a few seconds so a busy
//! stream of calls costs one lookup per token per [`CACHE_FOR`]. A revoked token stops working
//! within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{secret, AuthError, Caller, Role};
use crate::db::{tokens, DbPool};
use crate::proto::v1 as pb;

/// How long a lookup's answer (valid or not) is trusted.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// How often a long-lived stream (live logs, history) checks its token again: with answers at
/// most [`CACHE_FOR`] old, a revoked or expired token ends the stream within 10 s.
pub const STREAM_RECHECK: Duration = Duration::from_secs(4);
/// Bad tokens are cached too; past this many entries the cache starts afresh.
const MAX_CACHED: usize = 10_000;

/// Where tokens are checked.
pub enum TokenBackend {
    Database(DbPool),
    /// The API's `WhoAmI`, called with the caller's own token.
    Api(pb::ManManApiClient),
}

/// A token digest's holder (`None`: not a valid token) and when that was looked up.
type CachedLookup = (Option<Caller>, Instant);

pub struct Authenticator {
    backend: TokenBackend,
    cache: Mutex<HashMap<Vec<u8>, CachedLookup>>,
}

/// The token of `authorization: Bearer <token>` in gRPC metadata.
pub fn bearer_of(headers: &grpcio::Metadata) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(bearer_value)
}

/// The token in an `Authorization` header value (`Bearer <token>`).
pub fn bearer_value(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

impl Authenticator {
    pub fn new(backend: TokenBackend) -> Self {
        Authenticator {
            backend,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The holder of `token`, or UNAUTHENTICATED with a message that says what to do.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller, AuthError> {
        let Some(token) = token else {
            return Err(AuthError::Unauthenticated(
                "no API token: set MANMAN_TOKEN or MANMAN_TOKEN_FILE (create one with \
                 `manman token create`)"
                    .into(),
            ));
        };
        let digest = secret::digest(token);
        if let Some((caller, at)) = self.cache.lock().unwrap().get(&digest) {
            if at.elapsed() < CACHE_FOR {
                return caller.clone().ok_or_else(invalid);
            }
        }
        let caller = self.look_up(token, &digest)?;
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(digest, (caller.clone(), Instant::now()));
        caller.ok_or_else(invalid)
    }

    /// [`authenticate`](Self::authenticate), then checks the role allows `action`. Calls that
    /// change something are logged with the token's name.
    pub fn authorize(
        &self,
        token: Option<&str>,
        needed: Role,
        action: &str,
    ) -> Result<Caller, AuthError> {
        self.authorize_either(token, needed, None, action)
    }

    /// Like [`authorize`](Self::authorize), also letting a holder of `or` through.
    pub fn authorize_either(
        &self,
        token: Option<&str>,
        needed: Role,
        or: Option<Role>,
        action: &str,
    ) -> Result<Caller, AuthError> {
        let caller = self.authenticate(token)?;
        if !caller.role.grants(needed) && !or.is_some_and(|r| caller.role.grants(r)) {
            log::warn!(token = caller.name.as_str(), role = caller.role.as_str(), action = action; "refused: role too weak");
            return Err(AuthError::PermissionDenied(format!(
                "{action} needs the {needed} role; token {:?} has {}",
                caller.name, caller.role
            )));
        }
        if needed == Role::Viewer {
            log::debug!(token = caller.name.as_str(), action = action; "authorized");
        } else {
            log::info!(token = caller.name.as_str(), action = action; "authorized");
        }
        Ok(caller)
    }

    fn look_up(&self, token: &str, digest: &[u8]) -> Result<Option<Caller>, AuthError> {
        match &self.backend {
            TokenBackend::Database(pool) => {
                let mut conn = pool
                    .get()
                    .map_err(|e| AuthError::Unavailable(format!("cannot check tokens: {e}")))?;
                let holder = tokens::holder(&mut *conn, digest)
                    .map_err(|e| AuthError::Unavailable(format!("cannot check tokens: {e}")))?;
                let Some(h) = holder else { return Ok(None) };
                // Best effort: `token list` shows when a token was last used (to within CACHE_FOR).
                let _ = tokens::touch(&mut *conn, h.token_id);
                Ok(h.role.parse().ok().map(|role| Caller {
                    name: h.name,
                    role,
                    server_id: h.server_id,
                }))
            }
            TokenBackend::Api(client) => {
                let opt = crate::grpc::call_option(Some(token), Duration::from_secs(5));
                match client.who_am_i_opt(&pb::WhoAmIRequest {}, opt) {
                    Ok(r) => Ok(r.role.parse().ok().map(|role| Caller {
                        name: r.name,
                        role,
                        server_id: (r.server_id > 0).then_some(r.server_id),
                    })),
                    Err(grpcio::Error::RpcFailure(s))
                        if s.code() == grpcio::RpcStatusCode::UNAUTHENTICATED =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(AuthError::Unavailable(format!(
                        "cannot check tokens with the API: {e}"
                    ))),
                }
            }
        }
    }
}

fn invalid() -> AuthError {
    AuthError::Unauthenticated("the API token is not valid (unknown, revoked or expired)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_are_parsed_strictly() {
        assert_eq!(bearer_value("Bearer abc"), Some("abc".into()));
        assert_eq!(bearer_value("bearer  abc "), Some("abc".into()));
        assert_eq!(bearer_value("Basic abc"), None);
        assert_eq!(bearer_value("Bearer "), None);
        assert_eq!(bearer_value("abc"), None);
    }
}
