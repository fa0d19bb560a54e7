//! The heartbeat: every `HEARTBEAT_SECONDS`, the host's sessions by state, each live game's
//! CPU and memory, and the host's free memory and port range, for the processor (which reads
//! the same `wire::HealthUpdate`).

use std::sync::Arc;
use std::time::Duration;

use super::cgroups::SessionCgroups;
use super::disk::DiskUsage;
use super::players::PlayerCounts;
use super::publisher::Outbound;
use super::reporting::session_stats;
use super::sessions::live_games;
use super::stats;
use crate::bus::OutgoingMessage;
use crate::lifecycle::ShutdownSignal;
use crate::procman::Manager;
use crate::wire::{routing, HealthUpdate, HostCapacity};

/// The `heartbeat` thread's inputs.
pub(super) struct Heartbeat {
    pub server_id: i64,
    pub manager: Arc<Manager>,
    pub out: Outbound,
    pub every: Duration,
    /// `HOST_PORT_RANGE`, reported with the host's memory.
    pub port_range: (u16, u16),
    pub cgroups: Arc<SessionCgroups>,
    pub disk: Arc<DiskUsage>,
    pub players: Arc<PlayerCounts>,
}

impl Heartbeat {
    /// One heartbeat now, then one every `every` until shutdown.
    pub(super) fn run(self, shutdown: &ShutdownSignal) -> Result<(), String> {
        let mut cpu = stats::CpuRates::default();
        let (port_range_low, port_range_high) = self.port_range;
        loop {
            let games = self.cgroups.games(&live_games(&self.manager));
            let mut sessions = cpu.sample(&games);
            let (disk, mut players) = (self.disk.sizes(), self.players.known());
            for s in &mut sessions {
                s.disk_bytes = disk.get(&s.session_id).copied();
                s.players = players.remove(&s.session_id);
            }
            let beat = HealthUpdate {
                server_id: self.server_id,
                session_stats: session_stats(&self.manager),
                sent_at_ms: Some(chrono::Utc::now().timestamp_millis()),
                sessions,
                capacity: stats::memory().map(|(total, available)| HostCapacity {
                    memory_total_bytes: total,
                    memory_available_bytes: available,
                    port_range_low,
                    port_range_high,
                }),
            };
            self.out.send(
                OutgoingMessage::json(
                    routing::MANMAN_EXCHANGE,
                    &routing::host_health(self.server_id),
                    &serde_json::to_value(beat).expect("a heartbeat serialises"),
                )
                .transient(),
            );
            if shutdown.wait(self.every) {
                return Ok(());
            }
        }
    }
}
