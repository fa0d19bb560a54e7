//! API tokens through the API (admin): create (the secret is in the reply, once), list,
//! revoke; and `WhoAmI` for any valid token.

use super::convert::millis;
use super::error::ApiError;
use super::validate::valid_name;
use super::ApiService;
use crate::auth::issue::{issue_token, IssueError};
use crate::auth::{Caller, Role};
use crate::db::tokens::{self, TokenRow};
use crate::proto::v1 as pb;

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

/// Creates a token (`auth::issue`, shared with the CLI's `--bootstrap`), its refusals as the
/// API's errors.
pub fn create(
    db: &mut impl postgres::GenericClient,
    name: &str,
    role: Role,
    expires_in_seconds: i64,
) -> Result<(TokenRow, String), ApiError> {
    issue_token(db, name, role, expires_in_seconds).map_err(|e| match e {
        IssueError::BadExpiry => ApiError::InvalidArgument(e.to_string()),
        IssueError::NameTaken(_) => ApiError::AlreadyExists(e.to_string()),
        IssueError::Db(db) => db.into(),
    })
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
