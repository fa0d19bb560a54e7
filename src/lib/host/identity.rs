//! The agent's own identity: its host credential, kept in `HOST_DATA_DIR/credential` (0600),
//! obtained once by enrolling with the one-time secret an admin issued (`manman host add`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::secret;
use crate::config::{ConfigError, Env};
use crate::proto::v1 as pb;

/// The one-time enrollment secret: `HOST_ENROLLMENT_SECRET`, or the file
/// `HOST_ENROLLMENT_SECRET_FILE` (0600). Needed only until the agent has a credential.
pub fn enrollment_secret(env: &Env) -> Result<Option<String>, ConfigError> {
    secret::from_env(env, "HOST_ENROLLMENT_SECRET", "HOST_ENROLLMENT_SECRET_FILE")
}

/// Why the agent has no identity to work under.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    SecretFile(#[from] secret::SecretFileError),
    #[error(
        "this agent has no host credential ({} is missing) and no enrollment secret: an admin \
         runs `manman host add {name}` and gives the agent HOST_ENROLLMENT_SECRET or \
         HOST_ENROLLMENT_SECRET_FILE",
        file.display()
    )]
    NoCredential { file: PathBuf, name: String },
    /// The API's word on the enrollment secret (used, wrong, expired).
    #[error("enrollment refused: {0}")]
    EnrollmentRefused(String),
    #[error("the API refused this agent's credential ({}): {message}", file.display())]
    CredentialRefused { file: PathBuf, message: String },
    #[error("the API registered this host without saying its id")]
    NoServerId,
    #[error(
        "the API did not say which broker user sends commands (its RABBITMQ_URL names no \
         user): this agent acts only on signed commands"
    )]
    NoCommandSender,
    #[error("the API did not answer ({what}); giving up")]
    NoAnswer {
        what: &'static str,
        #[source]
        last: grpcio::Error,
    },
}

crate::errors::read_as_one_line!(IdentityError);

pub fn credential_file(data_dir: &Path) -> PathBuf {
    data_dir.join("credential")
}

/// The agent's credential: the one stored, else a new one from enrolling. Enrolling is retried
/// while the API is unreachable; a refusal (secret used, wrong, expired) ends the attempt with
/// the API's message.
pub fn credential(
    client: &pb::ManManApiClient,
    name: &str,
    data_dir: &Path,
    enrollment: Option<&str>,
) -> Result<String, IdentityError> {
    let file = credential_file(data_dir);
    if file.exists() {
        return Ok(secret::read_file(&file)?);
    }
    let Some(enrollment) = enrollment else {
        return Err(IdentityError::NoCredential {
            file,
            name: name.to_string(),
        });
    };
    let request = pb::EnrollHostRequest {
        name: name.into(),
        enrollment_secret: enrollment.into(),
    };
    // Any answer but "unavailable" is the API's word (the secret is used, wrong, expired).
    let answered = |s: &grpcio::RpcStatus| {
        !matches!(
            s.code(),
            grpcio::RpcStatusCode::UNAVAILABLE | grpcio::RpcStatusCode::DEADLINE_EXCEEDED
        )
    };
    let option = || grpcio::CallOption::default().timeout(Duration::from_secs(10));
    match retrying("enroll", answered, || {
        client.enroll_host_opt(&request, option())
    })? {
        Ok(reply) => {
            secret::write_file(&file, &reply.credential)?;
            log::info!(name = name; "enrolled: host credential stored in {}", file.display());
            Ok(reply.credential)
        }
        Err(s) => Err(IdentityError::EnrollmentRefused(s.message().to_string())),
    }
}

/// What registering told the agent.
pub struct Registered {
    pub server_id: i64,
    /// The broker user whose commands the agent acts on (the API's).
    pub command_sender: String,
}

/// Registers this host under `name` with its credential, retrying while the API cannot be
/// reached; a refused credential ends it with a message naming the credential's file.
pub fn register(
    client: &pb::ManManApiClient,
    name: &str,
    credential: &str,
    data_dir: &Path,
) -> Result<Registered, IdentityError> {
    let request = pb::RegisterServerRequest { name: name.into() };
    let refused = |s: &grpcio::RpcStatus| {
        matches!(
            s.code(),
            grpcio::RpcStatusCode::UNAUTHENTICATED | grpcio::RpcStatusCode::PERMISSION_DENIED
        )
    };
    let option = || crate::grpc::call_option(Some(credential), Duration::from_secs(10));
    let reply = match retrying("register", refused, || {
        client.register_server_opt(&request, option())
    })? {
        Ok(reply) => reply,
        Err(s) => {
            return Err(IdentityError::CredentialRefused {
                file: credential_file(data_dir),
                message: s.message().to_string(),
            })
        }
    };
    let server_id = reply
        .server
        .map(|s| s.server_id)
        .ok_or(IdentityError::NoServerId)?;
    if reply.command_sender.is_empty() {
        return Err(IdentityError::NoCommandSender);
    }
    Ok(Registered {
        server_id,
        command_sender: reply.command_sender,
    })
}

/// Calls the API until it answers (30 tries, the reconnect backoff between them): `Ok(Ok)`
/// a reply, `Ok(Err)` a status `final_answer` accepts as the API's word, `Err` when it never
/// answered. Other failures (unreachable, not ready) are logged and retried.
fn retrying<T>(
    what: &'static str,
    final_answer: impl Fn(&grpcio::RpcStatus) -> bool,
    mut call: impl FnMut() -> grpcio::Result<T>,
) -> Result<Result<T, grpcio::RpcStatus>, IdentityError> {
    const ATTEMPTS: u32 = 30;
    let backoff = crate::retry::Backoff::reconnect();
    let mut attempt = 0;
    loop {
        match call() {
            Ok(reply) => return Ok(Ok(reply)),
            Err(grpcio::Error::RpcFailure(s)) if final_answer(&s) => return Ok(Err(s)),
            Err(last) if attempt + 1 >= ATTEMPTS => {
                return Err(IdentityError::NoAnswer { what, last })
            }
            Err(e) => {
                log::warn!("cannot {what} with the API: {e}");
                std::thread::sleep(backoff.delay(attempt));
                attempt += 1;
            }
        }
    }
}
