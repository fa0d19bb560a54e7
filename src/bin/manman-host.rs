//! manman-host: the agent that runs game servers on this machine.

fn main() {
    manman::lifecycle::run_daemon_draining(
        manman::host::DRAIN_DEADLINE,
        manman::host::HostConfig::from_env,
        |c, s| {
            manman::host::start(c, s)
                .map(|r| log::info!(server_id = r.server_id; "host agent running"))
        },
    );
}
