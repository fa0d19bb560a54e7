//! manman-host: the agent that runs game servers on this machine.

use manman::config::Env;
use manman::host::{self, HostConfig};
use manman::lifecycle::{Supervisor, DRAIN_DEADLINE};
use manman::telemetry;

fn main() {
    telemetry::init();
    let config = match HostConfig::from_env(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(78); // EX_CONFIG
        }
    };
    let mut supervisor = Supervisor::new();
    match host::start(config, &mut supervisor) {
        Ok(running) => log::info!(server_id = running.server_id; "host agent running"),
        Err(e) => {
            log::error!("cannot start: {e}");
            std::process::exit(1);
        }
    }
    std::process::exit(supervisor.run(DRAIN_DEADLINE).exit_code());
}
