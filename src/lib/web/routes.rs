//! The dashboard's HTTP layer: static assets, login, the JSON routes the page calls, and the
//! hand-over of live consoles to their own threads. Every JSON route but login needs a login
//! cookie; every state-changing one also its CSRF token. Errors are `{"error": "..."}` with the
//! status the API's answer maps to.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, RpcStatusCode};
use serde_json::{json, Value};
use tiny_http::{Method, Request, Response};

use super::assets;
use super::console;
use super::logins::{cookie_value, set_cookie, Login, Logins, COOKIE};
use super::WebConfig;
use crate::http::{self, header, query_params, JsonResponse};
use crate::proto::v1 as pb;
use crate::slots::Slots;
use crate::views::{config_json, deployment_json, host_json, session_json};

/// What a request body may hold (a config is the largest thing the page sends).
/// API calls from the page wait this long at most.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Every answer carries these: no inline script may run (a game's console line is text,
/// never markup, and even injected markup could not execute), no framing, no sniffing.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
];

/// A request failed: the status and what to tell the page.
#[derive(Debug)]
pub(super) struct Failure(pub u16, pub String);

impl From<grpcio::Error> for Failure {
    fn from(e: grpcio::Error) -> Failure {
        match e {
            grpcio::Error::RpcFailure(s) => {
                let status = match s.code() {
                    RpcStatusCode::INVALID_ARGUMENT | RpcStatusCode::OUT_OF_RANGE => 400,
                    RpcStatusCode::UNAUTHENTICATED => 401,
                    RpcStatusCode::PERMISSION_DENIED => 403,
                    RpcStatusCode::NOT_FOUND => 404,
                    RpcStatusCode::ALREADY_EXISTS | RpcStatusCode::FAILED_PRECONDITION => 409,
                    RpcStatusCode::RESOURCE_EXHAUSTED => 429,
                    RpcStatusCode::UNAVAILABLE | RpcStatusCode::DEADLINE_EXCEEDED => 503,
                    _ => 502,
                };
                Failure(status, s.message().to_string())
            }
            other => Failure(503, format!("the control API is unavailable: {other}")),
        }
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(400, message.into())
}

type Answer = Result<Value, Failure>;

pub struct Web {
    api: pb::ManManApiClient,
    logs: pb::LogProcessorClient,
    logins: Arc<Logins>,
    /// Consoles open now (each holds two threads), at most [`MAX_CONSOLES`].
    consoles: Slots,
    secure_cookies: bool,
}

/// A request as the JSON routes see it.
struct Call<'a> {
    method: &'a Method,
    segments: Vec<&'a str>,
    query: Vec<(String, String)>,
    body: Value,
}

