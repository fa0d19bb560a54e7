//! manman-web: the dashboard (a page and its JSON/SSE layer over the control API and the log
//! processor).

fn main() {
    manman::lifecycle::run_daemon(manman::web::WebConfig::from_env, |c, s| {
        manman::web::start(c, s).map(|r| log::info!(port = r.port; "dashboard listening"))
    });
}
