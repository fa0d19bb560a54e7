//! The CLI's control-plane subcommands: each calls `manman.v1.ManManAPI` at `API_ADDRESS` and
//! prints a table (or JSON with `--json`). Exit codes: 0 ok, 1 failed, 4 not found,
//! 5 conflict (already exists / precondition), 65 invalid argument, 69 API unavailable,
//! 77 not allowed (no valid token, or its role is too weak).

use std::time::Duration;

use grpcio::{CallOption, RpcStatusCode};
use serde_json::{json, Value};

use super::output::{printable, table};
use crate::grpc::Endpoint;
use crate::proto::v1 as pb;
pub(crate) use crate::views::{config_json, deployment_json, host_json, json_time, session_json};

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

/// A failed call: the message for stderr and the exit code.
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl From<grpcio::Error> for Failure {
    fn from(e: grpcio::Error) -> Self {
        match e {
            grpcio::Error::RpcFailure(s) => {
                let code = match s.code() {
                    RpcStatusCode::INVALID_ARGUMENT => 65,
                    RpcStatusCode::NOT_FOUND => 4,
                    RpcStatusCode::ALREADY_EXISTS | RpcStatusCode::FAILED_PRECONDITION => 5,
                    RpcStatusCode::UNAVAILABLE | RpcStatusCode::DEADLINE_EXCEEDED => 69,
                    RpcStatusCode::UNAUTHENTICATED => 77,
                    RpcStatusCode::PERMISSION_DENIED => 77,
                    _ => 1,
                };
                Failure {
                    message: s.message().to_string(),
                    code,
                }
            }
            other => Failure {
                message: other.to_string(),
                code: 69,
            },
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { message, code: 65 }
    }
}

pub type Outcome = Result<(), Failure>;

pub(crate) fn when(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The one JSON shape of every list: `{"items": [...], "total": N}` (`total` counts every
/// match, which may be more than the items of one page).
pub(crate) fn json_list(items: Vec<Value>, total: usize) -> Value {
    json!({"items": items, "total": total})
}

/// A list: a table for people, `{"items", "total"}` with `--json`.
pub(crate) fn print(ctx: &Ctx, items: Vec<Value>, headers: &[&str], rows: Vec<Vec<String>>) {
    let total = items.len();
    print_page(ctx, items, total, headers, rows);
}

/// One page of a longer list (`total` counts every match).
pub(crate) fn print_page(
    ctx: &Ctx,
    items: Vec<Value>,
    total: usize,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) {
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_list(items, total)).expect("serialisable")
        );
    } else if rows.is_empty() {
        println!("(none)");
    } else {
        print!("{}", table(headers, &rows));
    }
}

const HOST_HEADERS: [&str; 4] = ["ID", "NAME", "STATUS", "LAST SEEN"];

fn host_row(s: &pb::Server) -> Vec<String> {
    vec![
        s.server_id.to_string(),
        s.name.clone(),
        s.status.clone(),
        when(s.last_seen_ms),
    ]
}

fn session_row(s: &pb::Session) -> Vec<String> {
    vec![
        s.session_id.to_string(),
        s.status.clone(),
        s.host.clone(),
        format!("{}/{}", s.game, s.config),
        s.sgc_id.to_string(),
        when(s.started_at_ms),
        when(s.ended_at_ms),
        if s.has_exit_code {
            s.exit_code.to_string()
        } else {
            "-".into()
        },
    ]
}

const SESSION_HEADERS: [&str; 8] = [
    "SESSION",
    "STATUS",
    "HOST",
    "GAME/CONFIG",
    "DEPLOYMENT",
    "STARTED",
    "ENDED",
    "EXIT",
];

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

/// The live sessions (the newest 500, and how many there are) of a host, or of all (0).
fn live_sessions(ctx: &Ctx, server_id: i64) -> Result<pb::ListSessionsResponse, Failure> {
    Ok(ctx.client.list_sessions_opt(
        &pb::ListSessionsRequest {
            server_id,
            live_only: true,
            limit: 500,
            ..Default::default()
        },
        ctx.opt(),
    )?)
}

