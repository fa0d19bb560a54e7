//! The control plane's catalog: hosts, games, game configs, deployments, and creating sessions
//! with their ports. Used by manman-api.

use postgres::{GenericClient, Row};
use serde_json::Value;

use crate::wire::commands::PortBinding;
use crate::wire::{GameProcess, RestartPolicy};

#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub server_id: i64,
    pub name: String,
    pub status: String,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// (total, available) bytes from its latest heartbeat, if its agent reports them.
    pub memory: Option<(i64, i64)>,
    pub port_range: (i32, i32),
}

const HOST_COLUMNS: &str = "server_id, name, status, last_seen, memory_total_bytes, \
     memory_available_bytes, port_range_low, port_range_high";

fn host(r: &Row) -> HostRow {
    let total: Option<i64> = r.get(4);
    let available: Option<i64> = r.get(5);
    HostRow {
        server_id: r.get(0),
        name: r.get(1),
        status: r.get(2),
        last_seen: r.get(3),
        memory: total.zip(available),
        port_range: (r.get(6), r.get(7)),
    }
}

/// The host of that name.
pub fn host_by_name(
    c: &mut impl GenericClient,
    name: &str,
) -> Result<Option<HostRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!("SELECT {HOST_COLUMNS} FROM servers WHERE name = $1"),
        &[&name],
    )?
    .as_ref()
    .map(host))
}

/// One page of a list ordered by id (keyset: the ids after `after`, at most `limit` rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: i64,
    pub limit: i64,
}

pub fn list_hosts(c: &mut impl GenericClient, page: Page) -> Result<Vec<HostRow>, postgres::Error> {
    Ok(c.query(
        &format!(
            "SELECT {HOST_COLUMNS} FROM servers WHERE server_id > $1 ORDER BY server_id LIMIT $2"
        ),
        &[&page.after, &page.limit],
    )?
    .iter()
    .map(host)
    .collect())
}

pub fn get_host(c: &mut impl GenericClient, id: i64) -> Result<Option<HostRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!("SELECT {HOST_COLUMNS} FROM servers WHERE server_id = $1"),
        &[&id],
    )?
    .map(|r| host(&r)))
}

/// Creates a game; `None` if the name is taken.
pub fn create_game(c: &mut impl GenericClient, name: &str) -> Result<Option<i64>, postgres::Error> {
    Ok(c.query_opt(
        "INSERT INTO games (name) VALUES ($1)
         ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING RETURNING game_id",
        &[&name],
    )?
    .map(|r| r.get(0)))
}

/// Renames a live game. `Ok(None)` if there is none with that id; a name another live game
/// has fails with a unique violation.
pub fn rename_game(
    c: &mut impl GenericClient,
    game_id: i64,
    name: &str,
) -> Result<Option<()>, postgres::Error> {
    Ok(c.query_opt(
        "UPDATE games SET name = $2 WHERE game_id = $1 AND deleted_at IS NULL RETURNING game_id",
        &[&game_id, &name],
    )?
    .map(drop))
}

