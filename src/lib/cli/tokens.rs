//! Who may use ManMan: `manman token create|list|revoke`, `manman host add|revoke`. Secrets are
//! shown once (or written to a 0600 file with `--output`) and never taken as arguments.

use std::path::Path;

use serde_json::json;

use super::output::{print, when};
use super::shared::{Ctx, Exit, Failure, Outcome};
use crate::auth::issue::{issue_token, IssueError};
use crate::auth::{secret, Role};
use crate::config::{self, Env};
use crate::proto::v1 as pb;
use crate::views::json_time;

/// Prints a new secret once, or writes it to `output` (mode 0600).
fn hand_over(
    ctx: &Ctx,
    what: &str,
    secret: &str,
    output: Option<&Path>,
    extra: serde_json::Value,
) -> Outcome {
    if let Some(path) = output {
        secret::write_file(path, secret)
            .map_err(|message| Failure::new(Exit::CannotWrite, message))?;
    }
    if ctx.json {
        let mut value = extra;
        match output {
            Some(path) => value["secret_file"] = json!(path.display().to_string()),
            None => value["secret"] = json!(secret),
        }
        println!("{value}");
    } else if let Some(path) = output {
        println!("{what}; its secret is in {} (mode 0600)", path.display());
    } else {
        println!("{what}; its secret, shown this once:\n{secret}");
    }
    Ok(())
}

pub struct TokenCreate<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub expires_in_seconds: i64,
    pub output: Option<&'a Path>,
}

pub fn token_create(ctx: &Ctx, t: &TokenCreate) -> Outcome {
    let r = ctx.client.create_token_opt(
        &pb::CreateTokenRequest {
            name: t.name.into(),
            role: t.role.into(),
            expires_in_seconds: t.expires_in_seconds,
        },
        ctx.opt(),
    )?;
    let token = r.token.unwrap_or_default();
    hand_over(
        ctx,
        &format!("token {:?} ({}) created", token.name, token.role),
        &r.secret,
        t.output,
        json!({"name": token.name, "role": token.role, "expires": json_time(token.expires_ms)}),
    )
}

/// The first admin token, straight into the database (`DATABASE_URL`): whoever can write the
/// database can do anything anyway, and the API has no token to check yet.
pub fn token_bootstrap(ctx: &Ctx, t: &TokenCreate) -> Outcome {
    let role: Role = t.role.parse().map_err(Failure::invalid)?;
    let env = Env::from_process();
    let db =
        config::database_config(&env).map_err(|e| Failure::new(Exit::Config, e.to_string()))?;
    let mut client = crate::db::connect_once(&db).map_err(|e| {
        Failure::new(
            Exit::Unavailable,
            format!(
                "cannot connect to {}: {}",
                config::describe_database(&db),
                String::from(e)
            ),
        )
    })?;
    let issued = issue_token(&mut client, t.name, role, t.expires_in_seconds);
    let (row, secret) = issued.map_err(|e| {
        let exit = match e {
            IssueError::NameTaken(_) => Exit::Conflict,
            IssueError::BadExpiry => Exit::InvalidArgument,
            IssueError::Db(_) => Exit::Unavailable,
        };
        Failure::new(exit, crate::errors::chain(&e))
    })?;
    log::info!(token = row.name.as_str(), role = row.role.as_str(); "bootstrap token created");
    hand_over(
        ctx,
        &format!(
            "token {:?} ({}) created in the database",
            row.name, row.role
        ),
        &secret,
        t.output,
        json!({"name": row.name, "role": row.role}),
    )
}

pub fn token_list(ctx: &Ctx) -> Outcome {
    let r = ctx
        .client
        .list_tokens_opt(&pb::ListTokensRequest {}, ctx.opt())?;
    let rows = r
        .tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.role.clone(),
                when(t.created_ms),
                if t.expires_ms > 0 {
                    when(t.expires_ms)
                } else {
                    "never".into()
                },
                when(t.last_used_ms),
                if t.revoked_ms > 0 {
                    format!("revoked {}", when(t.revoked_ms))
                } else {
                    "active".into()
                },
            ]
        })
        .collect();
    let value = r
        .tokens
        .iter()
        .map(|t| {
            json!({"name": t.name, "role": t.role, "created": json_time(t.created_ms),
            "expires": json_time(t.expires_ms), "last_used": json_time(t.last_used_ms),
            "revoked": json_time(t.revoked_ms)})
        })
        .collect();
    print(
        ctx,
        value,
        &["NAME", "ROLE", "CREATED", "EXPIRES", "LAST USED", "STATE"],
        rows,
    );
    Ok(())
}

pub fn token_revoke(ctx: &Ctx, name: &str) -> Outcome {
    let r = ctx
        .client
        .revoke_token_opt(&pb::RevokeTokenRequest { name: name.into() }, ctx.opt())?;
    let token = r.token.unwrap_or_default();
    if ctx.json {
        println!(
            "{}",
            json!({"name": token.name, "role": token.role, "revoked": json_time(token.revoked_ms)})
        );
    } else {
        println!(
            "token {:?} revoked (it stops working within a few seconds)",
            token.name
        );
    }
    Ok(())
}

pub fn host_revoke(ctx: &Ctx, id: i64) -> Outcome {
    let r = ctx
        .client
        .revoke_host_opt(&pb::RevokeHostRequest { server_id: id }, ctx.opt())?;
    if ctx.json {
        println!(
            "{}",
            json!({"server_id": id, "had_credential": r.had_credential})
        );
    } else if r.had_credential {
        println!(
            "host {id}'s credential revoked: its agent is refused from its next call and exits \
             (`manman host add NAME --reissue` to enroll it again)"
        );
    } else {
        println!("host {id} had no active credential; any pending enrollment secret is void");
    }
    Ok(())
}

pub fn host_add(ctx: &Ctx, name: &str, reissue: bool, output: Option<&Path>) -> Outcome {
    let r = ctx.client.add_host_opt(
        &pb::AddHostRequest {
            name: name.into(),
            reissue,
        },
        ctx.opt(),
    )?;
    let server = r.server.unwrap_or_default();
    hand_over(
        ctx,
        &format!(
            "host {:?} (id {}) is ready to enroll until {}: give the agent HOST_ENROLLMENT_SECRET \
             (or HOST_ENROLLMENT_SECRET_FILE)",
            server.name,
            server.server_id,
            when(r.expires_at_ms)
        ),
        &r.enrollment_secret,
        output,
        json!({"server_id": server.server_id, "name": server.name, "expires": json_time(r.expires_at_ms)}),
    )
}
