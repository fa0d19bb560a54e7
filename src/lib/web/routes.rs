//! The dashboard's front door: static assets, the live console hand-over, and the route
//! table that sends each JSON request, once its login (and for a change, its CSRF token) is
//! checked, to its handler by noun (sessions, catalog, hosts, archive).

use std::sync::Arc;
use std::time::Duration;

use grpcio::CallOption;
use serde_json::Value;
use tiny_http::{Method, Request, Response};

use super::auth::{csrf_checked, me, same_origin_json};
use super::logins::{cookie_value, Login, Logins, COOKIE};
use super::transport::{last_event_id, respond, Answer, Call, Failure, Reply};
use super::{
    archive, assets, backups, catalog, console, hosts, schedules, sessions, usage, WebConfig,
};
use crate::http::{self, header, query_params, JsonResponse};
use crate::proto::v1 as pb;
use crate::slots::Slots;

/// API calls from the page wait this long at most.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Live consoles one dashboard serves at once (two threads each).
const MAX_CONSOLES: usize = 256;

/// A JSON route's handler: the API client, the request, and call options with the login's
/// token.
type Handler = fn(&pb::ManManApiClient, &Call<'_>, &dyn Fn() -> CallOption) -> Answer;

pub struct Web {
    pub(super) api: pb::ManManApiClient,
    logs: pb::LogProcessorClient,
    pub(super) logins: Arc<Logins>,
    /// Consoles open now (each holds two threads), at most [`MAX_CONSOLES`].
    consoles: Slots,
    pub(super) secure_cookies: bool,
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
    pub(super) fn cookie_of(&self, request: &Request) -> Option<String> {
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
            if let Err(refused) = csrf_checked(request, &login) {
                return (refused, None);
            }
        }
        if *call.method == Method::Post && call.segments == ["api", "logout"] {
            return self.log_out(request);
        }
        if *call.method == Method::Get && call.segments == ["api", "me"] {
            return (http::json(200, &me(&login)), None);
        }
        let Some(handler) = route(call.method, &call.segments[1..]) else {
            let message = format!(
                "no such route: {} /{}",
                call.method,
                call.segments.join("/")
            );
            return (http::error(404, message), None);
        };
        let opt = || crate::grpc::call_option(Some(&login.token), CALL_TIMEOUT);
        match handler(&self.api, call, &opt) {
            Ok(Reply::Json(body)) => (http::json(200, &body), None),
            Ok(Reply::Download { filename, text }) => (
                http::text(200, "text/plain; charset=utf-8", text).with_header(header(
                    "Content-Disposition",
                    &format!("attachment; filename=\"{filename}\""),
                )),
                None,
            ),
            Err(Failure(status, message)) => (http::error(status, message), None),
        }
    }
}

/// The route table: which handler answers a method and path (after `/api`).
fn route(method: &Method, path: &[&str]) -> Option<Handler> {
    let handler: Handler = match (method, path) {
        (Method::Get, ["overview"]) => hosts::overview,
        (Method::Get, ["hosts", _]) => hosts::host,
        (Method::Get, ["sessions", _]) => sessions::show,
        (Method::Post, ["sessions", _, "stop" | "kill"]) => sessions::stop,
        (Method::Post, ["sessions", _, "input"]) => sessions::input,
        (Method::Get, ["sessions", _, "archive"]) => archive::archive,
        (Method::Get, ["sessions", _, "history"]) => usage::session,
        (Method::Get, ["hosts", _, "history"]) => usage::host,
        (Method::Post, ["deployments", _, "start"]) => sessions::start,
        (Method::Get, ["deployments", _, "backups"]) => backups::list,
        (Method::Post, ["deployments", _, "backups"]) => backups::create,
        (Method::Post, ["backups", _, "restore"]) => backups::restore,
        (Method::Get, ["deployments", _, "schedules"]) => schedules::list,
        (Method::Post, ["deployments", _, "schedules"]) => schedules::create,
        (Method::Post, ["schedules", _, "run"]) => schedules::run_now,
        (Method::Post, ["schedules", _, "pause" | "resume"]) => schedules::pause,
        (Method::Get, ["games"]) => catalog::games,
        (Method::Post, ["games"]) => catalog::create_game,
        (Method::Get, ["configs"]) => catalog::configs,
        (Method::Post, ["configs"]) => catalog::create_config,
        (Method::Get, ["deployments"]) => catalog::deployments,
        (Method::Post, ["deployments"]) => catalog::deploy,
        _ => return None,
    };
    Some(handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_knows_each_page_call_and_nothing_else() {
        let known = [
            (Method::Get, "overview"),
            (Method::Get, "hosts/1"),
            (Method::Get, "sessions/1"),
            (Method::Post, "sessions/1/stop"),
            (Method::Post, "sessions/1/kill"),
            (Method::Post, "sessions/1/input"),
            (Method::Get, "sessions/1/archive"),
            (Method::Get, "sessions/1/history"),
            (Method::Get, "hosts/1/history"),
            (Method::Post, "deployments/1/start"),
            (Method::Get, "deployments/1/backups"),
            (Method::Post, "deployments/1/backups"),
            (Method::Post, "backups/1/restore"),
            (Method::Get, "deployments/1/schedules"),
            (Method::Post, "deployments/1/schedules"),
            (Method::Post, "schedules/1/run"),
            (Method::Post, "schedules/1/pause"),
            (Method::Post, "schedules/1/resume"),
            (Method::Get, "games"),
            (Method::Post, "games"),
            (Method::Get, "configs"),
            (Method::Post, "configs"),
            (Method::Get, "deployments"),
            (Method::Post, "deployments"),
        ];
        for (method, path) in &known {
            let segments: Vec<&str> = path.split('/').collect();
            assert!(route(method, &segments).is_some(), "{method} {path}");
        }
        // A read is never routed to a change, nor the other way round.
        for (method, path) in [
            (Method::Get, "sessions/1/stop"),
            (Method::Post, "sessions/1"),
            (Method::Delete, "games"),
            (Method::Get, "sessions/1/input"),
            (Method::Get, "backups/1/restore"),
            (Method::Get, "nothing"),
        ] {
            let segments: Vec<&str> = path.split('/').collect();
            assert!(route(&method, &segments).is_none(), "{method} {path}");
        }
    }
}