fn hosts(ctx: &Ctx) -> Result<Vec<pb::Server>, Failure> {
    all_pages(|page_after| {
        let r = ctx.client.list_servers_opt(
            &pb::ListServersRequest {
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.servers, r.next_page_after))
    })
}

pub fn host_list(ctx: &Ctx) -> Outcome {
    let servers = hosts(ctx)?;
    let rows = servers.iter().map(host_row).collect();
    print(
        ctx,
        servers.iter().map(host_json).collect(),
        &HOST_HEADERS,
        rows,
    );
    Ok(())
}

/// Asks the host to stop every live session, then follows them until none is left.
pub fn host_drain(ctx: &Ctx, id: i64, timeout: Duration) -> Outcome {
    let r = ctx
        .client
        .drain_server_opt(&pb::DrainServerRequest { server_id: id }, ctx.opt())?;
    if !ctx.json {
        println!(
            "draining host {id}: {} session(s) stopping{}",
            r.stopping.len(),
            if r.failed.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} could not be asked: {}",
                    r.failed.len(),
                    r.failed.join("; ")
                )
            }
        );
    }
    let until = std::time::Instant::now() + timeout;
    let mut last_left = -1;
    let left = loop {
        let live = live_sessions(ctx, id)?;
        // The count and the rows are two queries: a session that ends between them can make
        // them disagree for one poll. Done only when both say none is left.
        let still = live.total.max(live.sessions.len() as i64);
        if still != last_left && !ctx.json {
            println!("  {still} session(s) still live");
            last_left = still;
        }
        let drained = live.total == 0 && live.sessions.is_empty();
        if drained || std::time::Instant::now() >= until {
            break live.sessions;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if ctx.json {
        println!(
            "{}",
            json!({"server_id": id, "stopping": r.stopping, "failed": r.failed,
                   "still_live": left.iter().map(|s| s.session_id).collect::<Vec<_>>()})
        );
    } else if left.is_empty() {
        println!("host {id} drained: no session left");
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            message: format!(
                "{} session(s) still live after {timeout:?}: {}",
                left.len(),
                left.iter()
                    .map(|s| s.session_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            code: 1,
        })
    }
}

pub fn game_create(ctx: &Ctx, name: &str) -> Outcome {
    let r = ctx
        .client
        .create_game_opt(&pb::CreateGameRequest { name: name.into() }, ctx.opt())?;
    show_game(ctx, r.game.unwrap_or_default(), "created");
    Ok(())
}

pub fn game_rename(ctx: &Ctx, id: i64, name: &str) -> Outcome {
    let r = ctx.client.update_game_opt(
        &pb::UpdateGameRequest {
            game_id: id,
            name: name.into(),
        },
        ctx.opt(),
    )?;
    show_game(ctx, r.game.unwrap_or_default(), "renamed");
    Ok(())
}

fn show_game(ctx: &Ctx, g: pb::Game, done: &str) {
    if ctx.json {
        println!("{}", json!({"game_id": g.game_id, "name": g.name}));
    } else {
        println!("{done} game {} ({})", g.game_id, g.name);
    }
}

pub fn game_list(ctx: &Ctx) -> Outcome {
    let games = all_pages(|page_after| {
        let r = ctx.client.list_games_opt(
            &pb::ListGamesRequest {
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.games, r.next_page_after))
    })?;
    let rows = games
        .iter()
        .map(|g| vec![g.game_id.to_string(), g.name.clone()])
        .collect();
    print(
        ctx,
        games
            .iter()
            .map(|g| json!({"game_id": g.game_id, "name": g.name}))
            .collect(),
        &["ID", "NAME"],
        rows,
    );
    Ok(())
}

pub fn config_create(
    ctx: &Ctx,
    mut config: pb::GameConfig,
    env: &EnvArgs,
    ports: &[String],
) -> Outcome {
    add_env_and_ports(&mut config, env, ports)?;
    let r = ctx.client.create_game_config_opt(
        &pb::CreateGameConfigRequest {
            config: Some(config),
        },
        ctx.opt(),
    )?;
    let c = r.config.unwrap_or_default();
    let line = format!(
        "created config {} ({}) for game {}",
        c.config_id, c.name, c.game_id
    );
    show_config(ctx, &c, &line);
    Ok(())
}

fn show_config(ctx: &Ctx, c: &pb::GameConfig, line: &str) {
    if ctx.json {
        println!("{}", config_json(c));
    } else {
        println!("{line}");
    }
}

pub fn config_update(
    ctx: &Ctx,
    id: i64,
    mut config: pb::GameConfig,
    env: &EnvArgs,
    ports: &[String],
) -> Outcome {
    add_env_and_ports(&mut config, env, ports)?;
    let r = ctx.client.update_game_config_opt(
        &pb::UpdateGameConfigRequest {
            config_id: id,
            config: Some(config),
        },
        ctx.opt(),
    )?;
    let c = r.config.unwrap_or_default();
    let line = format!(
        "updated config {} ({}) of game {}: the next session of each deployment runs it (`manman session restart` for one now)",
        c.config_id, c.name, c.game_id
    );
    show_config(ctx, &c, &line);
    Ok(())
}

/// A config's `--env KEY=VALUE` and `--secret-env KEY=VALUE` flags.
#[derive(Debug, Clone, Default)]
pub struct EnvArgs {
    pub plain: Vec<String>,
    pub secret: Vec<String>,
}

fn add_env_and_ports(config: &mut pb::GameConfig, env: &EnvArgs, ports: &[String]) -> Outcome {
    for (flag, list) in [("--env", &env.plain), ("--secret-env", &env.secret)] {
        for kv in list {
            // The value is not repeated in the error: it may be a secret.
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                format!(
                    "invalid {flag} value (expected KEY=VALUE; KEY is {:?})",
                    kv.split('=').next().unwrap_or("")
                )
            })?;
            config.env.insert(k.into(), v.into());
            if flag == "--secret-env" {
                config.secret_env_keys.push(k.into());
            }
        }
    }
    for p in ports {
        let (port, protocol) = crate::wire::ports::parse_port(p)?;
        config.ports.push(pb::PortDefinition { port, protocol });
    }
    Ok(())
}

