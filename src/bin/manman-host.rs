//! manman-host: the agent that runs game servers on this machine. `manman-host --check [--json]`
//! checks what it needs here (data directory, credential, broker, API, keeper, cgroups) and
//! says what to fix, without starting.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--check") {
        let json = args.iter().any(|a| a == "--json");
        let checks = manman::host::check::diagnose(&manman::config::Env::from_process());
        let failed = manman::diagnosis::report_all(&checks, json);
        std::process::exit(if failed == 0 { 0 } else { 1 });
    }
    if let Some(other) = args.first() {
        eprintln!("usage: manman-host [--check [--json]] (configured from the environment; got {other:?})");
        std::process::exit(2);
    }
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
