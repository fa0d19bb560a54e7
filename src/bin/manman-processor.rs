//! manman-processor: host events → session state machine → PostgreSQL → external events.

use manman::config::Env;
use manman::lifecycle::{Supervisor, DRAIN_DEADLINE};
use manman::processor::{self, ProcessorConfig};
use manman::telemetry;

fn main() {
    telemetry::init();
    let config = match ProcessorConfig::from_env(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(78); // EX_CONFIG
        }
    };
    let mut supervisor = Supervisor::new();
    if let Err(e) = processor::start(config, &mut supervisor) {
        log::error!("cannot start: {e}");
        std::process::exit(1);
    }
    std::process::exit(supervisor.run(DRAIN_DEADLINE).exit_code());
}
