//! manman-status-api: read-only HTTP status (the read side of CQRS).

fn main() {
    manman::lifecycle::run_daemon(manman::status::StatusConfig::from_env, |c, s| {
        manman::status::start(c, s).map(|r| log::info!(port = r.port; "status API listening"))
    });
}
