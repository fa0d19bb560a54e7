//! Who a session is: the log processor asks PostgreSQL when it has `DATABASE_URL`, else the
//! control-plane API (`API_ADDRESS`, with its own token from `MANMAN_TOKEN[_FILE]`), so it can
//! answer `NOT_FOUND` for unknown sessions.

use std::str::FromStr;
use std::time::Duration;

use crate::db::{sessions, DbPool};
use crate::grpc::Endpoint;
use crate::proto::v1 as pb;
use crate::wire::SessionStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: i64,
    pub sgc_id: i64,
    /// The host that runs it.
    pub server_id: i64,
    pub status: SessionStatus,
}

/// Why the directory could not be asked (not: the session is unknown, which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("database unavailable")]
    Pool(#[from] r2d2::Error),
    #[error("database error")]
    Db(#[from] postgres::Error),
    #[error("API unavailable")]
    Api(#[from] grpcio::Error),
}

pub enum SessionDirectory {
    Database(DbPool),
    /// The API, asked with this daemon's own token (viewer is enough).
    Api(pb::ManManApiClient, Option<String>),
}

impl SessionDirectory {
    pub fn api(endpoint: &Endpoint, token: Option<String>) -> Self {
        SessionDirectory::Api(endpoint.api_client(), token)
    }

    /// `Ok(None)` for an unknown session; `Err` when the directory cannot be asked.
    pub fn lookup(&self, session_id: i64) -> Result<Option<SessionInfo>, DirectoryError> {
        match self {
            SessionDirectory::Database(pool) => {
                let mut conn = pool.get()?;
                let view = sessions::get_view(&mut *conn, session_id)?;
                Ok(view.and_then(|v| {
                    Some(SessionInfo {
                        session_id,
                        sgc_id: v.sgc_id,
                        server_id: v.server_id,
                        status: SessionStatus::from_str(&v.status).ok()?,
                    })
                }))
            }
            SessionDirectory::Api(client, token) => {
                let options = crate::grpc::call_option(token.as_deref(), Duration::from_secs(5));
                match client.get_session_opt(&pb::GetSessionRequest { session_id }, options) {
                    Ok(reply) => Ok(reply.session.and_then(|s| {
                        Some(SessionInfo {
                            session_id,
                            sgc_id: s.sgc_id,
                            server_id: s.server_id,
                            status: SessionStatus::from_str(&s.status).ok()?,
                        })
                    })),
                    Err(grpcio::Error::RpcFailure(s))
                        if s.code() == grpcio::RpcStatusCode::NOT_FOUND =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Sessions that may still produce lines (for feeds after a restart); empty without a
    /// database.
    pub fn live_sessions(&self) -> Result<Vec<i64>, DirectoryError> {
        match self {
            SessionDirectory::Database(pool) => {
                let mut conn = pool.get()?;
                let rows = conn.query(
                    "SELECT session_id FROM sessions
                          WHERE status IN ('pending', 'starting', 'running', 'stopping')",
                    &[],
                )?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            }
            SessionDirectory::Api(..) => Ok(Vec::new()),
        }
    }
}
