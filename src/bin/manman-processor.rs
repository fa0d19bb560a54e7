//! manman-processor: host events → session state machine → PostgreSQL → external events.

fn main() {
    manman::lifecycle::run_daemon(manman::processor::ProcessorConfig::from_env, |c, s| {
        manman::processor::start(c, s).map(|_| ())
    });
}