pub fn config_list(ctx: &Ctx, game: Option<i64>) -> Outcome {
    let configs = all_pages(|page_after| {
        let r = ctx.client.list_game_configs_opt(
            &pb::ListGameConfigsRequest {
                game_id: game.unwrap_or(0),
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.configs, r.next_page_after))
    })?;
    let rows = configs
        .iter()
        .map(|c| {
            vec![
                c.config_id.to_string(),
                c.game_id.to_string(),
                c.name.clone(),
                format!("{} {}", c.program, c.args.join(" "))
                    .trim()
                    .to_string(),
                c.restart_policy.clone(),
            ]
        })
        .collect();
    print(
        ctx,
        configs.iter().map(config_json).collect(),
        &["ID", "GAME", "NAME", "COMMAND", "RESTART"],
        rows,
    );
    Ok(())
}

/// A config's probe in words, for `config show`.
fn probe_words(c: &pb::GameConfig, which: &str) -> String {
    let secs = |v: Option<i32>| v.map_or("-".into(), |s| format!("{s} s"));
    match (which, &c.readiness, &c.liveness) {
        ("readiness", Some(r), _) => {
            let check = match r.tcp_port {
                0 => format!("console line matching {:?}", r.console_pattern),
                port => format!("127.0.0.1:{port} accepting"),
            };
            format!("{check}, within {}", secs(r.timeout_seconds))
        }
        ("liveness", _, Some(l)) => {
            let check = match l.tcp_port {
                0 => format!("{:?} answered by {:?}", l.command, l.reply_pattern),
                port => format!("127.0.0.1:{port} accepting"),
            };
            format!(
                "{check}, every {} within {}; {} failures in a row stop it",
                secs(l.interval_seconds),
                secs(l.timeout_seconds),
                l.failure_threshold.unwrap_or_default()
            )
        }
        _ => "-".into(),
    }
}

