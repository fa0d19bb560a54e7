//! The `manman.v1.ManManAPI` operations: validation, the catalog, sessions, and host commands
//! by request/reply. Each RPC is a plain function returning `Result<_, ApiError>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use grpcio::{RpcContext, UnarySink};

use super::error::ApiError;
use crate::bus::{OutgoingMessage, RpcClient, RpcError};
use crate::db::catalog::{self, ConfigRow, HostRow};
use crate::db::sessions::{self, ListFilter, SessionView, StartConflict};
use crate::db::DbPool;
use crate::logstore::ObjectStore;
use crate::procman::parse_signal;
use crate::proto::v1 as pb;
use crate::wire::commands::{
    CommandKind, CommandReply, PortBinding, SendInput, SessionRef, StartSession,
};
use crate::wire::{routing, SessionStatus};

const MAX_PAGE: i32 = 500;

#[derive(Clone)]
pub struct ApiService {
    inner: Arc<Inner>,
}

struct Inner {
    pool: DbPool,
    rpc: RpcClient,
    command_timeout: Duration,
    archive: Option<ObjectStore>,
    metrics: ApiMetrics,
}

/// Requests by method and outcome, and their latency, for `/metrics`.
#[derive(Default)]
pub struct ApiMetrics {
    requests: std::sync::Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: crate::metrics::Histogram,
}

impl ApiMetrics {
    fn record<T>(&self, method: &'static str, result: &Result<T, ApiError>, took: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.code_name(),
        };
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method, outcome))
            .or_default() += 1;
        self.latency.observe(took);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let samples: Vec<(String, u64)> = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((m, o), n)| (format!("method=\"{m}\",outcome=\"{o}\""), *n))
            .collect();
        let refs: Vec<(&str, u64)> = samples.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        crate::metrics::render_sample(
            &mut out,
            "manman_api_requests_total",
            "counter",
            "gRPC requests by method and outcome (ok or the status code).",
            &refs,
        );
        self.latency.render(
            &mut out,
            "manman_api_request_seconds",
            "Time to handle one gRPC request.",
        );
        out
    }
}

fn millis(t: Option<chrono::DateTime<chrono::Utc>>) -> i64 {
    t.map(|t| t.timestamp_millis()).unwrap_or(0)
}

fn host_pb(h: HostRow) -> pb::Server {
    pb::Server {
        server_id: h.server_id,
        name: h.name,
        status: h.status,
        last_seen_ms: millis(h.last_seen),
    }
}

fn config_pb(c: ConfigRow) -> pb::GameConfig {
    let ports: Vec<pb::PortDefinition> =
        serde_json::from_value::<Vec<serde_json::Value>>(c.port_definitions)
            .unwrap_or_default()
            .iter()
            .map(|p| pb::PortDefinition {
                port: p["port"].as_i64().unwrap_or(0) as i32,
                protocol: p["protocol"].as_str().unwrap_or("tcp").to_string(),
            })
            .collect();
    pb::GameConfig {
        config_id: c.config_id,
        game_id: c.game_id,
        name: c.name,
        program: c.command,
        args: c.args,
        env: c.env.into_iter().collect(),
        working_dir: c.working_dir.unwrap_or_default(),
        stop_signal: c.stop_signal,
        stop_command: c.stop_command.unwrap_or_default(),
        stop_timeout_seconds: c.stop_timeout_seconds,
        restart_policy: c.restart_policy,
        start_duration_ms: c.start_duration_ms,
        ports,
    }
}

fn session_pb(s: SessionView) -> pb::Session {
    pb::Session {
        session_id: s.session_id,
        sgc_id: s.sgc_id,
        server_id: s.server_id,
        status: s.status,
        started_at_ms: millis(s.started_at),
        ended_at_ms: millis(s.ended_at),
        has_exit_code: s.exit_code.is_some(),
        exit_code: s.exit_code.unwrap_or(0),
        created_at_ms: s.created_at.timestamp_millis(),
        host: s.host,
        game: s.game,
        config: s.config,
    }
}

