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
    Unavailable(String),
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
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> RpcStatus {
        let code = match self {
            ApiError::InvalidArgument(_) => RpcStatusCode::INVALID_ARGUMENT,
            ApiError::NotFound(_) => RpcStatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) => RpcStatusCode::ALREADY_EXISTS,
            ApiError::FailedPrecondition(_) => RpcStatusCode::FAILED_PRECONDITION,
            ApiError::Unavailable(_) => RpcStatusCode::UNAVAILABLE,
            ApiError::Internal(_) => RpcStatusCode::INTERNAL,
        };
        RpcStatus::with_message(code, self.to_string())
    }
}

impl From<postgres::Error> for ApiError {
    fn from(e: postgres::Error) -> Self {
        match classify(&e) {
            FailureKind::Outage | FailureKind::Retryable => {
                ApiError::Unavailable(format!("database unavailable: {e}"))
            }
            FailureKind::Permanent => {
                log::error!("database rejected an API query: {e}");
                ApiError::Internal("internal database error".into())
            }
        }
    }
}

impl From<r2d2::Error> for ApiError {
    fn from(e: r2d2::Error) -> Self {
        ApiError::Unavailable(format!("database unavailable: {e}"))
    }
}