impl Call<'_> {
    fn id(&self, i: usize) -> Result<i64, Failure> {
        self.segments
            .get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .ok_or_else(|| {
                bad(format!(
                    "invalid id {:?}",
                    self.segments.get(i).unwrap_or(&"")
                ))
            })
    }

    fn text(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn number(&self, field: &str) -> Result<i64, Failure> {
        match &self.body[field] {
            Value::Null => Ok(0),
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| bad(format!("{field}: not an integer"))),
            Value::String(s) if s.trim().is_empty() => Ok(0),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| bad(format!("{field}: not an integer"))),
            _ => Err(bad(format!("{field}: not an integer"))),
        }
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Web {
    pub fn new(config: &WebConfig) -> Web {
        Web {
            api: config.api.api_client(),
            logs: pb::LogProcessorClient::new(config.logs.channel()),
            logins: Arc::new(Logins::new(config.login_ttl)),
            consoles: Slots::new(MAX_CONSOLES),
            secure_cookies: config.secure_cookies,
        }
    }

    /// Answers one request; a live console is handed to a thread of its own.
    pub fn serve(&self, mut request: Request) {
        let url = request.url().to_string();
        let path = http::path_of(&url).to_string();
        let method = request.method().clone();
        if method == Method::Get {
            if let Some(asset) = assets::find(&path) {
                let response = Response::from_data(asset.body)
                    .with_header(header("Content-Type", asset.content_type));
                return respond(request, response, None);
            }
        }
        let login = self.login_of(&request);
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if method == Method::Get && matches!(segments.as_slice(), ["api", "sessions", _, "console"])
        {
            match (&login, segments[2].parse::<i64>()) {
                (Some(login), Ok(id)) if id > 0 => {
                    let after = last_event_id(&request, &url);
                    let Some(slot) = self.consoles.take() else {
                        let busy = http::error(503, "too many open consoles; try again later");
                        return respond(request, busy, None);
                    };
                    // A logout (or the login's expiry) ends the console too.
                    let (logins, cookie) = (self.logins.clone(), self.cookie_of(&request));
                    let open = move || cookie.as_deref().is_some_and(|c| logins.is_open(c));
                    let stream = console::Stream {
                        logs: self.logs.clone(),
                        token: login.token.clone(),
                        session_id: id,
                        after,
                    };
                    console::open(request, stream, slot, Box::new(open));
                }
                (None, _) => respond(request, http::error(401, "log in first"), None),
                _ => respond(request, http::error(400, "invalid session id"), None),
            }
            return;
        }
        let body = match http::read_body(&mut request) {
            Ok(body) => body,
            Err(refused) => return respond(request, refused, None),
        };
        let body = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return respond(
                        request,
                        http::error(400, format!("body is not JSON: {e}")),
                        None,
                    )
                }
            }
        };
        let call = Call {
            method: &method,
            segments,
            query: query_params(&url),
            body,
        };
        let (response, cookie) = self.answer(&call, login, &request);
        respond(request, response, cookie);
    }

    fn login_of(&self, request: &Request) -> Option<Login> {
        self.logins.get(&self.cookie_of(request)?)
    }

    /// The login id the request's cookie names.
    fn cookie_of(&self, request: &Request) -> Option<String> {
        let cookies = http::request_header(request, "Cookie")?;
        cookie_value(cookies, COOKIE).map(str::to_string)
    }

    /// The JSON routes. Returns the response and, for login/logout, the cookie to set.
    fn answer(
        &self,
        call: &Call<'_>,
        login: Option<Login>,
        request: &Request,
    ) -> (JsonResponse, Option<String>) {
        if call.segments.first() != Some(&"api") {
            return (http::error(404, "no such page"), None);
        }
        if *call.method == Method::Post && call.segments == ["api", "login"] {
            if let Err(refused) = same_origin_json(request) {
                return (refused, None);
            }
            return self.log_in(call);
        }
        let Some(login) = login else {
            return (http::error(401, "log in first"), None);
        };
        if *call.method != Method::Get {
            let sent = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("X-CSRF-Token"))
                .map(|h| h.value.as_str());
            if sent != Some(login.csrf.as_str()) {
                return (
                    http::error(403, "missing or wrong X-CSRF-Token (reload the page)"),
                    None,
                );
            }
        }
        if *call.method == Method::Post && call.segments == ["api", "logout"] {
            if let Some(id) = self.cookie_of(request) {
                self.logins.remove(&id);
            }
            return (
                http::json(200, &json!({"logged_out": true})),
                Some(set_cookie("", self.secure_cookies)),
            );
        }
        let opt = || crate::grpc::call_option(Some(&login.token), CALL_TIMEOUT);
        let answer = self.route(call, &login, &opt);
        match answer {
            Ok(Value::String(text)) => (
                http::text(200, "text/plain; charset=utf-8", text).with_header(header(
                    "Content-Disposition",
                    &format!(
                        "attachment; filename=\"session-{}.log\"",
                        call.segments.get(2).unwrap_or(&"")
                    ),
                )),
                None,
            ),
            Ok(body) => (http::json(200, &body), None),
            Err(Failure(status, message)) => (http::error(status, message), None),
        }
    }

    fn log_in(&self, call: &Call<'_>) -> (JsonResponse, Option<String>) {
        let token = call.text("token");
        if token.is_empty() {
            return (http::error(400, "token is required"), None);
        }
        let who = self.api.who_am_i_opt(
            &pb::WhoAmIRequest {},
            crate::grpc::call_option(Some(&token), CALL_TIMEOUT),
        );
        match who {
            Ok(who) if who.role != "host" => {
                log::info!(name = who.name.as_str(), role = who.role.as_str(); "dashboard login");
                let (id, login) = self.logins.create(token, who.name, who.role);
                (
                    http::json(200, &me(&login)),
                    Some(set_cookie(&id, self.secure_cookies)),
                )
            }
            Ok(_) => (http::error(403, "a host's credential cannot log in"), None),
            Err(e) => {
                let Failure(status, message) = e.into();
                (http::error(status, message), None)
            }
        }
    }

    fn route(&self, call: &Call<'_>, login: &Login, opt: &dyn Fn() -> CallOption) -> Answer {
        let api = &self.api;
        match (call.method, &call.segments[1..]) {
            (Method::Get, ["me"]) => Ok(me(login)),
            (Method::Get, ["overview"]) => self.overview(opt),
            (Method::Get, ["hosts", _]) => {
                let id = call.id(2)?;
                let host = api.get_server_opt(&pb::GetServerRequest { server_id: id }, opt())?;
                let sessions = api.list_sessions_opt(
                    &pb::ListSessionsRequest {
                        server_id: id,
                        limit: 100,
                        ..Default::default()
                    },
                    opt(),
                )?;
                Ok(json!({
                    "host": host.server.as_ref().map(host_json),
                    "sessions": sessions.sessions.iter().map(session_json).collect::<Vec<_>>(),
                }))
            }
            (Method::Get, ["sessions", _]) => {
                let r = api.get_session_opt(
                    &pb::GetSessionRequest {
                        session_id: call.id(2)?,
                    },
                    opt(),
                )?;
                Ok(r.session.as_ref().map(session_json).unwrap_or(Value::Null))
            }
            (Method::Post, ["sessions", _, "stop" | "kill"]) => {
                let r = api.stop_session_opt(
                    &pb::StopSessionRequest {
                        session_id: call.id(2)?,
                        kill: call.segments[3] == "kill",
                        force: false,
                    },
                    opt(),
                )?;
                Ok(r.session.as_ref().map(session_json).unwrap_or(Value::Null))
            }
            (Method::Post, ["sessions", _, "input"]) => {
                let input = call.body["input"].as_str().unwrap_or_default();
                if input.is_empty() || input.contains(['\n', '\r']) {
                    return Err(bad("input must be one non-empty line"));
                }
                api.send_input_opt(
                    &pb::SendInputRequest {
                        session_id: call.id(2)?,
                        input: input.to_string(),
                    },
                    opt(),
                )?;
                Ok(json!({"sent": true}))
            }
            (Method::Get, ["sessions", _, "archive"]) => self.archive(call, opt),
            (Method::Post, ["deployments", _, "start"]) => {
                let r = api.start_session_opt(
                    &pb::StartSessionRequest {
                        sgc_id: call.id(2)?,
                        force: false,
                    },
                    opt(),
                )?;
                Ok(r.session.as_ref().map(session_json).unwrap_or(Value::Null))
            }
            (Method::Get, ["games"]) => {
                let r = api.list_games_opt(&pb::ListGamesRequest::default(), opt())?;
                let games: Vec<Value> = r
                    .games
                    .iter()
                    .map(|g| json!({"game_id": g.game_id, "name": g.name}))
                    .collect();
                Ok(json!({ "items": games }))
            }
            (Method::Post, ["games"]) => {
                let r = api.create_game_opt(
                    &pb::CreateGameRequest {
                        name: call.text("name"),
                    },
                    opt(),
                )?;
                let g = r.game.unwrap_or_default();
                Ok(json!({"game_id": g.game_id, "name": g.name}))
            }
            (Method::Get, ["configs"]) => {
                let r = api.list_game_configs_opt(&pb::ListGameConfigsRequest::default(), opt())?;
                Ok(json!({ "items": r.configs.iter().map(config_json).collect::<Vec<_>>() }))
            }
            (Method::Post, ["configs"]) => {
                let r = api.create_game_config_opt(
                    &pb::CreateGameConfigRequest {
                        config: Some(config_from_form(call)?),
                    },
                    opt(),
                )?;
                Ok(r.config.as_ref().map(config_json).unwrap_or(Value::Null))
            }
            (Method::Get, ["deployments"]) => {
                let r = api.list_deployments_opt(&pb::ListDeploymentsRequest::default(), opt())?;
                Ok(
                    json!({ "items": r.deployments.iter().map(deployment_json).collect::<Vec<_>>() }),
                )
            }
            (Method::Post, ["deployments"]) => {
                let config_id = call.number("config_id")?;
                let config = api
                    .get_game_config_opt(&pb::GetGameConfigRequest { config_id }, opt())?
                    .config
                    .unwrap_or_default();
                // Every port of the config on a free port of the host's range.
                let ports = config
                    .ports
                    .iter()
                    .map(|p| pb::PortBinding {
                        host_port: 0,
                        container_port: p.port,
                        protocol: p.protocol.clone(),
                    })
                    .collect();
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
                Ok(d)
            }
            _ => Err(Failure(
                404,
                format!(
                    "no such route: {} /{}",
                    call.method,
                    call.segments.join("/")
                ),
            )),
        }
    }

    /// Hosts, live sessions and counts by state for the overview.
    fn overview(&self, opt: &dyn Fn() -> CallOption) -> Answer {
        let hosts = self
            .api
            .list_servers_opt(&pb::ListServersRequest::default(), opt())?;
        let live = self.api.list_sessions_opt(
            &pb::ListSessionsRequest {
                live_only: true,
                limit: 500,
                ..Default::default()
            },
            opt(),
        )?;
        let mut counts = serde_json::Map::new();
        for s in &live.sessions {
            let n = counts.get(&s.status).and_then(Value::as_i64).unwrap_or(0);
            counts.insert(s.status.clone(), json!(n + 1));
        }
        Ok(json!({
            "hosts": hosts.servers.iter().map(host_json).collect::<Vec<_>>(),
            "sessions": live.sessions.iter().map(session_json).collect::<Vec<_>>(),
            "live_total": live.total,
            "counts": counts,
        }))
    }

    /// A session's archived lines between `since` and `until` (unix ms) as a text download.
    fn archive(&self, call: &Call<'_>, opt: &dyn Fn() -> CallOption) -> Answer {
        let ms = |key: &str| -> Result<i64, Failure> {
            call.param(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| bad(format!("{key}: unix milliseconds")))
                })
                .unwrap_or(Ok(0))
        };
        let r = self.api.get_historical_logs_opt(
            &pb::GetHistoricalLogsRequest {
                session_id: call.id(2)?,
                since_ms: ms("since")?,
                until_ms: ms("until")?,
                offset: 0,
                limit: 10_000,
            },
            opt(),
        )?;
        if call.param("format") == Some("json") {
            let lines: Vec<Value> = r
                .lines
                .iter()
                .map(|l| json!({"timestamp": crate::views::json_time(l.timestamp), "source": l.source, "message": l.message}))
                .collect();
            return Ok(json!({ "lines": lines }));
        }
        let mut text = String::new();
        for l in &r.lines {
            let at = crate::views::json_time(l.timestamp);
            text.push_str(&format!(
                "{} {} {}\n",
                at.as_str().unwrap_or("-"),
                l.source,
                l.message
            ));
        }
        Ok(Value::String(text))
    }
}