fn valid_name(what: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::InvalidArgument(format!(
            "{what} must be 1 to 100 characters"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ApiError::InvalidArgument(format!(
            "{what} {name:?} may only contain letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(name.to_string())
}

fn positive_id(what: &str, id: i64) -> Result<i64, ApiError> {
    if id <= 0 {
        return Err(ApiError::InvalidArgument(format!(
            "{what} must be a positive id"
        )));
    }
    Ok(id)
}

fn valid_protocol(p: &str) -> Result<String, ApiError> {
    match p {
        "" | "tcp" => Ok("tcp".into()),
        "udp" => Ok("udp".into()),
        other => Err(ApiError::InvalidArgument(format!(
            "protocol {other:?} must be tcp or udp"
        ))),
    }
}

fn valid_port(what: &str, port: i32) -> Result<i32, ApiError> {
    if !(1..=65535).contains(&port) {
        return Err(ApiError::InvalidArgument(format!(
            "{what} {port} is not between 1 and 65535"
        )));
    }
    Ok(port)
}

/// Answers through the sink (the only place futures appear: grpcio's completion queue runs them).
pub(crate) fn respond<T: Send + 'static>(
    ctx: &RpcContext,
    sink: UnarySink<T>,
    result: Result<T, ApiError>,
) {
    let reply = match result {
        Ok(value) => sink.success(value),
        Err(e) => {
            if matches!(e, ApiError::Internal(_) | ApiError::Unavailable(_)) {
                log::warn!("request failed: {e}");
            }
            sink.fail(e.status())
        }
    };
    ctx.spawn(reply.map(|r| {
        if let Err(e) = r {
            log::debug!("reply not delivered: {e}");
        }
    }));
}

impl ApiService {
    pub fn new(
        pool: DbPool,
        rpc: RpcClient,
        command_timeout: Duration,
        archive: Option<ObjectStore>,
    ) -> Self {
        ApiService {
            inner: Arc::new(Inner {
                pool,
                rpc,
                command_timeout,
                archive,
                metrics: ApiMetrics::default(),
            }),
        }
    }

    pub fn metrics(&self) -> String {
        self.inner.metrics.render()
    }

    fn db(&self) -> Result<crate::db::PooledConnection, ApiError> {
        Ok(self.inner.pool.get()?)
    }

    pub fn register_server(
        &self,
        req: pb::RegisterServerRequest,
    ) -> Result<pb::RegisterServerResponse, ApiError> {
        let name = valid_name("server name", &req.name)?;
        let (host, created) = catalog::register_host(&mut *self.db()?, &name)?;
        if created {
            log::info!(server_id = host.server_id, name = name.as_str(); "host registered");
        }
        Ok(pb::RegisterServerResponse {
            server: Some(host_pb(host)),
            created,
        })
    }

    pub fn list_servers(&self) -> Result<pb::ListServersResponse, ApiError> {
        Ok(pb::ListServersResponse {
            servers: catalog::list_hosts(&mut *self.db()?)?
                .into_iter()
                .map(host_pb)
                .collect(),
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

    pub fn list_games(&self) -> Result<pb::ListGamesResponse, ApiError> {
        Ok(pb::ListGamesResponse {
            games: catalog::list_games(&mut *self.db()?)?
                .into_iter()
                .map(|(game_id, name)| pb::Game { game_id, name })
                .collect(),
        })
    }

    pub fn create_game_config(
        &self,
        req: pb::CreateGameConfigRequest,
    ) -> Result<pb::CreateGameConfigResponse, ApiError> {
        let c = req
            .config
            .ok_or_else(|| ApiError::InvalidArgument("config is required".into()))?;
        let game_id = positive_id("game_id", c.game_id)?;
        let name = valid_name("config name", &c.name)?;
        if c.program.trim().is_empty() {
            return Err(ApiError::InvalidArgument("program is required".into()));
        }
        let stop_signal = if c.stop_signal.is_empty() {
            "SIGTERM".to_string()
        } else {
            c.stop_signal.clone()
        };
        parse_signal(&stop_signal).map_err(ApiError::InvalidArgument)?;
        let restart_policy = if c.restart_policy.is_empty() {
            "never".to_string()
        } else {
            c.restart_policy.clone()
        };
        restart_policy
            .parse::<crate::procman::RestartPolicy>()
            .map_err(ApiError::InvalidArgument)?;
        if c.stop_timeout_seconds < 0 || c.start_duration_ms < 0 {
            return Err(ApiError::InvalidArgument(
                "timeouts and durations cannot be negative".into(),
            ));
        }
        let mut ports = Vec::new();
        for p in &c.ports {
            ports.push(serde_json::json!({
                "port": valid_port("port", p.port)?,
                "protocol": valid_protocol(&p.protocol)?,
            }));
        }
        let mut db = self.db()?;
        if !catalog::game_exists(&mut *db, game_id)? {
            return Err(ApiError::NotFound(format!("no game with id {game_id}")));
        }
        let row = ConfigRow {
            config_id: 0,
            game_id,
            name: name.clone(),
            command: c.program,
            args: c.args,
            env: c.env.into_iter().collect::<BTreeMap<_, _>>(),
            working_dir: Some(c.working_dir).filter(|d| !d.is_empty()),
            stop_signal,
            stop_command: Some(c.stop_command).filter(|s| !s.is_empty()),
            stop_timeout_seconds: if c.stop_timeout_seconds == 0 {
                30
            } else {
                c.stop_timeout_seconds
            },
            restart_policy,
            start_duration_ms: c.start_duration_ms,
            port_definitions: serde_json::Value::Array(ports),
        };
        let created = catalog::create_config(&mut *db, &row)?.ok_or_else(|| {
            ApiError::AlreadyExists(format!(
                "game {game_id} already has a config named {name:?}"
            ))
        })?;
        Ok(pb::CreateGameConfigResponse {
            config: Some(config_pb(created)),
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
        Ok(pb::ListGameConfigsResponse {
            configs: catalog::list_configs(&mut *self.db()?, game)?
                .into_iter()
                .map(config_pb)
                .collect(),
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
        let server_id = positive_id("server_id", req.server_id)?;
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
                host_port: valid_port("host port", p.host_port)?,
                protocol: valid_protocol(&p.protocol)?,
            };
            if ports.iter().any(|b: &PortBinding| {
                b.host_port == binding.host_port && b.protocol == binding.protocol
            }) {
                return Err(ApiError::InvalidArgument(format!(
                    "host port {} is bound twice",
                    binding.host_port
                )));
            }
            ports.push(binding);
        }
        let mut db = self.db()?;
        if catalog::get_host(&mut *db, server_id)?.is_none() {
            return Err(ApiError::NotFound(format!("no server with id {server_id}")));
        }
        if catalog::get_config(&mut *db, config_id)?.is_none() {
            return Err(ApiError::NotFound(format!(
                "no game config with id {config_id}"
            )));
        }
        let d = catalog::deploy(&mut *db, server_id, config_id, &ports)?;
        Ok(pb::DeployGameConfigResponse {
            deployment: Some(pb::Deployment {
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
            }),
        })
    }

    pub fn list_sessions(
        &self,
        req: pb::ListSessionsRequest,
    ) -> Result<pb::ListSessionsResponse, ApiError> {
        if req.server_id < 0
            || req.sgc_id < 0
            || req.offset < 0
            || !(0..=MAX_PAGE).contains(&req.limit)
        {
            return Err(ApiError::InvalidArgument(format!(
                "ids and offset must not be negative; limit must be 0 (default 50) to {MAX_PAGE}"
            )));
        }
        let mut statuses: Vec<SessionStatus> = Vec::new();
        for s in req
            .status
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            statuses.push(s.parse().map_err(ApiError::InvalidArgument)?);
        }
        if req.live_only {
            statuses = if statuses.is_empty() {
                SessionStatus::LIVE.to_vec()
            } else {
                statuses.into_iter().filter(|s| s.is_live()).collect()
            };
            if statuses.is_empty() {
                return Ok(pb::ListSessionsResponse {
                    sessions: Vec::new(),
                    total: 0,
                });
            }
        }
        let filter = ListFilter {
            server_id: Some(req.server_id).filter(|i| *i > 0),
            sgc_id: Some(req.sgc_id).filter(|i| *i > 0),
            statuses,
            limit: if req.limit == 0 { 50 } else { req.limit as i64 },
            offset: req.offset as i64,
        };
        let (views, total) = sessions::list_views(&mut *self.db()?, &filter)?;
        Ok(pb::ListSessionsResponse {
            sessions: views.into_iter().map(session_pb).collect(),
            total,
        })
    }

    fn session(&self, id: i64) -> Result<SessionView, ApiError> {
        let id = positive_id("session_id", id)?;
        sessions::get_view(&mut *self.db()?, id)?
            .ok_or_else(|| ApiError::NotFound(format!("no session with id {id}")))
    }

    pub fn get_session(
        &self,
        req: pb::GetSessionRequest,
    ) -> Result<pb::GetSessionResponse, ApiError> {
        Ok(pb::GetSessionResponse {
            session: Some(session_pb(self.session(req.session_id)?)),
        })
    }

    /// Sends a command to a host and waits for its reply.
    fn command(
        &self,
        server_id: i64,
        kind: CommandKind,
        body: serde_json::Value,
    ) -> Result<(), ApiError> {
        let message = OutgoingMessage::json(
            routing::MANMAN_EXCHANGE,
            &kind.routing_key(server_id),
            &body,
        );
        let raw = self
            .inner
            .rpc
            .call(message, self.inner.command_timeout)
            .map_err(|e| match e {
                RpcError::Timeout(t) => {
                    ApiError::Unavailable(format!("host {server_id} did not answer within {t:?}"))
                }
                RpcError::Unavailable(m) => ApiError::Unavailable(m),
            })?;
        let reply: CommandReply = serde_json::from_slice(&raw).map_err(|e| {
            ApiError::Internal(format!("host {server_id} sent a malformed reply: {e}"))
        })?;
        if reply.success {
            Ok(())
        } else {
            Err(ApiError::FailedPrecondition(format!(
                "host {server_id} refused: {}",
                reply.error.unwrap_or_else(|| "no reason given".into())
            )))
        }
    }

    pub fn start_session(
        &self,
        req: pb::StartSessionRequest,
    ) -> Result<pb::StartSessionResponse, ApiError> {
        let sgc_id = positive_id("sgc_id", req.sgc_id)?;
        let mut db = self.db()?;
        let d = catalog::get_deployment(&mut *db, sgc_id)?
            .ok_or_else(|| ApiError::NotFound(format!("no deployment with id {sgc_id}")))?;
        let c = catalog::get_config(&mut *db, d.config_id)?
            .ok_or_else(|| ApiError::NotFound(format!("deployment {sgc_id} has no config")))?;
        let session_id = match sessions::create_pending(&mut *db, sgc_id, d.server_id, &d.ports, req.force)? {
            Ok(id) => id,
            Err(StartConflict::LiveSession(id)) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "deployment {sgc_id} already has live session {id} (stop it, or start with force)"
                )))
            }
            Err(StartConflict::PortTaken { port, protocol }) => {
                return Err(ApiError::AlreadyExists(format!(
                    "port {port}/{protocol} on server {} is held by another live session",
                    d.server_id
                )))
            }
        };
        let command = StartSession {
            session_id,
            sgc_id,
            program: c.command,
            args: c.args,
            env: c.env,
            working_dir: c.working_dir,
            stop_signal: c.stop_signal,
            stop_command: c.stop_command,
            stop_timeout_seconds: c.stop_timeout_seconds.max(1) as u32,
            restart_policy: c.restart_policy,
            start_duration_ms: c.start_duration_ms.max(0) as u32,
            ports: d.ports,
        };
        drop(db);
        if let Err(e) = self.command(
            d.server_id,
            CommandKind::Start,
            serde_json::to_value(&command).expect("serialisable"),
        ) {
            // Never leave it pending: a session the host did not take is lost.
            let lost =
                sessions::mark_lost_if_pending(&mut *self.db()?, session_id, &e.to_string())?;
            log::warn!(session_id = session_id, lost = lost; "session start failed: {e}");
            return Err(e);
        }
        Ok(pb::StartSessionResponse {
            session: Some(session_pb(self.session(session_id)?)),
        })
    }

    pub fn stop_session(
        &self,
        req: pb::StopSessionRequest,
    ) -> Result<pb::StopSessionResponse, ApiError> {
        let s = self.session(req.session_id)?;
        let status: SessionStatus = s.status.parse().map_err(ApiError::Internal)?;
        if status.is_terminal() {
            return Err(ApiError::FailedPrecondition(format!(
                "session {} is already {status}",
                s.session_id
            )));
        }
        let kind = if req.kill {
            CommandKind::Kill
        } else {
            CommandKind::Stop
        };
        self.command(
            s.server_id,
            kind,
            serde_json::to_value(SessionRef {
                session_id: s.session_id,
            })
            .expect("serialisable"),
        )?;
        Ok(pb::StopSessionResponse {
            session: Some(session_pb(self.session(s.session_id)?)),
        })
    }

    pub fn send_input(&self, req: pb::SendInputRequest) -> Result<pb::SendInputResponse, ApiError> {
        if req.input.is_empty() {
            return Err(ApiError::InvalidArgument("input must not be empty".into()));
        }
        let s = self.session(req.session_id)?;
        if !matches!(s.status.as_str(), "starting" | "running") {
            return Err(ApiError::FailedPrecondition(format!(
                "session {} is {}; input needs a starting or running session",
                s.session_id, s.status
            )));
        }
        let mut input = req.input;
        if !input.ends_with('\n') {
            input.push('\n');
        }
        self.command(
            s.server_id,
            CommandKind::SendInput,
            serde_json::to_value(SendInput {
                session_id: s.session_id,
                input,
            })
            .expect("serialisable"),
        )?;
        Ok(pb::SendInputResponse {})
    }
}

macro_rules! rpc {
    ($($name:ident($req:ty) -> $resp:ty => |$s:ident, $r:ident| $body:expr;)*) => {
        impl pb::ManManApi for ApiService {
            $(
                fn $name(&mut self, ctx: RpcContext, $r: $req, sink: UnarySink<$resp>) {
                    let started = std::time::Instant::now();
                    let $s = &*self;
                    let result = $body;
                    $s.inner.metrics.record(stringify!($name), &result, started.elapsed());
                    respond(&ctx, sink, result);
                }
            )*
        }
    };
}

rpc! {
    register_server(pb::RegisterServerRequest) -> pb::RegisterServerResponse => |s, r| s.register_server(r);
    list_servers(pb::ListServersRequest) -> pb::ListServersResponse => |s, _r| s.list_servers();
    get_server(pb::GetServerRequest) -> pb::GetServerResponse => |s, r| s.get_server(r);
    create_game(pb::CreateGameRequest) -> pb::CreateGameResponse => |s, r| s.create_game(r);
    list_games(pb::ListGamesRequest) -> pb::ListGamesResponse => |s, _r| s.list_games();
    create_game_config(pb::CreateGameConfigRequest) -> pb::CreateGameConfigResponse => |s, r| s.create_game_config(r);
    list_game_configs(pb::ListGameConfigsRequest) -> pb::ListGameConfigsResponse => |s, r| s.list_game_configs(r);
    get_game_config(pb::GetGameConfigRequest) -> pb::GetGameConfigResponse => |s, r| s.get_game_config(r);
    deploy_game_config(pb::DeployGameConfigRequest) -> pb::DeployGameConfigResponse => |s, r| s.deploy_game_config(r);
    list_sessions(pb::ListSessionsRequest) -> pb::ListSessionsResponse => |s, r| s.list_sessions(r);
    get_session(pb::GetSessionRequest) -> pb::GetSessionResponse => |s, r| s.get_session(r);
    start_session(pb::StartSessionRequest) -> pb::StartSessionResponse => |s, r| s.start_session(r);
    stop_session(pb::StopSessionRequest) -> pb::StopSessionResponse => |s, r| s.stop_session(r);
    send_input(pb::SendInputRequest) -> pb::SendInputResponse => |s, r| s.send_input(r);
    get_historical_logs(pb::GetHistoricalLogsRequest) -> pb::GetHistoricalLogsResponse => |s, r|
        super::history::historical_logs(&s.inner.pool, s.inner.archive.as_ref(), r);
}