pub fn config_show(ctx: &Ctx, id: i64) -> Outcome {
    let r = ctx
        .client
        .get_game_config_opt(&pb::GetGameConfigRequest { config_id: id }, ctx.opt())?;
    let config = r.config.unwrap_or_default();
    let c = config_json(&config);
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&c).expect("serialisable")
        );
    } else if let Value::Object(fields) = c {
        let rows: Vec<Vec<String>> = fields
            .into_iter()
            .map(|(k, v)| {
                let value = match (k.as_str(), v) {
                    ("readiness", Value::Null) => "start duration".into(),
                    ("liveness", Value::Null) => "none".into(),
                    ("readiness" | "liveness", _) => probe_words(&config, &k),
                    (_, Value::String(s)) => s,
                    (_, other) => other.to_string(),
                };
                vec![k, value]
            })
            .collect();
        print!("{}", table(&["FIELD", "VALUE"], &rows));
    }
    Ok(())
}

/// `--port HOST[:CONTAINER][/PROTOCOL]`.
/// `deploy`: on `server` (0: the API places it), with `ports` as the operator wrote them.
pub fn deploy(ctx: &Ctx, server: i64, config: i64, ports: &[String]) -> Outcome {
    let mut bindings = Vec::new();
    for p in ports {
        if p == "auto" {
            // Every port the config defines, each on a free host port (0 = the API picks).
            let c = ctx
                .client
                .get_game_config_opt(&pb::GetGameConfigRequest { config_id: config }, ctx.opt())?
                .config
                .unwrap_or_default();
            bindings.extend(c.ports.iter().map(|d| pb::PortBinding {
                host_port: 0,
                container_port: d.port,
                protocol: d.protocol.clone(),
            }));
            continue;
        }
        let (spec, protocol) = crate::wire::ports::split_protocol(p);
        let (host, container) = spec.split_once(':').unwrap_or((spec, spec));
        let parse = |s: &str| {
            s.parse::<i32>().map_err(|_| {
                format!("invalid --port {p:?} (expected HOST[:CONTAINER][/PROTOCOL], auto or auto:CONTAINER)")
            })
        };
        bindings.push(pb::PortBinding {
            host_port: if host == "auto" { 0 } else { parse(host)? },
            container_port: parse(container)?,
            protocol: protocol.into(),
        });
    }
    let r = ctx.client.deploy_game_config_opt(
        &pb::DeployGameConfigRequest {
            server_id: server,
            config_id: config,
            ports: bindings,
        },
        ctx.opt(),
    )?;
    let d = r.deployment.unwrap_or_default();
    if ctx.json {
        let mut value = deployment_json(&d);
        value["updated"] = json!(r.updated);
        value["placed"] = json!(r.placed);
        println!("{value}");
    } else if r.updated {
        println!(
            "updated deployment {} (config {} on server {}): its port bindings are now {}",
            d.sgc_id,
            d.config_id,
            d.server_id,
            ports_text(&d)
        );
    } else {
        let placed = if r.placed {
            ", chosen for its free memory"
        } else {
            ""
        };
        println!(
            "deployment {} (config {} on server {}{placed}), ports {}",
            d.sgc_id,
            d.config_id,
            d.server_id,
            ports_text(&d)
        );
    }
    Ok(())
}

