//! The dashboard's backup routes: a deployment's backups, "Back up now", and a restore.

use grpcio::CallOption;
use serde_json::{json, Value};

use super::transport::{bad, Answer, Call};
use crate::proto::v1 as pb;
use crate::views::{backup_json, restore_json};

type Api = pb::ManManApiClient;

/// `GET /api/deployments/{id}/backups`: the newest 20.
pub(super) fn list(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.list_backups_opt(
        &pb::ListBackupsRequest {
            sgc_id: call.id(2)?,
            page_after: 0,
            page_size: 20,
        },
        opt(),
    )?;
    let items: Vec<Value> = r.backups.iter().map(backup_json).collect();
    Ok(json!({"items": items}).into())
}

/// `POST /api/deployments/{id}/backups {"note"?}`: starts a backup (it runs on).
pub(super) fn create(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let note = match call.body.get("note") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("note must be a string")),
    };
    let r = api.create_backup_opt(
        &pb::CreateBackupRequest {
            sgc_id: call.id(2)?,
            note,
            pinned: false,
        },
        opt(),
    )?;
    Ok(r.backup
        .as_ref()
        .map(backup_json)
        .unwrap_or(Value::Null)
        .into())
}

/// `POST /api/backups/{id}/restore`: into its own deployment (stops and restarts its session).
pub(super) fn restore(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.restore_backup_opt(
        &pb::RestoreBackupRequest {
            backup_id: call.id(2)?,
            to_sgc_id: 0,
        },
        opt(),
    )?;
    Ok(r.restore
        .as_ref()
        .map(restore_json)
        .unwrap_or(Value::Null)
        .into())
}
