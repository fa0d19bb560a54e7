//! The processor's counters, exported on `/metrics`.

use crate::metrics::{render_sample, Counter, Gauge, Histogram};

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