fn ports_text(d: &pb::Deployment) -> String {
    if d.ports.is_empty() {
        return "none".into();
    }
    d.ports
        .iter()
        .map(|p| format!("{}:{}/{}", p.host_port, p.container_port, p.protocol))
        .collect::<Vec<_>>()
        .join(" ")
}

const DEPLOYMENT_HEADERS: [&str; 5] = ["DEPLOYMENT", "SERVER", "CONFIG", "STATUS", "PORTS"];

fn deployment_row(d: &pb::Deployment) -> Vec<String> {
    vec![
        d.sgc_id.to_string(),
        d.server_id.to_string(),
        d.config_id.to_string(),
        d.status.clone(),
        ports_text(d),
    ]
}

fn deployments(
    ctx: &Ctx,
    server: Option<i64>,
    config: Option<i64>,
) -> Result<Vec<pb::Deployment>, Failure> {
    all_pages(|page_after| {
        let r = ctx.client.list_deployments_opt(
            &pb::ListDeploymentsRequest {
                server_id: server.unwrap_or(0),
                config_id: config.unwrap_or(0),
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.deployments, r.next_page_after))
    })
}

/// What `delete` removes.
#[derive(Debug, Clone, Copy)]
pub enum Deletable {
    Game,
    Config,
    Deployment,
}

pub fn delete(ctx: &Ctx, what: Deletable, id: i64, force: bool) -> Outcome {
    let req = pb::DeleteRequest { id, force };
    let (noun, reply) = match what {
        Deletable::Game => ("game", ctx.client.delete_game_opt(&req, ctx.opt())?),
        Deletable::Config => (
            "config",
            ctx.client.delete_game_config_opt(&req, ctx.opt())?,
        ),
        Deletable::Deployment => (
            "deployment",
            ctx.client.delete_deployment_opt(&req, ctx.opt())?,
        ),
    };
    if ctx.json {
        println!(
            "{}",
            json!({"deleted": noun, "id": id, "stopped_sessions": reply.stopped_sessions})
        );
    } else if reply.stopped_sessions.is_empty() {
        println!("deleted {noun} {id}");
    } else {
        let ids: Vec<String> = reply.stopped_sessions.iter().map(i64::to_string).collect();
        println!(
            "deleted {noun} {id}; stopping session(s) {} (see `manman session show`)",
            ids.join(", ")
        );
    }
    Ok(())
}

pub fn deploy_list(ctx: &Ctx, server: Option<i64>, config: Option<i64>) -> Outcome {
    let list = deployments(ctx, server, config)?;
    print(
        ctx,
        list.iter().map(deployment_json).collect(),
        &DEPLOYMENT_HEADERS,
        list.iter().map(deployment_row).collect(),
    );
    Ok(())
}

/// One host, its deployments and its live sessions.
pub fn host_show(ctx: &Ctx, id: i64) -> Outcome {
    let host = ctx
        .client
        .get_server_opt(&pb::GetServerRequest { server_id: id }, ctx.opt())?
        .server
        .unwrap_or_default();
    let deployed = deployments(ctx, Some(id), None)?;
    let live = live_sessions(ctx, id)?;
    if ctx.json {
        let mut value = host_json(&host);
        value["deployments"] = json!(deployed.iter().map(deployment_json).collect::<Vec<_>>());
        value["live_sessions"] = json!(live.sessions.iter().map(session_json).collect::<Vec<_>>());
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("serialisable")
        );
        return Ok(());
    }
    print!("{}", table(&HOST_HEADERS, &[host_row(&host)]));
    let gib = |b: i64| b as f64 / f64::from(1u32 << 30);
    if host.memory_total_bytes > 0 {
        println!(
            "\nmemory: {:.1} GiB available of {:.1} GiB   ports for --port auto: {}-{}",
            gib(host.memory_available_bytes),
            gib(host.memory_total_bytes),
            host.port_range_low,
            host.port_range_high
        );
    }
    let rows: Vec<Vec<String>> = deployed.iter().map(deployment_row).collect();
    if rows.is_empty() {
        println!("\nno deployments");
    } else {
        print!("\n{}", table(&DEPLOYMENT_HEADERS, &rows));
    }
    let rows: Vec<Vec<String>> = live.sessions.iter().map(session_row).collect();
    if rows.is_empty() {
        println!("\nno live sessions");
    } else {
        print!("\n{}", table(&SESSION_HEADERS, &rows));
    }
    Ok(())
}

