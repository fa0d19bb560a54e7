//! manman-api: the control-plane gRPC API.

use manman::api::{self, ApiConfig};
use manman::config::Env;
use manman::lifecycle::{Supervisor, DRAIN_DEADLINE};
use manman::telemetry;

fn main() {
    telemetry::init();
    let config = match ApiConfig::from_env(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(78); // EX_CONFIG
        }
    };
    let mut supervisor = Supervisor::new();
    match api::start(config, &mut supervisor) {
        Ok(running) => log::info!(port = running.port; "API listening"),
        Err(e) => {
            log::error!("cannot start: {e}");
            std::process::exit(1);
        }
    }
    std::process::exit(supervisor.run(DRAIN_DEADLINE).exit_code());
}
