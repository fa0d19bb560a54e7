//! `manman-web`: the dashboard. Serves the page (embedded in the binary) and a small JSON and
//! Server-Sent Events layer for it, as a client of the other daemons: the control API over gRPC
//! with the logged-in operator's own token (so roles apply as in the CLI), and the log
//! processor's live stream, bridged to the browser (console.rs). The browser never talks gRPC.

mod archive;
mod assets;
mod auth;
mod backups;
mod catalog;
mod console;
mod forms;
mod hosts;
mod logins;
mod routes;
mod schedules;
mod sessions;
mod transport;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, ConfigError, Env};
use crate::grpc::Endpoint;
use crate::lifecycle::Supervisor;

pub use logins::{Login, Logins};

#[derive(Debug, Clone)]
pub struct WebConfig {
    /// `WEB_BIND`:`WEB_PORT` (127.0.0.1:8090): loopback unless opened explicitly.
    pub listen: String,
    /// The control API (`API_ADDRESS`; TLS with `GRPC_TLS_CA`).
    pub api: Endpoint,
    /// The log processor (`LOG_PROCESSOR_ADDRESS`).
    pub logs: Endpoint,
    /// Threads answering requests (`WEB_WORKERS`, 4); each open console has its own as well.
    pub workers: usize,
    /// How long a login lasts without use (`WEB_LOGIN_HOURS`, 12).
    pub login_ttl: Duration,
    /// Cookies marked `Secure` (`WEB_COOKIE_SECURE`): set it behind an HTTPS proxy.
    pub secure_cookies: bool,
}

impl WebConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let listen = config::listen_address(env, "WEB_BIND", "WEB_PORT", 8090)?;
        // The page serves plain HTTP: off loopback it needs a TLS proxy in front, which only
        // the operator can vouch for.
        config::check_exposure(env, "WEB_BIND", &listen, false, "the dashboard")?;
        let workers: usize = env.parse("WEB_WORKERS", 4)?;
        if workers == 0 {
            return Err(ConfigError::new("WEB_WORKERS", "must be at least 1"));
        }
        let hours: u64 = env.parse("WEB_LOGIN_HOURS", 12)?;
        if hours == 0 {
            return Err(ConfigError::new("WEB_LOGIN_HOURS", "must be at least 1"));
        }
        Ok(WebConfig {
            listen,
            api: Endpoint::from_env(env, "API_ADDRESS", "127.0.0.1:50051")?,
            logs: Endpoint::from_env(env, "LOG_PROCESSOR_ADDRESS", "127.0.0.1:50053")?,
            workers,
            login_ttl: Duration::from_secs(hours * 3600),
            secure_cookies: env.flag("WEB_COOKIE_SECURE", false)?,
        })
    }
}

pub struct RunningWeb {
    pub port: u16,
}

/// Binds the port and spawns the request threads under `supervisor`.
pub fn start(config: WebConfig, supervisor: &mut Supervisor) -> Result<RunningWeb, String> {
    log::info!(listen = config.listen.as_str(), api = format!("{:?}", config.api).as_str(),
        logs = format!("{:?}", config.logs).as_str(); "starting the dashboard");
    let server = Arc::new(crate::http::server(&config.listen)?);
    let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
    let web = Arc::new(routes::Web::new(&config));
    for i in 0..config.workers {
        let (server, web) = (server.clone(), web.clone());
        supervisor.spawn(&format!("http-{i}"), move |shutdown| {
            while !shutdown.is_triggered() {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(request)) => web.serve(request),
                    Ok(None) => {}
                    Err(e) => return Err(format!("HTTP server failed: {e}")),
                }
            }
            Ok(())
        })?;
    }
    Ok(RunningWeb { port })
}
