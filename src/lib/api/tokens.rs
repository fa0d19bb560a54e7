//! API tokens through the API (admin): create (the secret is in the reply, once), list,
//! revoke; and `WhoAmI` for any valid token.

use chrono::Utc;

use super::convert::millis;
use super::error::ApiError;
use super::validate::valid_name;
use super::ApiService;
use crate::auth::{secret, Caller, Role};
use crate::db::tokens::{self, TokenRow};
use crate::proto::v1 as pb;

/// The longest expiry a token may be given (10 years; 0 means none).
const MAX_EXPIRY_SECONDS: i64 = 10 * 365 * 24 * 3600;

pub fn token_pb(t: TokenRow) -> pb::Token {
    pb::Token {
        name: t.name,
        role: t.role,
        created_ms: t.created_at.timestamp_millis(),
        expires_ms: millis(t.expires_at),
        last_used_ms: millis(t.last_used_at),
        revoked_ms: millis(t.revoked_at),
    }
}

/// A role a person or script may be given.
pub fn person_role(role: &str) -> Result<Role, ApiError> {
    match role.parse::<Role>() {
        Ok(role) if Role::PEOPLE.contains(&role) => Ok(role),
        Ok(_) => Err(ApiError::InvalidArgument(
            "host credentials come from `manman host add`, not from tokens".into(),
        )),
        Err(e) => Err(ApiError::InvalidArgument(e)),
    }
}

/// Creates a token; shared by the RPC and the CLI's `--bootstrap` path (direct database
/// access). Returns the row and the secret, which is not stored.
pub fn create(
    db: &mut impl postgres::GenericClient,
    name: &str,
    role: Role,
    expires_in_seconds: i64,
) -> Result<(TokenRow, String), ApiError> {
    if !(0..=MAX_EXPIRY_SECONDS).contains(&expires_in_seconds) {
        return Err(ApiError::InvalidArgument(format!(
            "expires_in_seconds must be 0 (never) .. {MAX_EXPIRY_SECONDS}"
        )));
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
    )?
    .ok_or_else(|| {
        ApiError::AlreadyExists(format!(
            "a token named {name:?} exists; revoke it first or pick another name"
        ))
    })?;
    Ok((row, token))
}

pub fn who_am_i(caller: Option<Caller>) -> pb::WhoAmIResponse {
    let caller = caller.expect("who_am_i is always authenticated");
    pb::WhoAmIResponse {
        name: caller.name,
        role: caller.role.as_str().into(),
        server_id: caller.server_id.unwrap_or(0),
    }
}

impl ApiService {
    pub fn create_token(
        &self,
        req: pb::CreateTokenRequest,
        caller: Option<Caller>,
    ) -> Result<pb::CreateTokenResponse, ApiError> {
        let name = valid_name("token name", &req.name)?;
        let role = person_role(&req.role)?;
        let (row, secret) = create(&mut *self.db()?, &name, role, req.expires_in_seconds)?;
        log::info!(token = name.as_str(), role = role.as_str(),
            by = caller.map(|c| c.name).unwrap_or_default().as_str(); "token created");
        Ok(pb::CreateTokenResponse {
            token: Some(token_pb(row)),
            secret,
        })
    }

    pub fn list_tokens(&self) -> Result<pb::ListTokensResponse, ApiError> {
        Ok(pb::ListTokensResponse {
            tokens: tokens::list(&mut *self.db()?)?
                .into_iter()
                .map(token_pb)
                .collect(),
        })
    }

    pub fn revoke_token(
        &self,
        req: pb::RevokeTokenRequest,
        caller: Option<Caller>,
    ) -> Result<pb::RevokeTokenResponse, ApiError> {
        let name = valid_name("token name", &req.name)?;
        let row = tokens::revoke(&mut *self.db()?, &name)?
            .ok_or_else(|| ApiError::NotFound(format!("no active token named {name:?}")))?;
        log::info!(token = name.as_str(), by = caller.map(|c| c.name).unwrap_or_default().as_str(); "token revoked");
        Ok(pb::RevokeTokenResponse {
            token: Some(token_pb(row)),
        })
    }
}
