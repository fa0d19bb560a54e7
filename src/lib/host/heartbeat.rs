//! The heartbeat: every `HEARTBEAT_SECONDS`, the host's sessions by state, each live game's
//! CPU and memory, and the host's free memory and port range, for the processor (which reads
//! the same `wire::HealthUpdate`).

use std::sync::Arc;
use std::time::Duration;

use super::publisher::Outbound;
use super::reporting::session_stats;
use super::sessions::live_games;
use super::stats;
use crate::bus::OutgoingMessage;
use crate::lifecycle::ShutdownSignal;
use crate::procman::Manager;
use crate::wire::{routing, HealthUpdate, HostCapacity};

/// The `heartbeat` thread: one heartbeat now, then one every `every` until shutdown.
pub(super) fn run(
    server_id: i64,
    manager: Arc<Manager>,
    out: Outbound,
    every: Duration,
    (port_range_low, port_range_high): (u16, u16),
    shutdown: &ShutdownSignal,
) -> Result<(), String> {
    let mut cpu = stats::CpuRates::default();
    loop {
        let beat = HealthUpdate {
            server_id,
            session_stats: session_stats(&manager),
            sent_at_ms: Some(chrono::Utc::now().timestamp_millis()),
            sessions: cpu.sample(&live_games(&manager)),
            capacity: stats::memory().map(|(total, available)| HostCapacity {
                memory_total_bytes: total,
                memory_available_bytes: available,
                port_range_low,
                port_range_high,
            }),
        };
        out.send(
            OutgoingMessage::json(
                routing::MANMAN_EXCHANGE,
                &routing::host_health(server_id),
                &serde_json::to_value(beat).expect("a heartbeat serialises"),
            )
            .transient(),
        );
        if shutdown.wait(every) {
            return Ok(());
        }
    }
}
