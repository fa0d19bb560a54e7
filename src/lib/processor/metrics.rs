//! The processor's counters, exported on `/metrics`.

use crate::db::DbPool;
use crate::metrics::{render_by_label, render_sample, Counter, Gauge, Histogram};
use crate::wire::{HostStatus, SessionStatus};

#[derive(Default, Debug)]
pub struct ProcessorMetrics {
    pub applied: Counter,
    pub duplicates: Counter,
    pub dead_lettered: Counter,
    pub db_outage_retries: Counter,
    pub published: Counter,
    pub stale_hosts: Counter,
    pub outbox_depth: Gauge,
    pub batch_seconds: Histogram,
}

impl ProcessorMetrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_sample(
            &mut out,
            "manman_processor_events_total",
            "counter",
            "Host events handled, by outcome.",
            &[
                ("outcome=\"applied\"", self.applied.get()),
                ("outcome=\"duplicate\"", self.duplicates.get()),
                ("outcome=\"dead_lettered\"", self.dead_lettered.get()),
            ],
        );
        render_sample(
            &mut out,
            "manman_processor_db_outage_retries_total",
            "counter",
            "Batches retried because the database was unavailable.",
            &[("", self.db_outage_retries.get())],
        );
        render_sample(
            &mut out,
            "manman_processor_external_events_published_total",
            "counter",
            "External events confirmed by the broker.",
            &[("", self.published.get())],
        );
        render_sample(
            &mut out,
            "manman_processor_stale_hosts_total",
            "counter",
            "Hosts marked offline by the stale checker.",
            &[("", self.stale_hosts.get())],
        );
        render_sample(
            &mut out,
            "manman_processor_outbox_depth",
            "gauge",
            "External events waiting in the outbox at the last relay pass.",
            &[("", self.outbox_depth.get())],
        );
        self.batch_seconds.render(
            &mut out,
            "manman_processor_batch_seconds",
            "Time to apply and acknowledge one batch of events.",
        );
        out
    }
}

/// Hosts and sessions by status, counted in PostgreSQL when `/metrics` is scraped (the
/// processor's gauges). Every status is listed, zeros included, so a dashboard's series never vanish. An
/// unreachable database leaves them out (and `/readyz` says why).
pub fn render_state_gauges(pool: &DbPool) -> String {
    let counts = match state_counts(pool) {
        Ok(c) => c,
        Err(e) => {
            log::debug!(
                "cannot count hosts and sessions for /metrics: {}",
                crate::errors::chain(&e)
            );
            return String::new();
        }
    };
    let count = |kind: &str, status: &str| {
        counts
            .iter()
            .find(|(k, s, _)| k == kind && s == status)
            .map_or(0, |c| c.2)
    };
    let hosts: Vec<(&str, u64)> = [HostStatus::Online, HostStatus::Offline]
        .iter()
        .map(|s| (s.as_str(), count("host", s.as_str())))
        .collect();
    let sessions: Vec<(&str, u64)> = SessionStatus::ALL
        .iter()
        .map(|s| (s.as_str(), count("session", s.as_str())))
        .collect();
    let mut out = String::new();
    render_by_label(
        &mut out,
        "manman_hosts",
        "gauge",
        "Registered hosts by status.",
        "status",
        &hosts,
    );
    render_by_label(
        &mut out,
        "manman_sessions",
        "gauge",
        "Sessions by status (ended ones included: they stay as history).",
        "status",
        &sessions,
    );
    out
}

fn state_counts(pool: &DbPool) -> Result<Vec<(String, String, u64)>, crate::db::DbError> {
    let mut conn = pool.get().map_err(crate::db::DbError::Pool)?;
    let rows = conn
        .query(
            "SELECT 'host', status, count(*) FROM servers GROUP BY status
             UNION ALL
             SELECT 'session', status, count(*) FROM sessions GROUP BY status",
            &[],
        )
        .map_err(crate::db::DbError::Query)?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2).max(0) as u64))
        .collect())
}
