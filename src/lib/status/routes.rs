//! Routing, argument checking and error mapping for the status API.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Method, Request};

use super::cache::TtlCache;
use super::queries::{self, Page, SessionFilter};
use super::replica::ReplicaLag;
use crate::auth::authenticator::bearer_value;
use crate::auth::{AuthError, Authenticator, Role, TokenBackend};
use crate::db::{CachedConnection, DbPool};
use crate::http::{self, query_params};
use crate::metrics::{render_sample, Histogram};
use crate::wire::SessionStatus;

const DEFAULT_LIMIT: i64 = 50;
/// Hosts per `/status/workers` page unless `limit` says otherwise (as for sessions).
const DEFAULT_WORKERS_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Workers,
    Worker(String),
    Servers,
    ActiveServers,
    System,
    Healthz,
    Readyz,
    Metrics,
}

impl Route {
    /// A fixed label for metrics (never the raw path: ids would explode the cardinality).
    fn label(&self) -> &'static str {
        match self {
            Route::Workers => "/status/workers",
            Route::Worker(_) => "/status/workers/{id}",
            Route::Servers => "/status/servers",
            Route::ActiveServers => "/status/servers/active",
            Route::System => "/status/system",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
        }
    }
}

pub fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match parts.as_slice() {
        ["status", "workers"] => Route::Workers,
        ["status", "workers", id] => Route::Worker(id.to_string()),
        ["status", "servers"] => Route::Servers,
        ["status", "servers", "active"] => Route::ActiveServers,
        ["status", "system"] => Route::System,
        ["healthz"] => Route::Healthz,
        ["readyz"] => Route::Readyz,
        ["metrics"] => Route::Metrics,
        _ => return None,
    })
}

/// A request that went wrong, and the status it maps to.
enum Failure {
    BadRequest(String),
    NotFound(String),
    Unavailable(String),
}

impl From<r2d2::Error> for Failure {
    fn from(e: r2d2::Error) -> Self {
        Failure::Unavailable(format!("database unavailable: {e}"))
    }
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        log::warn!("status query failed: {e}");
        Failure::Unavailable("database unavailable".into())
    }
}

