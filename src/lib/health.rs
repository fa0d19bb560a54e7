//! The health server every daemon runs: `/healthz` (alive), `/readyz` (dependencies reachable),
//! `/metrics` (Prometheus text), on tiny_http in one supervised thread.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tiny_http::{Method, Server};

use crate::http;
use crate::lifecycle::ShutdownSignal;

/// A named readiness probe: `Ok` when the dependency answers.
pub struct ReadinessCheck {
    pub name: &'static str,
    pub check: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new(
        name: &'static str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        ReadinessCheck {
            name,
            check: Box::new(check),
        }
    }
}

impl ReadinessCheck {
    /// Ready while `flag` is set (e.g. a consumer is attached to its queue).
    pub fn flag(
        name: &'static str,
        flag: Arc<std::sync::atomic::AtomicBool>,
        not_ready: &'static str,
    ) -> Self {
        ReadinessCheck::new(name, move || {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err(not_ready.into())
            }
        })
    }
}

pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

pub struct HealthServer {
    server: Server,
    checks: Vec<ReadinessCheck>,
    metrics: Option<MetricsRenderer>,
}

impl HealthServer {
    /// Binds now, so a taken port fails the daemon at start rather than later.
    pub fn bind(
        addr: &str,
        checks: Vec<ReadinessCheck>,
        metrics: Option<MetricsRenderer>,
    ) -> Result<Self, String> {
        let server = crate::http::server(addr)?;
        Ok(HealthServer {
            server,
            checks,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .unwrap_or(0)
    }

    /// Serves in the supervised thread `health`; returns the port it listens on.
    pub fn start(
        self,
        supervisor: &mut crate::lifecycle::Supervisor,
    ) -> Result<u16, crate::lifecycle::SpawnError> {
        let port = self.port();
        supervisor.spawn("health", move |s| self.serve(s))?;
        Ok(port)
    }

    /// Serves until shutdown.
    pub fn serve(self, shutdown: ShutdownSignal) -> Result<(), String> {
        while !shutdown.is_triggered() {
            let request = match self.server.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => return Err(format!("health server failed: {e}")),
            };
            let response = self.respond(request.method(), http::path_of(request.url()));
            let _ = request.respond(response);
        }
        Ok(())
    }

    fn respond(&self, method: &Method, path: &str) -> http::JsonResponse {
        if !matches!(method, Method::Get | Method::Head) {
            return http::error(405, "only GET and HEAD are allowed");
        }
        match path {
            "/healthz" => http::json(200, &json!({"status": "ok"})),
            "/readyz" => {
                let mut ready = true;
                let mut results = serde_json::Map::new();
                for c in &self.checks {
                    let outcome = (c.check)();
                    ready &= outcome.is_ok();
                    results.insert(
                        c.name.into(),
                        json!(outcome.err().unwrap_or_else(|| "ok".into())),
                    );
                }
                let status = if ready { "ready" } else { "not ready" };
                http::json(
                    if ready { 200 } else { 503 },
                    &json!({"status": status, "checks": results}),
                )
            }
            "/metrics" => match &self.metrics {
                Some(render) => http::text(200, "text/plain; version=0.0.4", render()),
                None => http::error(404, "this daemon exports no metrics"),
            },
            _ => http::error(404, format!("no such path: {path}")),
        }
    }
}