fn show_session(ctx: &Ctx, verb: &str, s: &pb::Session) {
    if ctx.json {
        println!("{}", session_json(s));
    } else {
        println!(
            "{verb} session {} ({} on {}): {}",
            s.session_id, s.game, s.host, s.status
        );
    }
}

pub fn session_start(ctx: &Ctx, sgc: i64, force: bool) -> Outcome {
    let r = ctx
        .client
        .start_session_opt(&pb::StartSessionRequest { sgc_id: sgc, force }, ctx.opt())?;
    show_session(ctx, "started", &r.session.unwrap_or_default());
    Ok(())
}

pub fn session_stop(ctx: &Ctx, id: i64, kill: bool, force: bool) -> Outcome {
    let r = ctx.client.stop_session_opt(
        &pb::StopSessionRequest {
            session_id: id,
            kill,
            force,
        },
        ctx.opt(),
    )?;
    let verb = match (force, kill) {
        (true, _) => "ended",
        (false, true) => "killing",
        (false, false) => "stopping",
    };
    show_session(ctx, verb, &r.session.unwrap_or_default());
    Ok(())
}

/// Stops the session (console stop command first), waits until it has ended, and starts the
/// same deployment again.
pub fn session_restart(ctx: &Ctx, id: i64, timeout: Duration) -> Outcome {
    let get = |id| -> Result<pb::Session, Failure> {
        Ok(ctx
            .client
            .get_session_opt(&pb::GetSessionRequest { session_id: id }, ctx.opt())?
            .session
            .unwrap_or_default())
    };
    let mut old = get(id)?;
    if is_live(&old.status) {
        ctx.client.stop_session_opt(
            &pb::StopSessionRequest {
                session_id: id,
                kill: false,
                force: false,
            },
            ctx.opt(),
        )?;
        if !ctx.json {
            eprintln!("stopping session {id} ({} on {})…", old.game, old.host);
        }
        let until = std::time::Instant::now() + timeout;
        while is_live(&old.status) {
            if std::time::Instant::now() >= until {
                return Err(Failure {
                    message: format!(
                        "session {id} is still {} after {} s; not started again",
                        old.status,
                        timeout.as_secs()
                    ),
                    code: 1,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
            old = get(id)?;
        }
    }
    let new = ctx
        .client
        .start_session_opt(
            &pb::StartSessionRequest {
                sgc_id: old.sgc_id,
                force: false,
            },
            ctx.opt(),
        )?
        .session
        .unwrap_or_default();
    if ctx.json {
        println!(
            "{}",
            json!({"stopped": session_json(&old), "started": session_json(&new)})
        );
    } else {
        println!(
            "session {id} {} (exit {}); started session {} of deployment {}: {}",
            old.status,
            if old.has_exit_code {
                old.exit_code.to_string()
            } else {
                "-".into()
            },
            new.session_id,
            new.sgc_id,
            new.status
        );
    }
    Ok(())
}

fn is_live(status: &str) -> bool {
    status
        .parse::<crate::wire::SessionStatus>()
        .is_ok_and(|s| !s.is_terminal())
}

pub fn session_input(ctx: &Ctx, id: i64, input: &str) -> Outcome {
    ctx.client.send_input_opt(
        &pb::SendInputRequest {
            session_id: id,
            input: input.into(),
        },
        ctx.opt(),
    )?;
    if !ctx.json {
        println!("sent to session {id}");
    }
    Ok(())
}

pub fn session_show(ctx: &Ctx, id: i64) -> Outcome {
    let r = ctx
        .client
        .get_session_opt(&pb::GetSessionRequest { session_id: id }, ctx.opt())?;
    let s = r.session.unwrap_or_default();
    if ctx.json {
        println!("{}", session_json(&s));
        return Ok(());
    }
    print!("{}", table(&SESSION_HEADERS, &[session_row(&s)]));
    let last_exit = if s.has_last_exit_code {
        let why = Some(&s.last_exit_reason)
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({})", printable(r)))
            .unwrap_or_default();
        format!("{} at {}{why}", s.last_exit_code, when(s.last_exit_at_ms))
    } else {
        "-".into()
    };
    println!("\nrestarts: {}   last exit: {last_exit}", s.restart_count);
    if !s.reason.is_empty() {
        println!("reason: {}", printable(&s.reason));
    }
    if s.sampled_at_ms > 0 {
        println!(
            "cpu {:.1}%   memory {:.1} MiB   threads {}   open files {}   processes {}   (sampled {})",
            s.cpu_percent,
            s.rss_bytes as f64 / (1024.0 * 1024.0),
            s.threads,
            s.open_files,
            s.processes,
            when(s.sampled_at_ms)
        );
    }
    Ok(())
}

pub fn session_list(ctx: &Ctx, req: pb::ListSessionsRequest) -> Outcome {
    let r = ctx.client.list_sessions_opt(&req, ctx.opt())?;
    let rows = r.sessions.iter().map(session_row).collect();
    print_page(
        ctx,
        r.sessions.iter().map(session_json).collect(),
        r.total.max(0) as usize,
        &SESSION_HEADERS,
        rows,
    );
    if !ctx.json && r.next_page_after > 0 {
        println!(
            "({} of {} shown; the next page: --after {})",
            r.sessions.len(),
            r.total,
            r.next_page_after
        );
    }
    Ok(())
}

/// Hosts and live sessions at a glance.
pub fn status(ctx: &Ctx) -> Outcome {
    let servers = hosts(ctx)?;
    let live = live_sessions(ctx, 0)?;
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "hosts": servers.iter().map(host_json).collect::<Vec<_>>(),
                "live_sessions": live.sessions.iter().map(session_json).collect::<Vec<_>>(),
            }))
            .expect("serialisable")
        );
        return Ok(());
    }
    let online = servers.iter().filter(|h| h.status == "online").count();
    println!(
        "hosts: {} ({} online)   live sessions: {}",
        servers.len(),
        online,
        live.total
    );
    if !servers.is_empty() {
        let rows: Vec<Vec<String>> = servers.iter().map(host_row).collect();
        print!("\n{}", table(&HOST_HEADERS, &rows));
    }
    if !live.sessions.is_empty() {
        // What each live game is doing, from its host's latest heartbeat.
        let rows: Vec<Vec<String>> = live
            .sessions
            .iter()
            .map(|s| {
                let (cpu, memory) = match s.sampled_at_ms {
                    0 => ("-".into(), "-".into()),
                    _ => (
                        format!("{:.1}%", s.cpu_percent),
                        format!("{:.1} MiB", s.rss_bytes as f64 / (1024.0 * 1024.0)),
                    ),
                };
                vec![
                    s.session_id.to_string(),
                    s.status.clone(),
                    s.host.clone(),
                    format!("{}/{}", s.game, s.config),
                    when(s.started_at_ms),
                    s.restart_count.to_string(),
                    cpu,
                    memory,
                ]
            })
            .collect();
        let headers = [
            "SESSION",
            "STATUS",
            "HOST",
            "GAME/CONFIG",
            "STARTED",
            "RESTARTS",
            "CPU",
            "MEMORY",
        ];
        print!("\n{}", table(&headers, &rows));
    }
    Ok(())
}
