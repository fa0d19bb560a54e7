//! JSON log lines on stderr (timestamp, level, target, message, fields) for journald and humans.

use std::io::Write;

pub use manman_log_line::json_line;

/// Installs the JSON logger. The level comes from `LOG_LEVEL` (default `info`), in env_logger's
/// filter syntax, so `LOG_LEVEL=info,manman::processor=debug` works. Safe to call twice.
pub fn init() {
    let filter = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_string());
    let _ = env_logger::Builder::new()
        .parse_filters(&filter)
        .format(|buf, record| {
            let line = json_line(record);
            writeln!(buf, "{line}")
        })
        .try_init();
}
