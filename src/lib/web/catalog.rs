//! The dashboard's catalog routes: games, configs and deployments, listed and created.

use grpcio::CallOption;
use serde_json::{json, Value};

use super::forms::config_from_form;
use super::transport::{Answer, Call};
use crate::proto::v1 as pb;
use crate::views::{config_json, deployment_json, game_json};

type Api = pb::ManManApiClient;

/// `GET /api/games`.
pub(super) fn games(api: &Api, _: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.list_games_opt(&pb::ListGamesRequest::default(), opt())?;
    Ok(json!({ "items": r.games.iter().map(game_json).collect::<Vec<_>>() }).into())
}

/// `POST /api/games {"name"}`.
pub(super) fn create_game(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.create_game_opt(
        &pb::CreateGameRequest {
            name: call.text("name"),
        },
        opt(),
    )?;
    Ok(game_json(&r.game.unwrap_or_default()).into())
}

/// `GET /api/configs`.
pub(super) fn configs(api: &Api, _: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.list_game_configs_opt(&pb::ListGameConfigsRequest::default(), opt())?;
    Ok(json!({ "items": r.configs.iter().map(config_json).collect::<Vec<_>>() }).into())
}

/// `POST /api/configs` with the config form.
pub(super) fn create_config(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.create_game_config_opt(
        &pb::CreateGameConfigRequest {
            config: Some(config_from_form(call)?),
        },
        opt(),
    )?;
    Ok(r.config
        .as_ref()
        .map(config_json)
        .unwrap_or(Value::Null)
        .into())
}

/// `GET /api/deployments`.
pub(super) fn deployments(api: &Api, _: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let r = api.list_deployments_opt(&pb::ListDeploymentsRequest::default(), opt())?;
    Ok(json!({ "items": r.deployments.iter().map(deployment_json).collect::<Vec<_>>() }).into())
}

/// `POST /api/deployments {"config_id", "server_id"}` (0: the API places it), with every
/// port of the config on a free port of the host's range.
pub(super) fn deploy(api: &Api, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
    let config_id = call.number("config_id")?;
    let config = api
        .get_game_config_opt(&pb::GetGameConfigRequest { config_id }, opt())?
        .config
        .unwrap_or_default();
    let ports = config.bindings_on_free_ports();
    let r = api.deploy_game_config_opt(
        &pb::DeployGameConfigRequest {
            server_id: call.number("server_id")?,
            config_id,
            ports,
        },
        opt(),
    )?;
    let mut d = r
        .deployment
        .as_ref()
        .map(deployment_json)
        .unwrap_or(Value::Null);
    d["placed"] = json!(r.placed);
    Ok(d.into())
}
