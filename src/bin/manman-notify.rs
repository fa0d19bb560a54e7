//! manman-notify: posts host and session incidents to a Slack-compatible webhook.

fn main() {
    manman::lifecycle::run_daemon(manman::notify::NotifyConfig::from_env, |c, s| {
        manman::notify::start(c, s).map(|_| ())
    });
}