/// Live consoles one dashboard serves at once (two threads each).
const MAX_CONSOLES: usize = 256;

/// A login must come from our own page: a JSON body (a cross-site form can only send
/// `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data` without a CORS
/// preflight we never grant) and, when the browser says where from, our own origin. This
/// stops login CSRF (a page logging the victim into the attacker's account).
fn same_origin_json(request: &Request) -> Result<(), JsonResponse> {
    let content_type = http::request_header(request, "Content-Type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(http::error(
            415,
            "log in with a JSON body (Content-Type: application/json)",
        ));
    }
    if let Some(origin) = http::request_header(request, "Origin") {
        let host = http::request_header(request, "Host").unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(http::error(
                403,
                format!("cross-origin login refused (Origin {origin})"),
            ));
        }
    }
    Ok(())
}

/// What the page knows of its login.
fn me(login: &Login) -> Value {
    json!({"name": login.name, "role": login.role, "csrf": login.csrf})
}

/// A config from the page's form: game, name, program, args (one per line), stop command,
/// restart policy, ports (`25565/tcp`, comma-separated), readiness line.
fn config_from_form(call: &Call<'_>) -> Result<pb::GameConfig, Failure> {
    let mut ports = Vec::new();
    for p in call
        .text("ports")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (port, protocol) =
            crate::wire::ports::parse_port(p).map_err(|e| bad(format!("ports: {e}")))?;
        ports.push(pb::PortDefinition { port, protocol });
    }
    let args = call.body["args"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .filter(|a| !a.is_empty())
        .collect();
    let ready = call.text("ready_line");
    Ok(pb::GameConfig {
        game_id: call.number("game_id")?,
        name: call.text("name"),
        program: call.text("program"),
        args,
        stop_command: call.text("stop_command"),
        restart_policy: call.text("restart_policy"),
        ports,
        readiness: (!ready.is_empty()).then(|| pb::ReadinessProbe {
            console_pattern: ready,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Where a reconnecting console resumes: the browser's `Last-Event-ID`, or `?after=`.
fn last_event_id(request: &Request, url: &str) -> i64 {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Last-Event-ID"))
        .map(|h| h.value.as_str().to_string())
        .or_else(|| {
            query_params(url)
                .into_iter()
                .find(|(k, _)| k == "after")
                .map(|(_, v)| v)
        })
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &i64| *n >= 0)
        .unwrap_or(0)
}

fn respond<R: Read>(request: Request, response: Response<R>, cookie: Option<String>) {
    let mut response = response;
    for (name, value) in SECURITY_HEADERS {
        response.add_header(header(name, value));
    }
    if let Some(cookie) = cookie {
        response.add_header(header("Set-Cookie", &cookie));
    }
    if let Err(e) = request.respond(response) {
        log::debug!("client went away: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_failures_map_to_http_statuses() {
        let status = |code| {
            Failure::from(grpcio::Error::RpcFailure(grpcio::RpcStatus::with_message(
                code,
                "why".into(),
            )))
            .0
        };
        assert_eq!(status(RpcStatusCode::UNAUTHENTICATED), 401);
        assert_eq!(status(RpcStatusCode::PERMISSION_DENIED), 403);
        assert_eq!(status(RpcStatusCode::FAILED_PRECONDITION), 409);
        assert_eq!(status(RpcStatusCode::INVALID_ARGUMENT), 400);
        assert_eq!(status(RpcStatusCode::UNAVAILABLE), 503);
    }
}
