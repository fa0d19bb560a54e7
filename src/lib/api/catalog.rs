//! Catalog operations: hosts, games, game configs, deployments.

use super::convert::{config_pb, host_pb, SECRET_MASK};
use super::error::ApiError;
use super::validate::{
    game_process, next_page_after, page, positive_id, valid_name, valid_port, valid_protocol,
};
use super::ApiService;
use crate::db::catalog::{self, ConfigRow, DeleteScope};
use crate::db::placement;
use crate::proto::v1 as pb;
use crate::wire::commands::PortBinding;

impl ApiService {
    pub fn list_servers(
        &self,
        req: pb::ListServersRequest,
    ) -> Result<pb::ListServersResponse, ApiError> {
        let page = page(req.page_after, req.page_size)?;
        let mut rows = catalog::list_hosts(&mut *self.db()?, page)?;
        let next_page_after = next_page_after(&mut rows, page, |h| h.server_id);
        Ok(pb::ListServersResponse {
            servers: rows.into_iter().map(host_pb).collect(),
            next_page_after,
        })
    }

    pub fn get_server(&self, req: pb::GetServerRequest) -> Result<pb::GetServerResponse, ApiError> {
        let id = positive_id("server_id", req.server_id)?;
        let host = catalog::get_host(&mut *self.db()?, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no server with id {id}")))?;
        Ok(pb::GetServerResponse {
            server: Some(host_pb(host)),
        })
    }

    pub fn create_game(
        &self,
        req: pb::CreateGameRequest,
    ) -> Result<pb::CreateGameResponse, ApiError> {
        let name = valid_name("game name", &req.name)?;
        let id = catalog::create_game(&mut *self.db()?, &name)?.ok_or_else(|| {
            ApiError::AlreadyExists(format!("a game named {name:?} already exists"))
        })?;
        Ok(pb::CreateGameResponse {
            game: Some(pb::Game { game_id: id, name }),
        })
    }

    pub fn update_game(
        &self,
        req: pb::UpdateGameRequest,
    ) -> Result<pb::UpdateGameResponse, ApiError> {
        let game_id = positive_id("game_id", req.game_id)?;
        let name = valid_name("game name", &req.name)?;
        match catalog::rename_game(&mut *self.db()?, game_id, &name) {
            Ok(Some(())) => Ok(pb::UpdateGameResponse {
                game: Some(pb::Game { game_id, name }),
            }),
            Ok(None) => Err(ApiError::NotFound(format!("no game with id {game_id}"))),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => Err(
                ApiError::AlreadyExists(format!("a game named {name:?} already exists")),
            ),
            Err(e) => Err(e.into()),
        }
    }

    pub fn list_games(&self, req: pb::ListGamesRequest) -> Result<pb::ListGamesResponse, ApiError> {
        let page = page(req.page_after, req.page_size)?;
        let mut rows = catalog::list_games(&mut *self.db()?, page)?;
        let next_page_after = next_page_after(&mut rows, page, |g| g.0);
        Ok(pb::ListGamesResponse {
            games: rows
                .into_iter()
                .map(|(game_id, name)| pb::Game { game_id, name })
                .collect(),
            next_page_after,
        })
    }

    pub fn create_game_config(
        &self,
        req: pb::CreateGameConfigRequest,
    ) -> Result<pb::CreateGameConfigResponse, ApiError> {
        let row = config_row(req.config)?;
        let mut db = self.db()?;
        if !catalog::game_exists(&mut *db, row.game_id)? {
            return Err(ApiError::NotFound(format!(
                "no game with id {}",
                row.game_id
            )));
        }
        let created = catalog::create_config(&mut *db, &row)?.ok_or_else(|| {
            ApiError::AlreadyExists(format!(
                "game {} already has a config named {:?}",
                row.game_id, row.name
            ))
        })?;
        Ok(pb::CreateGameConfigResponse {
            config: Some(config_pb(created)),
        })
    }

    /// Replaces a config's definition (same validation as create); the next session of each
    /// of its deployments runs it (`manman session restart` for one now).
    pub fn update_game_config(
        &self,
        req: pb::UpdateGameConfigRequest,
    ) -> Result<pb::UpdateGameConfigResponse, ApiError> {
        let mut row = config_row(req.config)?;
        row.config_id = positive_id("config_id", req.config_id)?;
        let mut db = self.db()?;
        // A secret sent back as the mask it was shown as keeps its stored value.
        if row.process.env.values().any(|v| v == SECRET_MASK) {
            if let Some(stored) = catalog::get_config(&mut *db, row.config_id)? {
                for (key, value) in row.process.env.iter_mut() {
                    if value == SECRET_MASK && stored.secret_env_keys.contains(key) {
                        if let Some(kept) = stored.process.env.get(key) {
                            *value = kept.clone();
                        }
                    }
                }
            }
        }
        let updated = match catalog::update_config(&mut *db, &row) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(ApiError::NotFound(format!(
                    "no game config with id {} in game {}",
                    row.config_id, row.game_id
                )))
            }
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                return Err(ApiError::AlreadyExists(format!(
                    "game {} already has a config named {:?}",
                    row.game_id, row.name
                )))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(pb::UpdateGameConfigResponse {
            config: Some(config_pb(updated)),
        })
    }

