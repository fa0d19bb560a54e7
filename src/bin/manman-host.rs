//! manman-host: the agent that runs game servers on this machine.

fn main() {
    // A backup's part buffers (8 MiB) go straight to the kernel and back when freed: glibc's
    // adaptive threshold would otherwise keep them in the heap after the first one is freed,
    // and the agent's memory would stay at its peak after a backup.
    // SAFETY: mallopt only sets a malloc parameter; no allocation is in flight yet.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
    manman::lifecycle::run_daemon_draining(
        manman::host::DRAIN_DEADLINE,
        manman::host::HostConfig::from_env,
        |c, s| {
            manman::host::start(c, s)
                .map(|r| log::info!(server_id = r.server_id; "host agent running"))
        },
    );
}
