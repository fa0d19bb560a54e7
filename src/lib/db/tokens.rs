//! Queries on `api_tokens` and host enrollment (`servers.enrollment_sha256`). Secrets never
//! reach this module: only their SHA-256 digests.

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Row};

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub name: String,
    pub role: String,
    pub server_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str =
    "name, role, server_id, created_at, expires_at, last_used_at, revoked_at";

fn token(r: &Row) -> TokenRow {
    TokenRow {
        name: r.get(0),
        role: r.get(1),
        server_id: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        last_used_at: r.get(5),
        revoked_at: r.get(6),
    }
}

/// The holder of a valid (unrevoked, unexpired) token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder {
    pub token_id: i64,
    pub name: String,
    pub role: String,
    pub server_id: Option<i64>,
}

/// Stores a new token; `None` when an active token already has that name.
pub fn insert(
    c: &mut impl GenericClient,
    name: &str,
    role: &str,
    digest: &[u8],
    server_id: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Option<TokenRow>, postgres::Error> {
    let row = c.query_opt(
        &format!(
            "INSERT INTO api_tokens (name, role, secret_sha256, server_id, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
             RETURNING {TOKEN_COLUMNS}"
        ),
        &[&name, &role, &digest, &server_id, &expires_at],
    )?;
    Ok(row.as_ref().map(token))
}

/// The holder of the token with this digest, if it is valid now.
pub fn holder(
    c: &mut impl GenericClient,
    digest: &[u8],
) -> Result<Option<TokenHolder>, postgres::Error> {
    Ok(c.query_opt(
        "SELECT token_id, name, role, server_id FROM api_tokens
              WHERE secret_sha256 = $1 AND revoked_at IS NULL
                AND (expires_at IS NULL OR expires_at > now())",
        &[&digest],
    )?
    .map(|r| TokenHolder {
        token_id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        server_id: r.get(3),
    }))
}

/// Records that the token was used (callers throttle this; it is for `token list`).
pub fn touch(c: &mut impl GenericClient, token_id: i64) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE token_id = $1",
        &[&token_id],
    )?;
    Ok(())
}

/// Every token of people and scripts, newest first (host credentials are listed by
/// `host list`, not here). Revoked tokens stay listed for the record.
pub fn list(c: &mut impl GenericClient) -> Result<Vec<TokenRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE role <> 'host'
                  ORDER BY token_id DESC"
        ),
        &[],
    )?
    .iter()
    .map(token)
    .collect())
}

/// Revokes the active token of that name; `None` if there is none.
pub fn revoke(c: &mut impl GenericClient, name: &str) -> Result<Option<TokenRow>, postgres::Error> {
    let row = c.query_opt(
        &format!(
            "UPDATE api_tokens SET revoked_at = now()
              WHERE name = $1 AND revoked_at IS NULL AND role <> 'host'
             RETURNING {TOKEN_COLUMNS}"
        ),
        &[&name],
    )?;
    Ok(row.as_ref().map(token))
}

/// Ends a host's credential (and any enrollment secret still pending for it): the agent is
/// refused from its next call. `None` if there is no such host; `Some(false)` if it had no
/// active credential.
pub fn revoke_host(
    c: &mut impl GenericClient,
    server_id: i64,
) -> Result<Option<bool>, postgres::Error> {
    let mut tx = c.transaction()?;
    let found = tx.execute(
        "UPDATE servers SET enrollment_sha256 = NULL, enrollment_expires_at = NULL,
                updated_at = now() WHERE server_id = $1",
        &[&server_id],
    )?;
    if found == 0 {
        return Ok(None);
    }
    let revoked = tx.execute(
        "UPDATE api_tokens SET revoked_at = now()
          WHERE server_id = $1 AND role = 'host' AND revoked_at IS NULL",
        &[&server_id],
    )?;
    tx.commit()?;
    Ok(Some(revoked > 0))
}

/// What `host add` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAdded {
    /// The host exists now with a fresh enrollment secret.
    Ready { server_id: i64 },
    /// A host of that name has enrolled already (and `reissue` was not asked).
    AlreadyEnrolled { server_id: i64 },
}

/// Creates the host (or finds it) and sets its one-time enrollment secret. A host that has an
/// active credential keeps it until the new secret is used, and is only given a new secret
/// when `reissue` is set.
pub fn add_host(
    c: &mut impl GenericClient,
    name: &str,
    enrollment_digest: &[u8],
    expires_at: DateTime<Utc>,
    reissue: bool,
) -> Result<HostAdded, postgres::Error> {
    let mut tx = c.transaction()?;
    let server_id: i64 = tx
        .query_one(
            "WITH ins AS (INSERT INTO servers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING
                          RETURNING server_id)
             SELECT server_id FROM ins UNION ALL SELECT server_id FROM servers WHERE name = $1
             LIMIT 1",
            &[&name],
        )?
        .get(0);
    let enrolled = tx
        .query_opt(
            "SELECT 1 FROM api_tokens WHERE server_id = $1 AND revoked_at IS NULL",
            &[&server_id],
        )?
        .is_some();
    if enrolled && !reissue {
        return Ok(HostAdded::AlreadyEnrolled { server_id });
    }
    tx.execute(
        "UPDATE servers SET enrollment_sha256 = $2, enrollment_expires_at = $3, updated_at = now()
          WHERE server_id = $1",
        &[&server_id, &enrollment_digest, &expires_at],
    )?;
    tx.commit()?;
    Ok(HostAdded::Ready { server_id })
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    UnknownHost,
    /// No enrollment secret is pending: it was used already (by this or another agent).
    NothingPending,
    WrongSecret,
    Expired,
}

/// Trades the pending enrollment secret for a host credential: clears the secret, revokes the
/// host's previous credential and stores the new one, in one transaction.
pub fn enroll_host(
    c: &mut impl GenericClient,
    name: &str,
    enrollment_digest: &[u8],
    credential_digest: &[u8],
) -> Result<Result<i64, EnrollRefusal>, postgres::Error> {
    let mut tx = c.transaction()?;
    let Some(row) = tx.query_opt(
        "SELECT server_id, enrollment_sha256, enrollment_expires_at <= now()
           FROM servers WHERE name = $1 FOR UPDATE",
        &[&name],
    )?
    else {
        return Ok(Err(EnrollRefusal::UnknownHost));
    };
    let server_id: i64 = row.get(0);
    let pending: Option<Vec<u8>> = row.get(1);
    let expired: Option<bool> = row.get(2);
    match pending {
        None => return Ok(Err(EnrollRefusal::NothingPending)),
        Some(p) if p != enrollment_digest => return Ok(Err(EnrollRefusal::WrongSecret)),
        Some(_) if expired == Some(true) => return Ok(Err(EnrollRefusal::Expired)),
        Some(_) => {}
    }
    tx.execute(
        "UPDATE servers SET enrollment_sha256 = NULL, enrollment_expires_at = NULL,
                updated_at = now() WHERE server_id = $1",
        &[&server_id],
    )?;
    tx.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE server_id = $1 AND revoked_at IS NULL",
        &[&server_id],
    )?;
    tx.execute(
        "INSERT INTO api_tokens (name, role, secret_sha256, server_id)
         VALUES ($1, 'host', $2, $3)",
        &[&format!("host:{name}"), &credential_digest, &server_id],
    )?;
    tx.commit()?;
    Ok(Ok(server_id))
}
