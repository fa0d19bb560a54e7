//! How the agent goes: by default it lets go of its games (their keepers hold them and the
//! next agent re-attaches); without a keeper, when told to, or when the machine itself is
//! shutting down, it stops every session first (console stop command, stop timeout) and
//! reports them before going offline.

use std::sync::Arc;
use std::time::Duration;

use super::publisher::Outbound;
use super::reporting::{host_message, status_message, Report};
use super::sessions::session_of;
use crate::lifecycle::ShutdownSignal;
use crate::procman::Manager;
use crate::wire::{HostStatus, SessionStatus};

/// Whether the machine is shutting down (systemd says `stopping`): then games get their stop
/// command and timeout from us before systemd's final kill.
fn machine_is_shutting_down() -> bool {
    if !std::path::Path::new("/run/systemd/system").exists() {
        return false;
    }
    std::process::Command::new("systemctl")
        .arg("is-system-running")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "stopping")
        .unwrap_or(false)
}

/// The `sessions` thread: waits for the shutdown signal, then leaves or stops the games.
pub(super) fn run(
    server_id: i64,
    manager: Arc<Manager>,
    out: Outbound,
    stop_games: bool,
    shutdown: &ShutdownSignal,
) -> Result<(), String> {
    while !shutdown.wait(Duration::from_secs(3600)) {}
    if !stop_games && !machine_is_shutting_down() {
        log::info!("leaving the games to their keepers (HOST_STOP_SESSIONS_ON_SHUTDOWN=false); the next agent re-attaches");
        if let Err(e) = manager.leave_running() {
            log::error!(
                "could not let go of every game cleanly: {}",
                crate::errors::chain(&e)
            );
        }
        out.send(host_message(server_id, HostStatus::Offline));
        return Ok(());
    }
    log::info!("stopping sessions before going offline");
    for p in manager.status_all("session-*") {
        if let (Some(id), true) = (session_of(&p.name), p.state.is_live()) {
            out.send(status_message(
                server_id,
                id,
                SessionStatus::Stopping,
                Report::default(),
            ));
        }
    }
    if let Err(e) = manager.shutdown() {
        log::error!(
            "sessions did not all stop cleanly: {}",
            crate::errors::chain(&e)
        );
    }
    out.send(host_message(server_id, HostStatus::Offline));
    Ok(())
}
