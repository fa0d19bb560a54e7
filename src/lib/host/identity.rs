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
) -> Result<String, String> {
    let file = credential_file(data_dir);
    if file.exists() {
        return secret::read_file(&file);
    }
    let Some(enrollment) = enrollment else {
        return Err(format!(
            "this agent has no host credential ({} is missing) and no enrollment secret: an \
             admin runs `manman host add {name}` and gives the agent HOST_ENROLLMENT_SECRET or \
             HOST_ENROLLMENT_SECRET_FILE",
            file.display()
        ));
    };
    let request = pb::EnrollHostRequest {
        name: name.into(),
        enrollment_secret: enrollment.into(),
    };
    let backoff = crate::retry::Backoff::reconnect();
    for attempt in 0..30 {
        let option = grpcio::CallOption::default().timeout(Duration::from_secs(10));
        match client.enroll_host_opt(&request, option) {
            Ok(reply) => {
                secret::write_file(&file, &reply.credential)?;
                log::info!(name = name; "enrolled: host credential stored in {}", file.display());
                return Ok(reply.credential);
            }
            Err(grpcio::Error::RpcFailure(s))
                if s.code() != grpcio::RpcStatusCode::UNAVAILABLE
                    && s.code() != grpcio::RpcStatusCode::DEADLINE_EXCEEDED =>
            {
                return Err(format!("enrollment refused: {}", s.message()));
            }
            Err(e) => {
                log::warn!("cannot enroll with the API: {e}");
                std::thread::sleep(backoff.delay(attempt));
            }
        }
    }
    Err("the API did not answer the enrollment; giving up".into())
}
