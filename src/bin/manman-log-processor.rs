//! manman-log-processor: live session logs over gRPC, archived per minute to S3.

fn main() {
    manman::lifecycle::run_daemon(manman::logs::LogsConfig::from_env, |c, s| {
        manman::logs::start(c, s).map(|_| ())
    });
}
