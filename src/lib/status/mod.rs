//! `manman-status-api`: the read side (CQRS). Read-only JSON over HTTP on tiny_http, served by a
//! fixed pool of worker threads sharing one r2d2 pool. It never writes; the processor does.

mod cache;
mod queries;
mod replica;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, ConfigError, Env};
use crate::db::{self, PoolSettings};
use crate::lifecycle::Supervisor;

pub use queries::{SessionFilter, RECENT_FAILURE_MINUTES};
pub use routes::{route, Route, StatusApi};

#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// `STATUS_DATABASE_URL` (a streaming replica, to keep a busy dashboard off the primary),
    /// else `DATABASE_URL`.
    pub database: postgres::Config,
    /// `{STATUS_BIND}:{STATUS_PORT}`, loopback by default; anywhere else every request needs a
    /// viewer token, and (plain HTTP) the `MANMAN_ALLOW_INSECURE_NETWORK` opt-out or, better,
    /// a TLS-terminating proxy on loopback in front.
    pub listen: String,
    /// Every request needs a viewer token (`STATUS_REQUIRE_TOKEN`): always off loopback; on
    /// loopback too when set, for the API behind a proxy on the same machine.
    pub require_token: bool,
    /// `Host` values answered (`STATUS_ALLOWED_HOSTS`, comma-separated; default on loopback:
    /// localhost, 127.0.0.1, ::1; off loopback: any).
    pub allowed_hosts: Vec<String>,
    pub workers: usize,
    pub stale_threshold: Duration,
    /// How long `/status/system` may serve a cached answer.
    pub system_cache: Duration,
    pub pool: PoolSettings,
}

impl StatusConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let workers: usize = env.parse("STATUS_WORKERS", 4)?;
        if workers == 0 {
            return Err(ConfigError::new("STATUS_WORKERS", "must be at least 1"));
        }
        let listen = config::listen_address(env, "STATUS_BIND", "STATUS_PORT", 8000)?;
        config::check_exposure(
            env,
            "STATUS_BIND",
            &listen,
            false,
            "the status API (plain HTTP)",
        )?;
        let loopback = config::is_loopback(&listen);
        let require_token = env.flag("STATUS_REQUIRE_TOKEN", !loopback)?;
        if !require_token && !loopback {
            return Err(ConfigError::new(
                "STATUS_REQUIRE_TOKEN",
                "cannot be false off loopback: anyone on the network could read the fleet",
            ));
        }
        let default_hosts = if loopback {
            "localhost,127.0.0.1,::1"
        } else {
            ""
        };
        let allowed_hosts = env
            .string("STATUS_ALLOWED_HOSTS", default_hosts)
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(StatusConfig {
            database: config::read_database_config(env, "STATUS_DATABASE_URL")?,
            listen,
            require_token,
            allowed_hosts,
            workers,
            stale_threshold: env.seconds("STALE_HOST_THRESHOLD_SECONDS", 10)?,
            system_cache: Duration::from_millis(env.parse("STATUS_CACHE_MS", 1000)?),
            pool: PoolSettings {
                // One connection kept by each worker, one for /readyz.
                max_size: workers as u32 + 1,
                min_idle: 1,
                // A request must not hang while the database is away: answer 503 quickly.
                connect_timeout: Duration::from_secs(2),
                ..PoolSettings::default()
            },
        })
    }
}

/// A started status API: its port (useful when configured with port 0).
pub struct RunningStatusApi {
    pub port: u16,
    pub api: Arc<StatusApi>,
}

/// Binds the port, connects the pool (failing fast if the database is unreachable) and spawns
/// the worker threads under `supervisor`.
pub fn start(
    config: StatusConfig,
    supervisor: &mut Supervisor,
) -> Result<RunningStatusApi, String> {
    log::info!(database = config::describe_database(&config.database).as_str(),
        listen = config.listen.as_str(); "starting status API");
    let pool = db::pool(config.database.clone(), &config.pool)?;
    let server = Arc::new(crate::http::server(&config.listen)?);
    let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
    let api = StatusApi::new(pool, config.stale_threshold, config.system_cache);
    let api = api.allow_hosts(config.allowed_hosts.clone());
    let api = Arc::new(if config.require_token {
        log::info!("every request needs a viewer token");
        api.require_tokens()
    } else {
        api
    });
    let measuring = api.clone();
    supervisor.spawn("replica-lag", move |shutdown| {
        measuring.keep_measuring_lag(&shutdown);
        Ok(())
    })?;
    for i in 0..config.workers {
        let (server, api) = (server.clone(), api.clone());
        supervisor.spawn(&format!("http-{i}"), move |shutdown| {
            let mut conn = None;
            while !shutdown.is_triggered() {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(request)) => api.serve(request, &mut conn),
                    Ok(None) => {}
                    Err(e) => return Err(format!("HTTP server failed: {e}")),
                }
            }
            Ok(())
        })?;
    }
    Ok(RunningStatusApi { port, api })
}