    pub fn list_game_configs(
        &self,
        req: pb::ListGameConfigsRequest,
    ) -> Result<pb::ListGameConfigsResponse, ApiError> {
        if req.game_id < 0 {
            return Err(ApiError::InvalidArgument(
                "game_id cannot be negative".into(),
            ));
        }
        let game = Some(req.game_id).filter(|g| *g > 0);
        let page = page(req.page_after, req.page_size)?;
        let mut rows = catalog::list_configs(&mut *self.db()?, game, page)?;
        let next_page_after = next_page_after(&mut rows, page, |c| c.config_id);
        Ok(pb::ListGameConfigsResponse {
            configs: rows.into_iter().map(config_pb).collect(),
            next_page_after,
        })
    }

    pub fn get_game_config(
        &self,
        req: pb::GetGameConfigRequest,
    ) -> Result<pb::GetGameConfigResponse, ApiError> {
        let id = positive_id("config_id", req.config_id)?;
        let c = catalog::get_config(&mut *self.db()?, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no game config with id {id}")))?;
        Ok(pb::GetGameConfigResponse {
            config: Some(config_pb(c)),
        })
    }

    pub fn deploy_game_config(
        &self,
        req: pb::DeployGameConfigRequest,
    ) -> Result<pb::DeployGameConfigResponse, ApiError> {
        let placed = req.server_id == 0;
        let server_id = match placed {
            true => 0,
            false => positive_id("server_id", req.server_id)?,
        };
        let config_id = positive_id("config_id", req.config_id)?;
        let mut ports = Vec::new();
        for p in &req.ports {
            let binding = PortBinding {
                container_port: valid_port(
                    "container port",
                    if p.container_port == 0 {
                        p.host_port
                    } else {
                        p.container_port
                    },
                )?,
                // 0: chosen below, from the host's range.
                host_port: match p.host_port {
                    0 => 0,
                    port => valid_port("host port", port)?,
                },
                protocol: valid_protocol(&p.protocol)?,
            };
            if binding.host_port != 0
                && ports.iter().any(|b: &PortBinding| {
                    b.host_port == binding.host_port && b.protocol == binding.protocol
                })
            {
                return Err(ApiError::InvalidArgument(format!(
                    "host port {} is bound twice",
                    binding.host_port
                )));
            }
            ports.push(binding);
        }
        let mut db = self.db()?;
        let Some(config) = catalog::get_config(&mut *db, config_id)? else {
            return Err(ApiError::NotFound(format!(
                "no game config with id {config_id}"
            )));
        };
        let mut tx = db.transaction()?;
        let server_id = match placed {
            true => placement::choose(&placement::candidates(&mut tx)?, config.memory_estimate_mb)
                .map_err(ApiError::FailedPrecondition)?,
            false => server_id,
        };
        let Some(range) = placement::lock_host(&mut tx, server_id)? else {
            return Err(ApiError::NotFound(format!("no server with id {server_id}")));
        };
        for protocol in ["tcp", "udp"] {
            // Only bindings left to choose need to know what is taken.
            if !ports
                .iter()
                .any(|b| b.protocol == protocol && b.host_port == 0)
            {
                continue;
            }
            let mut taken = placement::ports_in_use(&mut tx, server_id, config_id, protocol)?;
            taken.extend(
                ports
                    .iter()
                    .filter(|b| b.protocol == protocol)
                    .map(|b| b.host_port),
            );
            for b in ports
                .iter_mut()
                .filter(|b| b.protocol == protocol && b.host_port == 0)
            {
                b.host_port = placement::free_port(range, &taken).ok_or_else(|| {
                    ApiError::FailedPrecondition(format!(
                        "host {server_id} has no free {protocol} port in {}-{}",
                        range.0, range.1
                    ))
                })?;
                taken.insert(b.host_port);
            }
        }
        let (d, updated) = catalog::deploy(&mut tx, server_id, config_id, &ports)?;
        tx.commit()?;
        if placed {
            log::info!(config_id = config_id, server_id = server_id,
                memory_estimate_mb = config.memory_estimate_mb; "placed a deployment");
        }
        Ok(pb::DeployGameConfigResponse {
            deployment: Some(deployment_pb(d)),
            updated,
            placed,
        })
    }

    pub fn list_deployments(
        &self,
        req: pb::ListDeploymentsRequest,
    ) -> Result<pb::ListDeploymentsResponse, ApiError> {
        let any_or = |name: &str, id: i64| match id {
            0 => Ok(None),
            id => positive_id(name, id).map(Some),
        };
        let server_id = any_or("server_id", req.server_id)?;
        let config_id = any_or("config_id", req.config_id)?;
        let page = page(req.page_after, req.page_size)?;
        let mut rows = catalog::list_deployments(&mut *self.db()?, server_id, config_id, page)?;
        let next_page_after = next_page_after(&mut rows, page, |d| d.sgc_id);
        Ok(pb::ListDeploymentsResponse {
            deployments: rows.into_iter().map(deployment_pb).collect(),
            next_page_after,
        })
    }
}

impl ApiService {
    /// Deletes a game, a config or a deployment (see `DeleteRequest` in the proto).
    pub fn delete(&self, scope: DeleteScope, force: bool) -> Result<pb::DeleteResponse, ApiError> {
        let (field, id) = match scope {
            DeleteScope::Game(id) => ("game_id", id),
            DeleteScope::Config(id) => ("config_id", id),
            DeleteScope::Deployment(id) => ("sgc_id", id),
        };
        positive_id(field, id)?;
        let mut db = self.db()?;
        if !catalog::scope_exists(&mut *db, scope)? {
            return Err(ApiError::NotFound(format!("no {}", scope.describe())));
        }
        let live = catalog::live_sessions_in(&mut *db, scope)?;
        drop(db);
        if !live.is_empty() && !force {
            let sessions: Vec<String> = live
                .iter()
                .map(|(id, status)| format!("session {id} ({status})"))
                .collect();
            return Err(ApiError::FailedPrecondition(format!(
                "{} has live {}: stop it first, or delete with force (stops it)",
                scope.describe(),
                sessions.join(", ")
            )));
        }
        let mut stopped = Vec::new();
        for (session_id, status) in live {
            // A session already stopping needs no second stop.
            if status != "stopping" {
                self.stop_session(pb::StopSessionRequest {
                    session_id,
                    kill: false,
                    force: false,
                })?;
            }
            stopped.push(session_id);
        }
        catalog::soft_delete(&mut *self.db()?, scope)?;
        log::info!(deleted = scope.describe().as_str(), stopped = stopped.len(); "deleted");
        Ok(pb::DeleteResponse {
            stopped_sessions: stopped,
        })
    }
}

/// A config as the API received it, validated (the one `wire::GameProcess` contract).
fn config_row(config: Option<pb::GameConfig>) -> Result<ConfigRow, ApiError> {
    let c = config.ok_or_else(|| ApiError::InvalidArgument("config is required".into()))?;
    let game_id = positive_id("game_id", c.game_id)?;
    let name = valid_name("config name", &c.name)?;
    let process = game_process(&c)?;
    let mut ports = Vec::new();
    for p in &c.ports {
        ports.push(serde_json::json!({
            "port": valid_port("port", p.port)?,
            "protocol": valid_protocol(&p.protocol)?,
        }));
    }
    let memory_estimate_mb = u32::try_from(c.memory_estimate_mb)
        .map_err(|_| ApiError::InvalidArgument("memory_estimate_mb: cannot be negative".into()))?;
    // Placement reserves the hard memory limit when there is one: a session may use it all.
    let memory_estimate_mb = match process.limits.memory_max_bytes {
        Some(bytes) => {
            memory_estimate_mb.max(bytes.div_ceil(1 << 20).min(u64::from(u32::MAX)) as u32)
        }
        None => memory_estimate_mb,
    };
    let mut secret_env_keys = c.secret_env_keys.clone();
    secret_env_keys.sort();
    secret_env_keys.dedup();
    if let Some(k) = secret_env_keys
        .iter()
        .find(|k| !process.env.contains_key(*k))
    {
        return Err(ApiError::InvalidArgument(format!(
            "secret_env_keys: {k:?} is not a key of env"
        )));
    }
    let backup: crate::wire::backup::BackupPolicy = c.backup.clone().unwrap_or_default().into();
    backup
        .validate()
        .map_err(|e| ApiError::InvalidArgument(format!("backup: {e}")))?;
    Ok(ConfigRow {
        config_id: 0,
        game_id,
        name,
        process,
        port_definitions: serde_json::Value::Array(ports),
        memory_estimate_mb,
        secret_env_keys,
        backup,
    })
}

fn deployment_pb(d: catalog::DeploymentRow) -> pb::Deployment {
    pb::Deployment {
        sgc_id: d.sgc_id,
        server_id: d.server_id,
        config_id: d.config_id,
        ports: d
            .ports
            .into_iter()
            .map(|p| pb::PortBinding {
                container_port: p.container_port,
                host_port: p.host_port,
                protocol: p.protocol,
            })
            .collect(),
        status: d.status,
    }
}
