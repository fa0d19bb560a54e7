//! manman-status-api: read-only HTTP status (the read side of CQRS).

use manman::config::Env;
use manman::lifecycle::{Supervisor, DRAIN_DEADLINE};
use manman::status::{self, StatusConfig};
use manman::telemetry;

fn main() {
    telemetry::init();
    let config = match StatusConfig::from_env(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(78); // EX_CONFIG
        }
    };
    let mut supervisor = Supervisor::new();
    match status::start(config, &mut supervisor) {
        Ok(running) => log::info!(port = running.port; "status API listening"),
        Err(e) => {
            log::error!("cannot start: {e}");
            std::process::exit(1);
        }
    }
    std::process::exit(supervisor.run(DRAIN_DEADLINE).exit_code());
}
