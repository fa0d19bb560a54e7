//! The log processor's counters and gauges, rendered on `/metrics`.

use crate::metrics::{render_sample, Counter, Gauge, Histogram};

#[derive(Default, Debug)]
pub struct LogMetrics {
    pub lines_in: Counter,
    pub lines_out: Counter,
    pub malformed: Counter,
    pub gaps: Counter,
    pub clients: Gauge,
    pub feeds: Gauge,
    pub sessions: Gauge,
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
            "manman_log_session_feeds",
            "gauge",
            "Per-session broker consumers (feeds) running, and sessions buffered.",
            &[
                ("kind=\"feeds\"", self.feeds.get()),
                ("kind=\"buffered_sessions\"", self.sessions.get()),
            ],
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
