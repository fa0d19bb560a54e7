//! The API's `/metrics`: requests by method and outcome, and their latency.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::ApiError;

#[derive(Default)]
pub struct ApiMetrics {
    requests: std::sync::Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: crate::metrics::Histogram,
    backups_completed: std::sync::atomic::AtomicU64,
    backups_failed: std::sync::atomic::AtomicU64,
}

impl ApiMetrics {
    pub(crate) fn record<T>(
        &self,
        method: &'static str,
        result: &Result<T, ApiError>,
        took: Duration,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.code_name(),
        };
        *crate::sync::lock(&self.requests)
            .entry((method, outcome))
            .or_default() += 1;
        self.latency.observe(took);
    }

    pub(crate) fn backup_ended(&self, completed: bool) {
        let counter = if completed {
            &self.backups_completed
        } else {
            &self.backups_failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        crate::metrics::render_sample(
            &mut out,
            "manman_api_backups_total",
            "counter",
            "Backups this API saw end, by outcome.",
            &[
                ("outcome=\"completed\"", load(&self.backups_completed)),
                ("outcome=\"failed\"", load(&self.backups_failed)),
            ],
        );
        let samples: Vec<(String, u64)> = crate::sync::lock(&self.requests)
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
