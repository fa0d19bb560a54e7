//! The API's one error type and its gRPC status codes.

use grpcio::{RpcStatus, RpcStatusCode};

use crate::db::{classify, FailureKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The gRPC status name, for metrics.
    pub fn code_name(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::AlreadyExists(_) => "already_exists",
            ApiError::FailedPrecondition(_) => "failed_precondition",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::ResourceExhausted(_) => "resource_exhausted",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> RpcStatus {
        let code = match self {
            ApiError::InvalidArgument(_) => RpcStatusCode::INVALID_ARGUMENT,
            ApiError::NotFound(_) => RpcStatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) => RpcStatusCode::ALREADY_EXISTS,
            ApiError::FailedPrecondition(_) => RpcStatusCode::FAILED_PRECONDITION,
            ApiError::Unauthenticated(_) => RpcStatusCode::UNAUTHENTICATED,
            ApiError::PermissionDenied(_) => RpcStatusCode::PERMISSION_DENIED,
            ApiError::Unavailable(_) => RpcStatusCode::UNAVAILABLE,
            ApiError::ResourceExhausted(_) => RpcStatusCode::RESOURCE_EXHAUSTED,
            ApiError::Internal(_) => RpcStatusCode::INTERNAL,
        };
        RpcStatus::with_message(code, self.to_string())
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Unauthenticated(m) => ApiError::Unauthenticated(m),
            AuthError::PermissionDenied(m) => ApiError::PermissionDenied(m),
            AuthError::Unavailable(m) => {
                log::warn!("{m}");
                ApiError::Unavailable("cannot check the API token now; try again".into())
            }
        }
    }
}

// Database errors are logged in full here and reach clients only as a category: their text
// names tables, constraints and servers.
impl From<postgres::Error> for ApiError {
    fn from(e: postgres::Error) -> Self {
        match classify(&e) {
            FailureKind::Outage | FailureKind::Retryable => {
                log::warn!("database unavailable for an API query: {e}");
                ApiError::Unavailable("the database is unavailable; try again".into())
            }
            FailureKind::Permanent => {
                log::error!("database rejected an API query: {e}");
                ApiError::Internal("internal database error".into())
            }
        }
    }
}

/// The bucket did not answer as asked (backups): worth a retry, with S3's reason.
impl From<crate::logstore::StoreError> for ApiError {
    fn from(e: crate::logstore::StoreError) -> Self {
        ApiError::Unavailable(format!("S3: {}", crate::errors::chain(&e)))
    }
}

impl From<r2d2::Error> for ApiError {
    fn from(e: r2d2::Error) -> Self {
        log::warn!("no database connection for an API query: {e}");
        ApiError::Unavailable("the database is unavailable; try again".into())
    }
}
