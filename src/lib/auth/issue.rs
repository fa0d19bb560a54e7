//! Issuing an API token: the one place its secret is made and its row written, shared by the
//! API's `CreateToken` and the CLI's `token create --bootstrap` (straight into the database).

use chrono::Utc;

use super::{secret, Role};
use crate::db::tokens::{self, TokenRow};

/// The longest expiry a token may be given (10 years; 0 means none).
pub const MAX_EXPIRY_SECONDS: i64 = 10 * 365 * 24 * 3600;

/// Why a token was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("expires_in_seconds must be 0 (never) .. {MAX_EXPIRY_SECONDS}")]
    BadExpiry,
    #[error("a token named {0:?} exists; revoke it first or pick another name")]
    NameTaken(String),
    #[error("database error")]
    Db(#[source] postgres::Error),
}

/// Creates a token named `name` with `role`, expiring after `expires_in_seconds` (0: never).
/// Returns the row and the secret, which is not stored (only its SHA-256 is).
pub fn issue_token(
    db: &mut impl postgres::GenericClient,
    name: &str,
    role: Role,
    expires_in_seconds: i64,
) -> Result<(TokenRow, String), IssueError> {
    if !(0..=MAX_EXPIRY_SECONDS).contains(&expires_in_seconds) {
        return Err(IssueError::BadExpiry);
    }
    let expires_at = (expires_in_seconds > 0)
        .then(|| Utc::now() + chrono::Duration::seconds(expires_in_seconds));
    let token = secret::generate("tok");
    let row = tokens::insert(
        db,
        name,
        role.as_str(),
        &secret::digest(&token),
        None,
        expires_at,
    )
    .map_err(IssueError::Db)?
    .ok_or_else(|| IssueError::NameTaken(name.to_string()))?;
    Ok((row, token))
}
