//! The log processor's counters and gauges, rendered on `/metrics`.

use crate::metrics::{render_sample, Counter, Gauge, Histogram};

#[derive(Default, Debug)]
pub struct LogMetrics {
    pub lines_in: Counter,
    pub lines_out: Counter,
    pub malformed: Counter,
    /// Console batches of sessions that do not exist, dropped.
    pub unknown_session_batches: Counter,
    pub gaps: Counter,
    pub clients: Gauge,
    pub sessions: Gauge,
    /// Batches waiting in this instance's queue (the broker's count, every few seconds).
    pub queue_depth: Gauge,
    /// Lines the hosts numbered that never arrived (queue drop-head or TTL, a host's full
    /// queue while the broker was away).
    pub lost_in_transit: Counter,
    /// Lines the hosts' throttles held back (from their marker lines).
    pub throttled: Counter,
    /// How old the newest line taken off the queue was when taken (milliseconds).
    pub consumer_lag_ms: Gauge,
    pub archived_lines: Counter,
    pub archive_dropped: Counter,
    pub archive_failures: Counter,
    pub archive_pending_lines: Gauge,
    /// Age (seconds) of the oldest line still waiting to be archived.
    pub archive_lag_seconds: Gauge,
    pub archive_flush_seconds: Histogram,
}

impl LogMetrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_sample(
            &mut out,
            "manman_log_lines_total",
            "counter",
            "Log lines consumed from the broker (in) and sent to streaming clients (out).",
            &[
                ("direction=\"in\"", self.lines_in.get()),
                ("direction=\"out\"", self.lines_out.get()),
            ],
        );
        render_sample(
            &mut out,
            "manman_log_malformed_total",
            "counter",
            "Unreadable log messages sent to the dead-letter queue.",
            &[("", self.malformed.get())],
        );
        render_sample(
            &mut out,
            "manman_log_unknown_session_batches_total",
            "counter",
            "Console batches for sessions that do not exist, dropped (never buffered).",
            &[("", self.unknown_session_batches.get())],
        );
        render_sample(
            &mut out,
            "manman_log_client_gaps_total",
            "counter",
            "Times a slow client was told it missed lines.",
            &[("", self.gaps.get())],
        );
        render_sample(
            &mut out,
            "manman_log_streaming_clients",
            "gauge",
            "gRPC clients streaming a session now.",
            &[("", self.clients.get())],
        );
        render_sample(
            &mut out,
            "manman_log_buffered_sessions",
            "gauge",
            "Sessions with a console buffer (ring) in this instance.",
            &[("", self.sessions.get())],
        );
        render_sample(
            &mut out,
            "manman_log_queue_depth",
            "gauge",
            "Console batches waiting in this instance's queue (logs.ingest.{instance}).",
            &[("", self.queue_depth.get())],
        );
        render_sample(
            &mut out,
            "manman_log_lines_dropped_total",
            "counter",
            "Lines that never reached the buffer: lost on the way (queue drop-head or TTL, a host's full queue) or held back by a host's throttle.",
            &[
                ("reason=\"lost_in_transit\"", self.lost_in_transit.get()),
                ("reason=\"throttled\"", self.throttled.get()),
            ],
        );
        render_sample(
            &mut out,
            "manman_log_consumer_lag_milliseconds",
            "gauge",
            "Age of the newest line when it was last taken off the queue (host clock to here).",
            &[("", self.consumer_lag_ms.get())],
        );
        render_sample(
            &mut out,
            "manman_log_archive_lines_total",
            "counter",
            "Lines archived to S3, dropped because the archive buffer was full, and failed flushes.",
            &[
                ("outcome=\"archived\"", self.archived_lines.get()),
                ("outcome=\"dropped\"", self.archive_dropped.get()),
                ("outcome=\"flush_failed\"", self.archive_failures.get()),
            ],
        );
        render_sample(
            &mut out,
            "manman_log_archive_pending_lines",
            "gauge",
            "Lines waiting to be archived.",
            &[("", self.archive_pending_lines.get())],
        );
        render_sample(
            &mut out,
            "manman_log_archive_lag_seconds",
            "gauge",
            "Age of the oldest line waiting to be archived.",
            &[("", self.archive_lag_seconds.get())],
        );
        self.archive_flush_seconds.render(
            &mut out,
            "manman_log_archive_flush_seconds",
            "Time to archive one session minute (S3 + PostgreSQL).",
        );
        out
    }
}
