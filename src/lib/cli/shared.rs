//! What every control-plane subcommand shares: the API client and flags ([`Ctx`]), the
//! typed failure with its exit code ([`Failure`], [`Exit`]), and paging through a list.

use std::time::Duration;

use grpcio::{CallOption, RpcStatusCode};

use crate::grpc::Endpoint;
use crate::proto::v1 as pb;

/// Cloned by commands that call from several threads (the gRPC client is a handle on one
/// channel).
#[derive(Clone)]
pub struct Ctx {
    pub client: pb::ManManApiClient,
    pub json: bool,
    /// The API token (`MANMAN_TOKEN` or `MANMAN_TOKEN_FILE`), sent with every call.
    pub token: Option<String>,
}

impl Ctx {
    pub fn new(api: &Endpoint, token: Option<String>, json: bool) -> Ctx {
        Ctx {
            client: api.api_client(),
            json,
            token,
        }
    }

    pub fn opt(&self) -> CallOption {
        self.opt_for(Duration::from_secs(30))
    }

    pub fn opt_for(&self, timeout: Duration) -> CallOption {
        crate::grpc::call_option(self.token.as_deref(), timeout)
    }
}

/// The CLI's exit codes, as `manman --help` documents them (sysexits.h where one fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command ran and did not get what it asked for (a drain that left sessions, ...).
    Failed = 1,
    NotFound = 4,
    /// Already exists, or a precondition does not hold.
    Conflict = 5,
    /// EX_DATAERR: an argument the CLI or the API refused.
    InvalidArgument = 65,
    /// EX_UNAVAILABLE: the API (or the database, for `token create --bootstrap`) cannot be
    /// reached.
    Unavailable = 69,
    /// EX_CANTCREAT: an output file cannot be written.
    CannotWrite = 73,
    /// EX_IOERR: the output cannot be written (other than a closed pipe, which is success).
    IoError = 74,
    /// EX_NOPERM: no valid token, or its role is too weak.
    NotAllowed = 77,
    /// EX_CONFIG: the CLI's own settings (address, CA, token file) are wrong.
    Config = 78,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// What a gRPC status means for the operator's script.
    pub fn of_status(code: RpcStatusCode) -> Exit {
        match code {
            RpcStatusCode::INVALID_ARGUMENT => Exit::InvalidArgument,
            RpcStatusCode::NOT_FOUND => Exit::NotFound,
            RpcStatusCode::ALREADY_EXISTS | RpcStatusCode::FAILED_PRECONDITION => Exit::Conflict,
            RpcStatusCode::UNAVAILABLE | RpcStatusCode::DEADLINE_EXCEEDED => Exit::Unavailable,
            RpcStatusCode::UNAUTHENTICATED | RpcStatusCode::PERMISSION_DENIED => Exit::NotAllowed,
            _ => Exit::Failed,
        }
    }
}

/// A failed command: the message for stderr and what kind of failure it was.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub exit: Exit,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            exit,
        }
    }

    /// An argument the CLI itself refuses (before any call).
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(Exit::InvalidArgument, message)
    }
}

impl From<grpcio::Error> for Failure {
    fn from(e: grpcio::Error) -> Self {
        match e {
            grpcio::Error::RpcFailure(s) => Failure::new(Exit::of_status(s.code()), s.message()),
            // No status from the server: the call never got an answer.
            other => Failure::new(Exit::Unavailable, other.to_string()),
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// Every page of a list: `fetch(after)` returns a page and where the next starts (0: done).
pub(crate) fn all_pages<T>(
    mut fetch: impl FnMut(i64) -> Result<(Vec<T>, i64), Failure>,
) -> Result<Vec<T>, Failure> {
    let (mut all, mut after) = fetch(0)?;
    while after > 0 {
        let (page, next) = fetch(after)?;
        all.extend(page);
        after = next;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        let cases = [
            (RpcStatusCode::INVALID_ARGUMENT, 65),
            (RpcStatusCode::NOT_FOUND, 4),
            (RpcStatusCode::ALREADY_EXISTS, 5),
            (RpcStatusCode::FAILED_PRECONDITION, 5),
            (RpcStatusCode::UNAVAILABLE, 69),
            (RpcStatusCode::DEADLINE_EXCEEDED, 69),
            (RpcStatusCode::UNAUTHENTICATED, 77),
            (RpcStatusCode::PERMISSION_DENIED, 77),
            (RpcStatusCode::INTERNAL, 1),
            (RpcStatusCode::RESOURCE_EXHAUSTED, 1),
        ];
        for (status, code) in cases {
            assert_eq!(Exit::of_status(status).code(), code, "{status:?}");
        }
        let f = Failure::from(grpcio::Error::RpcFailure(grpcio::RpcStatus::with_message(
            RpcStatusCode::NOT_FOUND,
            "no session 7".into(),
        )));
        assert_eq!(
            (f.exit, f.message.as_str()),
            (Exit::NotFound, "no session 7")
        );
        assert_eq!(
            Failure::from(grpcio::Error::RemoteStopped).exit,
            Exit::Unavailable
        );
    }
}
