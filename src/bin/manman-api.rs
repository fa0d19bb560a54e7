//! manman-api: the control-plane gRPC API.

fn main() {
    manman::lifecycle::run_daemon(manman::api::ApiConfig::from_env, |c, s| {
        manman::api::start(c, s).map(|r| log::info!(port = r.port; "API listening"))
    });
}
