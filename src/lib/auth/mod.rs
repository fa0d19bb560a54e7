//! Who is calling and what they may do: API tokens (random secrets stored as SHA-256), the
//! roles they carry, and the one check that every RPC and protected HTTP route makes.

pub mod authenticator;
pub mod issue;
pub use crate::secret;

use std::fmt;
use std::str::FromStr;

pub use authenticator::{bearer_of, Authenticator, TokenBackend, CACHE_FOR, STREAM_RECHECK};

/// What a token may do. People and scripts get admin, operator or viewer; an enrolled host
/// agent gets host (registering itself, nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything: hosts, games, configs, deployments, tokens; and all an operator may do.
    Admin,
    /// Start, stop, send input, drain; and all a viewer may do.
    Operator,
    /// Read everything and stream logs.
    Viewer,
    /// A host agent speaking for its own server.
    Host,
}

impl Role {
    pub const PEOPLE: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Host => "host",
        }
    }

    /// Whether a holder of this role may do what needs `needed`.
    pub fn grants(self, needed: Role) -> bool {
        use Role::*;
        matches!(
            (self, needed),
            (Admin, Admin | Operator | Viewer)
                | (Operator, Operator | Viewer)
                | (Viewer, Viewer)
                | (Host, Host)
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "host" => Ok(Role::Host),
            other => Err(format!(
                "unknown role {other:?}: expected admin, operator or viewer"
            )),
        }
    }
}

/// The holder of a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (logged; the secret never is).
    pub name: String,
    pub role: Role,
    /// For a host credential: the server it speaks for.
    pub server_id: Option<i64>,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or not a valid one.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token whose role does not allow the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// The tokens could not be checked (database or API down).
    #[error("{0}")]
    Unavailable(String),
}

impl AuthError {
    /// The gRPC status for a refused call (the log stream; the API maps through `ApiError`).
    pub fn status(&self) -> grpcio::RpcStatus {
        let code = match self {
            AuthError::Unauthenticated(_) => grpcio::RpcStatusCode::UNAUTHENTICATED,
            AuthError::PermissionDenied(_) => grpcio::RpcStatusCode::PERMISSION_DENIED,
            AuthError::Unavailable(_) => grpcio::RpcStatusCode::UNAVAILABLE,
        };
        grpcio::RpcStatus::with_message(code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_hosts_stand_apart() {
        assert!(Role::Admin.grants(Role::Operator));
        assert!(Role::Admin.grants(Role::Viewer));
        assert!(Role::Operator.grants(Role::Viewer));
        assert!(!Role::Operator.grants(Role::Admin));
        assert!(!Role::Viewer.grants(Role::Operator));
        assert!(!Role::Host.grants(Role::Viewer));
        assert!(!Role::Admin.grants(Role::Host));
        for role in [Role::Admin, Role::Operator, Role::Viewer, Role::Host] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .contains("admin, operator or viewer"));
    }
}