pub fn list_games(
    c: &mut impl GenericClient,
    page: Page,
) -> Result<Vec<(i64, String)>, postgres::Error> {
    Ok(c.query(
        "SELECT game_id, name FROM games WHERE deleted_at IS NULL AND game_id > $1
          ORDER BY game_id LIMIT $2",
        &[&page.after, &page.limit],
    )?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

pub fn game_exists(c: &mut impl GenericClient, id: i64) -> Result<bool, postgres::Error> {
    Ok(c.query_opt(
        "SELECT 1 FROM games WHERE game_id = $1 AND deleted_at IS NULL",
        &[&id],
    )?
    .is_some())
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRow {
    pub config_id: i64,
    pub game_id: i64,
    pub name: String,
    /// How it runs (`command` in the table is `process.program`).
    pub process: GameProcess,
    /// `[{"port": 25565, "protocol": "tcp"}]`
    pub port_definitions: Value,
    /// What a session needs, for placement (0: unknown, fits anywhere).
    pub memory_estimate_mb: u32,
    /// Keys of `process.env` whose values are never shown.
    pub secret_env_keys: Vec<String>,
    /// What a backup takes and how, and how many are kept.
    pub backup: crate::wire::backup::BackupPolicy,
}

const CONFIG_COLUMNS: &str =
    "config_id, game_id, name, command, args, env, working_dir, stop_signal, \
     stop_command, stop_timeout_seconds, restart_policy, start_duration_ms, port_definitions, \
     backoff_initial_ms, backoff_max_ms, retry_limit, reset_after_seconds, readiness, liveness, \
     memory_estimate_mb, run_as, max_open_files, max_processes, secret_env_keys, backup_policy, \
     resource_limits, player_query";

fn config(r: &Row) -> ConfigRow {
    let unsigned = |i: usize| r.get::<_, i32>(i).max(0) as u32;
    ConfigRow {
        config_id: r.get(0),
        game_id: r.get(1),
        name: r.get(2),
        process: GameProcess {
            program: r.get(3),
            args: serde_json::from_value(r.get(4)).unwrap_or_default(),
            env: serde_json::from_value(r.get(5)).unwrap_or_default(),
            working_dir: r.get(6),
            stop_signal: r.get(7),
            stop_command: r.get(8),
            stop_timeout_seconds: unsigned(9),
            // The CHECK constraint keeps the column to the known policies.
            restart_policy: r
                .get::<_, String>(10)
                .parse()
                .unwrap_or(RestartPolicy::Never),
            start_duration_ms: unsigned(11),
            backoff_initial_ms: unsigned(13),
            backoff_max_ms: unsigned(14),
            retry_limit: unsigned(15),
            reset_after_seconds: unsigned(16),
            // Written from the typed probes only; an unreadable one would have failed create.
            readiness: r
                .get::<_, Option<Value>>(17)
                .and_then(|v| serde_json::from_value(v).ok()),
            liveness: r
                .get::<_, Option<Value>>(18)
                .and_then(|v| serde_json::from_value(v).ok()),
            run_as: r.get(20),
            max_open_files: r.get::<_, Option<i32>>(21).map(|n| n.max(0) as u32),
            max_processes: r.get::<_, Option<i32>>(22).map(|n| n.max(0) as u32),
            // Written from the typed limits only.
            limits: serde_json::from_value(r.get(25)).unwrap_or_default(),
            players: r
                .get::<_, Option<Value>>(26)
                .and_then(|v| serde_json::from_value(v).ok()),
        },
        port_definitions: r.get(12),
        memory_estimate_mb: unsigned(19),
        secret_env_keys: serde_json::from_value(r.get(23)).unwrap_or_default(),
        // Written from the typed policy only.
        backup: serde_json::from_value(r.get(24)).unwrap_or_default(),
    }
}

/// Creates a config; `None` if the game already has one with that name.
pub fn create_config(
    c: &mut impl GenericClient,
    cfg: &ConfigRow,
) -> Result<Option<ConfigRow>, postgres::Error> {
    write_config(
        c,
        cfg,
        "INSERT INTO game_configs (game_id, name, command, args, env, working_dir, stop_signal,
             stop_command, stop_timeout_seconds, restart_policy, start_duration_ms, port_definitions,
             backoff_initial_ms, backoff_max_ms, retry_limit, reset_after_seconds, readiness,
             liveness, memory_estimate_mb, run_as, max_open_files, max_processes, secret_env_keys,
             backup_policy, resource_limits, player_query)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21, $22, $23, $24, $25, $26)
         ON CONFLICT (game_id, name) WHERE deleted_at IS NULL DO NOTHING",
        None,
    )
}

/// Replaces a config's definition (its game stays). `None` if it does not exist or was
/// deleted; a name another config of the game has fails with a unique violation.
pub fn update_config(
    c: &mut impl GenericClient,
    cfg: &ConfigRow,
) -> Result<Option<ConfigRow>, postgres::Error> {
    write_config(
        c,
        cfg,
        "UPDATE game_configs SET name = $2, command = $3, args = $4, env = $5, working_dir = $6,
             stop_signal = $7, stop_command = $8, stop_timeout_seconds = $9, restart_policy = $10,
             start_duration_ms = $11, port_definitions = $12, backoff_initial_ms = $13,
             backoff_max_ms = $14, retry_limit = $15, reset_after_seconds = $16, readiness = $17,
             liveness = $18, memory_estimate_mb = $19, run_as = $20, max_open_files = $21,
             max_processes = $22, secret_env_keys = $23, backup_policy = $24,
             resource_limits = $25, player_query = $26, updated_at = now()
          WHERE config_id = $27 AND game_id = $1 AND deleted_at IS NULL",
        Some(cfg.config_id),
    )
}

/// Runs an INSERT or UPDATE of a config whose parameters are $1-$26 (and $27 the id of the
/// config an UPDATE replaces).
fn write_config(
    c: &mut impl GenericClient,
    cfg: &ConfigRow,
    statement: &str,
    config_id: Option<i64>,
) -> Result<Option<ConfigRow>, postgres::Error> {
    let p = &cfg.process;
    let args = serde_json::to_value(&p.args).expect("serialisable");
    let env = serde_json::to_value(&p.env).expect("serialisable");
    let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let (stop_timeout, start_duration) = (int(p.stop_timeout_seconds), int(p.start_duration_ms));
    let (backoff, backoff_max) = (int(p.backoff_initial_ms), int(p.backoff_max_ms));
    let (retry_limit, reset_after) = (int(p.retry_limit), int(p.reset_after_seconds));
    let restart = p.restart_policy.as_str();
    let readiness = p
        .readiness
        .as_ref()
        .map(|r| serde_json::to_value(r).expect("serialisable"));
    let liveness = p
        .liveness
        .as_ref()
        .map(|l| serde_json::to_value(l).expect("serialisable"));
    let memory = int(cfg.memory_estimate_mb);
    let (open_files, processes) = (p.max_open_files.map(int), p.max_processes.map(int));
    let secret_keys = serde_json::to_value(&cfg.secret_env_keys).expect("serialisable");
    let backup = serde_json::to_value(&cfg.backup).expect("serialisable");
    let limits = serde_json::to_value(&p.limits).expect("serialisable");
    let players = p
        .players
        .as_ref()
        .map(|q| serde_json::to_value(q).expect("serialisable"));
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![
        &cfg.game_id,
        &cfg.name,
        &p.program,
        &args,
        &env,
        &p.working_dir,
        &p.stop_signal,
        &p.stop_command,
        &stop_timeout,
        &restart,
        &start_duration,
        &cfg.port_definitions,
        &backoff,
        &backoff_max,
        &retry_limit,
        &reset_after,
        &readiness,
        &liveness,
        &memory,
        &p.run_as,
        &open_files,
        &processes,
        &secret_keys,
        &backup,
        &limits,
        &players,
    ];
    if let Some(id) = &config_id {
        params.push(id);
    }
    Ok(
        c.query_opt(&format!("{statement} RETURNING {CONFIG_COLUMNS}"), &params)?
            .map(|r| config(&r)),
    )
}

pub fn list_configs(
    c: &mut impl GenericClient,
    game_id: Option<i64>,
    page: Page,
) -> Result<Vec<ConfigRow>, postgres::Error> {
    Ok(c.query(
        &format!("SELECT {CONFIG_COLUMNS} FROM game_configs
                   WHERE deleted_at IS NULL AND ($1::bigint IS NULL OR game_id = $1) AND config_id > $2
                   ORDER BY config_id LIMIT $3"),
        &[&game_id, &page.after, &page.limit],
    )?
    .iter()
    .map(config)
    .collect())
}

pub fn get_config(
    c: &mut impl GenericClient,
    id: i64,
) -> Result<Option<ConfigRow>, postgres::Error> {
    Ok(c.query_opt(
        &format!(
            "SELECT {CONFIG_COLUMNS} FROM game_configs WHERE config_id = $1 AND deleted_at IS NULL"
        ),
        &[&id],
    )?
    .map(|r| config(&r)))
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRow {
    pub sgc_id: i64,
    pub server_id: i64,
    pub config_id: i64,
    pub ports: Vec<PortBinding>,
    pub status: String,
}

fn deployment(r: &Row) -> DeploymentRow {
    DeploymentRow {
        sgc_id: r.get(0),
        server_id: r.get(1),
        config_id: r.get(2),
        ports: serde_json::from_value(r.get(3)).unwrap_or_default(),
        status: r.get(4),
    }
}

/// Deploys a config on a host (or updates the port bindings of the existing deployment).
/// Returns the deployment and whether it existed already (an update).
pub fn deploy(
    c: &mut impl GenericClient,
    server_id: i64,
    config_id: i64,
    ports: &[PortBinding],
) -> Result<(DeploymentRow, bool), postgres::Error> {
    let bindings = serde_json::to_value(ports).expect("serialisable");
    let r = c.query_one(
        "INSERT INTO server_game_configs (server_id, game_config_id, port_bindings) VALUES ($1, $2, $3)
         ON CONFLICT (server_id, game_config_id)
            DO UPDATE SET port_bindings = excluded.port_bindings, status = 'active', updated_at = now()
         RETURNING sgc_id, server_id, game_config_id, port_bindings, status, (xmax <> 0) AS updated",
        &[&server_id, &config_id, &bindings],
    )?;
    Ok((deployment(&r), r.get(5)))
}

/// Deployments of one host and/or one config (`None`: any), by id.
pub fn list_deployments(
    c: &mut impl GenericClient,
    server_id: Option<i64>,
    config_id: Option<i64>,
    page: Page,
) -> Result<Vec<DeploymentRow>, postgres::Error> {
    Ok(c
        .query(
            "SELECT sgc_id, server_id, game_config_id, port_bindings, status FROM server_game_configs
              WHERE status = 'active' AND sgc_id > $3
                AND ($1::bigint IS NULL OR server_id = $1) AND ($2::bigint IS NULL OR game_config_id = $2)
              ORDER BY sgc_id LIMIT $4",
            &[&server_id, &config_id, &page.after, &page.limit],
        )?
        .iter()
        .map(deployment)
        .collect())
}

pub fn get_deployment(
    c: &mut impl GenericClient,
    sgc_id: i64,
) -> Result<Option<DeploymentRow>, postgres::Error> {
    Ok(c.query_opt(
        "SELECT sgc_id, server_id, game_config_id, port_bindings, status FROM server_game_configs WHERE sgc_id = $1",
        &[&sgc_id],
    )?
    .map(|r| deployment(&r)))
}

/// What a delete removes: a game (its configs and their deployments with it), a config (its
/// deployments with it), or one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteScope {
    Game(i64),
    Config(i64),
    Deployment(i64),
}

impl DeleteScope {
    /// `game 3`, `config 5`, `deployment 7`.
    pub fn describe(self) -> String {
        match self {
            DeleteScope::Game(id) => format!("game {id}"),
            DeleteScope::Config(id) => format!("config {id}"),
            DeleteScope::Deployment(id) => format!("deployment {id}"),
        }
    }
}

/// The deployments a delete retires (those not retired yet); empty if the thing does not
/// exist or was deleted already.
const SCOPE_DEPLOYMENTS: &str = "SELECT d.sgc_id FROM server_game_configs d
       JOIN game_configs c ON c.config_id = d.game_config_id
      WHERE d.status = 'active' AND c.deleted_at IS NULL
        AND CASE $1 WHEN 'game' THEN c.game_id = $2
                    WHEN 'config' THEN c.config_id = $2
                    ELSE d.sgc_id = $2 END";

fn scope_args(scope: DeleteScope) -> (&'static str, i64) {
    match scope {
        DeleteScope::Game(id) => ("game", id),
        DeleteScope::Config(id) => ("config", id),
        DeleteScope::Deployment(id) => ("deployment", id),
    }
}

/// Whether the thing exists and is not deleted.
pub fn scope_exists(
    c: &mut impl GenericClient,
    scope: DeleteScope,
) -> Result<bool, postgres::Error> {
    let sql = match scope {
        DeleteScope::Game(_) => "SELECT 1 FROM games WHERE game_id = $1 AND deleted_at IS NULL",
        DeleteScope::Config(_) => {
            "SELECT 1 FROM game_configs WHERE config_id = $1 AND deleted_at IS NULL"
        }
        DeleteScope::Deployment(_) => {
            "SELECT 1 FROM server_game_configs WHERE sgc_id = $1 AND status = 'active'"
        }
    };
    Ok(c.query_opt(sql, &[&scope_args(scope).1])?.is_some())
}

/// Live sessions (id, status) of what a delete would remove.
pub fn live_sessions_in(
    c: &mut impl GenericClient,
    scope: DeleteScope,
) -> Result<Vec<(i64, String)>, postgres::Error> {
    let (kind, id) = scope_args(scope);
    Ok(c.query(
        &format!(
            "SELECT s.session_id, s.status FROM sessions s
                  WHERE s.sgc_id IN ({SCOPE_DEPLOYMENTS})
                    AND s.status IN ('pending', 'starting', 'running', 'stopping')
                  ORDER BY s.session_id"
        ),
        &[&kind, &id],
    )?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Retires the deployments and marks the config(s) and game deleted, in one transaction.
pub fn soft_delete(c: &mut impl GenericClient, scope: DeleteScope) -> Result<(), postgres::Error> {
    let (kind, id) = scope_args(scope);
    let mut tx = c.transaction()?;
    tx.execute(
        &format!(
            "UPDATE server_game_configs SET status = 'retired', updated_at = now()
              WHERE sgc_id IN ({SCOPE_DEPLOYMENTS})"
        ),
        &[&kind, &id],
    )?;
    match scope {
        DeleteScope::Game(id) => {
            tx.execute(
                "UPDATE game_configs SET deleted_at = now() WHERE game_id = $1 AND deleted_at IS NULL",
                &[&id],
            )?;
            tx.execute(
                "UPDATE games SET deleted_at = now() WHERE game_id = $1",
                &[&id],
            )?;
        }
        DeleteScope::Config(id) => {
            tx.execute(
                "UPDATE game_configs SET deleted_at = now() WHERE config_id = $1",
                &[&id],
            )?;
        }
        DeleteScope::Deployment(_) => {}
    }
    tx.commit()
}