fn parse_filter(url: &str, live_only: bool) -> Result<SessionFilter, Failure> {
    let mut filter = SessionFilter {
        statuses: if live_only {
            SessionStatus::LIVE.to_vec()
        } else {
            Vec::new()
        },
        host: None,
        limit: DEFAULT_LIMIT,
        offset: 0,
        after: 0,
    };
    for (key, value) in query_params(url) {
        match key.as_str() {
            "status" if !live_only => {
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    filter
                        .statuses
                        .push(s.parse().map_err(Failure::BadRequest)?);
                }
            }
            "host" if !value.is_empty() => filter.host = Some(value),
            "limit" => filter.limit = limit(&value)?,
            "offset" => {
                filter.offset = value.parse().ok().filter(|o| *o >= 0).ok_or_else(|| {
                    Failure::BadRequest("offset must be a non-negative integer".into())
                })?
            }
            "after" => filter.after = cursor(&value)?,
            other => {
                return Err(Failure::BadRequest(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    if filter.after > 0 && filter.offset > 0 {
        return Err(Failure::BadRequest(
            "use either after (a cursor) or offset, not both".into(),
        ));
    }
    Ok(filter)
}

/// `limit=N`, 1 to [`MAX_LIMIT`].
fn limit(value: &str) -> Result<i64, Failure> {
    value
        .parse()
        .ok()
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .ok_or_else(|| Failure::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}")))
}

/// `after=ID`: the id the previous page's `next_after` gave.
fn cursor(value: &str) -> Result<i64, Failure> {
    value.parse().ok().filter(|a| *a > 0).ok_or_else(|| {
        Failure::BadRequest("after must be a positive id (a page's next_after)".into())
    })
}

/// `/status/workers?after=ID&limit=N`.
fn parse_page(url: &str) -> Result<Page, Failure> {
    let mut page = Page {
        after: 0,
        limit: DEFAULT_WORKERS_LIMIT,
    };
    for (key, value) in query_params(url) {
        match key.as_str() {
            "after" => page.after = cursor(&value)?,
            "limit" => page.limit = limit(&value)?,
            other => {
                return Err(Failure::BadRequest(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    Ok(page)
}

/// A `Host` header without its port (`[::1]:8000` → `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

pub struct StatusApi {
    pool: DbPool,
    /// Set when the API is reachable from the network: every request then needs a viewer
    /// token (`Authorization: Bearer …`).
    auth: Option<Authenticator>,
    /// The `Host` header values answered (`STATUS_ALLOWED_HOSTS`; empty: any). On loopback it
    /// defaults to the loopback names, so a page on another site whose DNS name is rebound
    /// to 127.0.0.1 is refused.
    allowed_hosts: Vec<String>,
    stale_secs: f64,
    /// `/status/system`, and each list's `total`, at most this old.
    system: TtlCache<(), Value>,
    totals: TtlCache<String, i64>,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Histogram,
    replica: ReplicaLag,
}

impl StatusApi {
    pub fn new(pool: DbPool, stale_threshold: Duration, system_cache_ttl: Duration) -> Self {
        StatusApi {
            pool,
            auth: None,
            allowed_hosts: Vec::new(),
            stale_secs: stale_threshold.as_secs_f64(),
            system: TtlCache::new(system_cache_ttl),
            totals: TtlCache::new(system_cache_ttl),
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::default(),
            replica: ReplicaLag::default(),
        }
    }

    /// Measures the lag of the database it reads until shutdown (a thread of its own).
    pub fn keep_measuring_lag(&self, shutdown: &crate::lifecycle::ShutdownSignal) {
        self.replica.keep_measuring(&self.pool, shutdown);
    }

    /// Requires a viewer token on every request from now on.
    pub fn require_tokens(mut self) -> Self {
        self.auth = Some(Authenticator::new(TokenBackend::Database(
            self.pool.clone(),
        )));
        self
    }

    /// Answers only requests whose `Host` (without its port) is one of `hosts` (any when empty).
    pub fn allow_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// `None` when the request may be answered, else the refusal.
    fn refusal(&self, request: &Request) -> Option<http::JsonResponse> {
        if !self.allowed_hosts.is_empty() {
            let host = http::request_header(request, "Host").unwrap_or("");
            if !self
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host_name(host)))
            {
                return Some(http::error(
                    421,
                    format!("this server does not answer for Host {host:?} (STATUS_ALLOWED_HOSTS)"),
                ));
            }
        }
        let auth = self.auth.as_ref()?;
        let token = http::request_header(request, "Authorization").and_then(bearer_value);
        match auth.authorize(token.as_deref(), Role::Viewer, "status") {
            Ok(_) => None,
            Err(e @ AuthError::Unauthenticated(_)) => Some(http::error(401, e.to_string())),
            Err(e @ AuthError::PermissionDenied(_)) => Some(http::error(403, e.to_string())),
            Err(e @ AuthError::Unavailable(_)) => Some(http::error(503, e.to_string())),
        }
    }

    /// Answers one request (never panics on bad input; every failure is a JSON error).
    /// `conn` is the calling worker's own connection, kept between requests so statements
    /// are prepared once.
    pub fn serve(&self, request: Request, conn: &mut Option<CachedConnection>) {
        let started = Instant::now();
        let (label, response) = match self.refusal(&request) {
            Some(refused) => ("refused", refused),
            None => self.respond(request.method(), request.url(), conn),
        };
        let status = response.status_code().0;
        if let Err(e) = request.respond(response) {
            log::debug!("client went away: {e}");
        }
        *crate::sync::lock(&self.requests)
            .entry((label, status))
            .or_insert(0) += 1;
        self.latency.observe(started.elapsed());
    }

    pub fn respond(
        &self,
        method: &Method,
        url: &str,
        conn: &mut Option<CachedConnection>,
    ) -> (&'static str, http::JsonResponse) {
        let Some(route) = route(http::path_of(url)) else {
            return (
                "unknown",
                http::error(404, format!("no such path: {}", http::path_of(url))),
            );
        };
        let label = route.label();
        if !matches!(method, Method::Get | Method::Head) {
            return (
                label,
                http::error(405, "read-only API: only GET and HEAD are allowed"),
            );
        }
        let response = match self.answer(&route, url, conn) {
            Ok(Value::String(text)) => http::text(200, "text/plain; version=0.0.4", text),
            Ok(body) => http::json(200, &body),
            Err(Failure::BadRequest(m)) => http::error(400, m),
            Err(Failure::NotFound(m)) => http::error(404, m),
            Err(Failure::Unavailable(m)) => http::error(503, m),
        };
        (label, response)
    }

    /// Runs `f` on the worker's connection, (re)connecting as needed. A kept connection may
    /// have died while idle (a database restart): that failure is retried once on a fresh
    /// connection instead of being answered with 503.
    fn with_db<T>(
        &self,
        conn: &mut Option<CachedConnection>,
        f: impl Fn(&mut CachedConnection) -> Result<T, postgres::Error>,
    ) -> Result<T, Failure> {
        let kept = conn.as_ref().is_some_and(|c| !c.is_closed());
        if !kept {
            *conn = Some(self.connect()?);
        }
        let mut result = f(conn.as_mut().expect("just set"));
        if let Err(e) = &result {
            *conn = None;
            if kept && crate::db::classify(e) == crate::db::FailureKind::Outage {
                *conn = Some(self.connect()?);
                result = f(conn.as_mut().expect("just set"));
                if result.is_err() {
                    *conn = None;
                }
            }
        }
        Ok(result?)
    }

    /// A worker's own connection: statements prepared once, planned once.
    fn connect(&self) -> Result<CachedConnection, Failure> {
        let mut conn = CachedConnection::new(self.pool.get()?);
        conn.plan_once()?;
        Ok(conn)
    }

    fn answer(
        &self,
        route: &Route,
        url: &str,
        conn: &mut Option<CachedConnection>,
    ) -> Result<Value, Failure> {
        match route {
            Route::Healthz => Ok(json!({"status": "ok"})),
            Route::Metrics => Ok(Value::String(self.render_metrics())),
            Route::Readyz => {
                crate::db::ping(&self.pool)
                    .map_err(String::from)
                    .map_err(|e| Failure::Unavailable(format!("database unavailable: {e}")))?;
                Ok(json!({"status": "ready"}))
            }
            Route::Workers => {
                let page = parse_page(url)?;
                self.with_db(conn, |c| queries::workers(c, self.stale_secs, page))
            }
            Route::Worker(raw) => {
                let id: i64 = raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                    Failure::BadRequest(format!(
                        "invalid worker id {raw:?}: expected a positive integer"
                    ))
                })?;
                self.with_db(conn, |c| queries::worker(c, id, self.stale_secs))?
                    .ok_or_else(|| Failure::NotFound(format!("no worker with id {id}")))
            }
            Route::Servers | Route::ActiveServers => {
                let filter = parse_filter(url, *route == Route::ActiveServers)?;
                let mut page = self.with_db(conn, |c| queries::sessions(c, &filter))?;
                // Counting every match costs more than the page: it may lag by the cache period.
                page["total"] = json!(self.totals.get_or(filter.count_key(), || {
                    self.with_db(conn, |c| queries::session_count(c, &filter))
                })?);
                Ok(page)
            }
            Route::System => {
                let mut system = self.system.get_or((), || {
                    self.with_db(conn, |c| queries::system(c, self.stale_secs))
                })?;
                system["database"] = self.replica.describe();
                Ok(system)
            }
        }
    }

    fn render_metrics(&self) -> String {
        let mut out = String::new();
        let counts = crate::sync::lock(&self.requests).clone();
        let labels: Vec<(String, u64)> = counts
            .iter()
            .map(|((route, code), n)| (format!("route=\"{route}\",code=\"{code}\""), *n))
            .collect();
        let samples: Vec<(&str, u64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        render_sample(
            &mut out,
            "manman_status_requests_total",
            "counter",
            "HTTP requests answered, by route and status code.",
            &samples,
        );
        self.latency.render(
            &mut out,
            "manman_status_request_seconds",
            "Time to answer one request.",
        );
        self.replica.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/status/workers"), Some(Route::Workers));
        assert_eq!(route("/status/workers/"), Some(Route::Workers));
        assert_eq!(
            route("/status/workers/12"),
            Some(Route::Worker("12".into()))
        );
        assert_eq!(route("/status/servers/active"), Some(Route::ActiveServers));
        assert_eq!(route("/status/system"), Some(Route::System));
        assert_eq!(route("/status"), None);
        assert_eq!(route("/status/workers/1/extra"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn filters_are_checked() {
        let f = parse_filter(
            "/status/servers?status=running,crashed&host=alpha&limit=10&offset=20",
            false,
        )
        .ok()
        .unwrap();
        assert_eq!(
            f.statuses,
            vec![SessionStatus::Running, SessionStatus::Crashed]
        );
        assert_eq!(f.host.as_deref(), Some("alpha"));
        assert_eq!((f.limit, f.offset), (10, 20));
        let defaults = parse_filter("/status/servers", false).ok().unwrap();
        assert_eq!((defaults.limit, defaults.offset), (DEFAULT_LIMIT, 0));
        let cursor = parse_filter("/status/servers?after=900&limit=5", false)
            .ok()
            .unwrap();
        assert_eq!((cursor.after, cursor.limit), (900, 5));
        let page = parse_page("/status/workers?after=12&limit=3").ok().unwrap();
        assert_eq!(
            page,
            Page {
                after: 12,
                limit: 3
            }
        );
        assert!(parse_page("/status/workers?limit=501").is_err());
        assert_eq!(
            parse_page("/status/workers").ok().unwrap().limit,
            DEFAULT_WORKERS_LIMIT
        );
        for bad in [
            "?status=exploded",
            "?limit=0",
            "?limit=501",
            "?limit=x",
            "?offset=-1",
            "?color=red",
            "?after=0",
            "?after=5&offset=10",
        ] {
            assert!(
                matches!(
                    parse_filter(&format!("/status/servers{bad}"), false),
                    Err(Failure::BadRequest(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse_filter("/status/servers/active", true)
                .ok()
                .unwrap()
                .statuses,
            SessionStatus::LIVE.to_vec()
        );
    }
}
