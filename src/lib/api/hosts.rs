//! Host identity: an admin adds a host and gets a one-time enrollment secret; the agent trades
//! it for its own credential (kept in its data dir) and registers with that credential only
//! under its own name. A second agent with the same name has no credential and is refused.

use chrono::Utc;

use super::convert::host_pb;
use super::error::ApiError;
use super::validate::valid_name;
use super::ApiService;
use crate::auth::{secret, Caller};
use crate::db::catalog;
use crate::db::tokens::{self, EnrollRefusal, HostAdded};
use crate::proto::v1 as pb;

/// How long an enrollment secret may wait to be used.
pub const ENROLLMENT_VALID_FOR: chrono::Duration = chrono::Duration::hours(24);

/// The host just added or enrolled, as the reply carries it.
fn host_reply(
    db: &mut impl postgres::GenericClient,
    server_id: i64,
) -> Result<pb::Server, ApiError> {
    catalog::get_host(db, server_id)?
        .map(host_pb)
        .ok_or_else(|| ApiError::Internal("the host vanished".into()))
}

impl ApiService {
    pub fn add_host(&self, req: pb::AddHostRequest) -> Result<pb::AddHostResponse, ApiError> {
        let name = valid_name("host name", &req.name)?;
        let enrollment = secret::generate("enroll");
        let expires_at = Utc::now() + ENROLLMENT_VALID_FOR;
        let mut db = self.db()?;
        match tokens::add_host(
            &mut *db,
            &name,
            &secret::digest(&enrollment),
            expires_at,
            req.reissue,
        )? {
            HostAdded::AlreadyEnrolled { server_id } => Err(ApiError::AlreadyExists(format!(
                "host {name:?} (id {server_id}) has enrolled already; to enroll a new agent \
                 under this name (the old one's credential stops working), use --reissue"
            ))),
            HostAdded::Ready { server_id } => {
                log::info!(server_id = server_id, name = name.as_str(); "host added; enrollment secret issued");
                Ok(pb::AddHostResponse {
                    server: Some(host_reply(&mut *db, server_id)?),
                    enrollment_secret: enrollment,
                    expires_at_ms: expires_at.timestamp_millis(),
                })
            }
        }
    }

    pub fn enroll_host(
        &self,
        req: pb::EnrollHostRequest,
    ) -> Result<pb::EnrollHostResponse, ApiError> {
        let name = valid_name("host name", &req.name)?;
        let credential = secret::generate("host");
        let mut db = self.db()?;
        let enrolled = tokens::enroll_host(
            &mut *db,
            &name,
            &secret::digest(&req.enrollment_secret),
            &secret::digest(&credential),
        )?;
        let server_id = enrolled.map_err(|refusal| {
            log::warn!(name = name.as_str(), refusal = format!("{refusal:?}").as_str(); "enrollment refused");
            match refusal {
                EnrollRefusal::UnknownHost => ApiError::Unauthenticated(format!(
                    "no host named {name:?} was added; an admin runs `manman host add {name}`"
                )),
                EnrollRefusal::NothingPending => ApiError::Unauthenticated(format!(
                    "host {name:?} has enrolled already (is another agent running with this \
                     SERVER_NAME?); give this agent its own name, or issue a new secret with \
                     `manman host add {name} --reissue`"
                )),
                EnrollRefusal::WrongSecret => ApiError::Unauthenticated(format!(
                    "the enrollment secret for host {name:?} is not the one issued"
                )),
                EnrollRefusal::Expired => ApiError::Unauthenticated(format!(
                    "the enrollment secret for host {name:?} has expired; issue a new one with \
                     `manman host add {name} --reissue`"
                )),
            }
        })?;
        log::info!(server_id = server_id, name = name.as_str(); "host enrolled");
        Ok(pb::EnrollHostResponse {
            server: Some(host_reply(&mut *db, server_id)?),
            credential,
        })
    }

    /// An enrolled agent registers under its own name only.
    /// Ends host `server_id`'s credential (admin). Its broker user, if it has one, is the
    /// broker's to delete (`rabbitmqctl delete_user manman-host-ID`).
    pub fn revoke_host(
        &self,
        req: pb::RevokeHostRequest,
    ) -> Result<pb::RevokeHostResponse, ApiError> {
        let server_id = super::validate::positive_id("server_id", req.server_id)?;
        match tokens::revoke_host(&mut *self.db()?, server_id)? {
            None => Err(ApiError::NotFound(format!("no host with id {server_id}"))),
            Some(had_credential) => {
                log::info!(server_id = server_id; "host credential revoked");
                Ok(pb::RevokeHostResponse { had_credential })
            }
        }
    }

    pub fn register_server(
        &self,
        req: pb::RegisterServerRequest,
        caller: Option<Caller>,
    ) -> Result<pb::RegisterServerResponse, ApiError> {
        let name = valid_name("server name", &req.name)?;
        let caller =
            caller.ok_or_else(|| ApiError::Unauthenticated("no host credential".into()))?;
        let host = catalog::host_by_name(&mut *self.db()?, &name)?;
        match host {
            Some(host) if Some(host.server_id) == caller.server_id => {
                Ok(pb::RegisterServerResponse {
                    server: Some(host_pb(host)),
                    created: false,
                    command_sender: self.inner.rpc.sender().unwrap_or_default().to_string(),
                })
            }
            _ => Err(ApiError::PermissionDenied(format!(
                "this host credential ({}) is not for a host named {name:?}",
                caller.name
            ))),
        }
    }
}

/// A host may list only its own server's sessions.
pub fn own_sessions_only(
    req: pb::ListSessionsRequest,
    caller: Option<Caller>,
) -> Result<pb::ListSessionsRequest, ApiError> {
    match caller {
        Some(c) if c.role == crate::auth::Role::Host && c.server_id != Some(req.server_id) => {
            Err(ApiError::PermissionDenied(format!(
                "host credential {} may list only its own server's sessions",
                c.name
            )))
        }
        _ => Ok(req),
    }
}
