//! manman-notify: posts host and session incidents to a Slack-compatible webhook.

use manman::config::Env;
use manman::lifecycle::{Supervisor, DRAIN_DEADLINE};
use manman::notify::{self, NotifyConfig};
use manman::telemetry;

fn main() {
    telemetry::init();
    let config = match NotifyConfig::from_env(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            std::process::exit(78); // EX_CONFIG
        }
    };
    let mut supervisor = Supervisor::new();
    if let Err(e) = notify::start(config, &mut supervisor) {
        log::error!("cannot start: {e}");
        std::process::exit(1);
    }
    std::process::exit(supervisor.run(DRAIN_DEADLINE).exit_code());
}
